//! Assistants, supervising doctors and confirmation, end to end through the real binary
//! and curl with generated certificates, on SQLite and on PostgreSQL (one gateway, and
//! two gateways sharing the database).
//!
//! Cards: `org-clinic` is the clinic's organization card (the assistant); `doctor`
//! (Test000001) and `dentist` (Test000003) supervise; `pharmacist` (Test000002) does not.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hpki_gateway::store::{self, PendingState, Store};
use support::workflow::{
    assistant, block_on, card_key, csrf, decide, doctor, entry, gateway_store, held_write_config,
    hold_form, json, open_store, seed, seed_clinic,
};
use support::{config, curl, error_code, free_port, Gateway, Upstream};

const ASSISTANT: &str = "org-clinic";

struct Env {
    gw: Gateway,
    upstream: Upstream,
    store: Arc<dyn Store>,
    config_text: String,
}

fn listen() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A gateway with a held-write route `/records`; `store_url` None = its own SQLite file.
fn gateway_with(
    upstream: &Upstream,
    store_url: Option<&str>,
    extra: &str,
    env: &[(&str, &str)],
) -> (Gateway, String) {
    let addr = listen();
    let text = held_write_config(
        addr,
        upstream.addr,
        store_url,
        &format!(
            r#"
[confirm]
max_body = "4KiB"
{extra}

[timeouts]
upstream_response = "2s"
"#
        ),
    );
    (Gateway::start_with_env(&text, addr, env), text)
}

fn env_with(store_url: Option<&str>, extra: &str) -> Env {
    let upstream = Upstream::start();
    let (gw, config_text) = gateway_with(&upstream, store_url, extra, &[]);
    let store = gateway_store(&gw);
    seed_clinic(&*store, &["doctor", "dentist"]);
    Env {
        gw,
        upstream,
        store,
        config_text,
    }
}

/// A confirmation that the failpoint stops after its claim: curl gives up after 3 s.
fn confirm_and_hang(gw: &Gateway, id: &str, token: &str) {
    let r = curl(
        gw,
        Some("doctor"),
        &format!("/_hpki/pending/{id}/confirm"),
        &[
            "--max-time",
            "3",
            "--data-urlencode",
            &format!("csrf={token}"),
        ],
    );
    assert_eq!(
        r.status, 0,
        "the failpoint should have stopped the answer: {}",
        r.body
    );
}

fn header<'a>(r: &'a support::Received, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("{name} missing in {:?}", r.headers))
}

// ---------------------------------------------------------------------------------------
// The flows, written once, run on each backend
// ---------------------------------------------------------------------------------------

fn confirm_flow(e: &Env, confirming_gw: &Gateway) {
    let id = hold_form(
        &e.gw,
        ASSISTANT,
        "/records?visit=7",
        "note=%E5%8F%97%E8%A8%BA&dose=2",
    );
    assert!(
        e.upstream.take().is_empty(),
        "a held write must not reach the portal before confirmation"
    );

    // The assistant sees their own entry, pending.
    let mine = entry(&e.gw, ASSISTANT, &id);
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(json(&mine)["state"], "pending");
    assert_eq!(json(&mine)["can_decide"], false);

    // A doctor who does not supervise this assistant can neither read nor confirm it.
    let stranger = entry(confirming_gw, "pharmacist", &id);
    assert_eq!(stranger.status, 403, "{}", stranger.body);
    assert_eq!(
        error_code(&stranger.body).as_deref(),
        Some("not_supervisor")
    );
    let token = csrf(confirming_gw, "pharmacist");
    let r = decide(
        confirming_gw,
        "pharmacist",
        &id,
        "confirm",
        &[("csrf", &token)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(error_code(&r.body).as_deref(), Some("not_supervisor"));

    // The supervising doctor: without the page's token the form is refused.
    let r = decide(
        confirming_gw,
        "doctor",
        &id,
        "confirm",
        &[("csrf", "forged")],
    );
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("csrf_failed"),
        "{}",
        r.body
    );
    // A token of another card is not this card's.
    let r = decide(confirming_gw, "doctor", &id, "confirm", &[("csrf", &token)]);
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("csrf_failed"),
        "{}",
        r.body
    );
    assert!(e.upstream.take().is_empty());

    // The list shows the entry to the doctor.
    let list = curl(
        confirming_gw,
        Some("doctor"),
        "/_hpki/pending",
        &["-H", "Accept: application/json"],
    );
    let list = json(&list);
    assert!(
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str()),
        "{list}"
    );
    let token = list["csrf"].as_str().unwrap();
    let r = decide(confirming_gw, "doctor", &id, "confirm", &[("csrf", token)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["state"], "forwarded", "{v}");
    assert_eq!(v["upstream_status"], 200);
    assert_eq!(v["upstream_body"], "upstream ok");

    let got = e.upstream.take();
    assert_eq!(got.len(), 1, "exactly one delivery: {got:?}");
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/records");
    assert_eq!(r.query.as_deref(), Some("visit=7"));
    assert_eq!(r.body_head, b"note=%E5%8F%97%E8%A8%BA&dose=2");
    assert_eq!(
        header(r, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(header(r, "x-hpki-entered-by"), "a-001");
    assert_eq!(header(r, "x-hpki-confirmed-by"), "Test000001");
    assert_eq!(header(r, "x-hpki-confirmation-id"), id);
    // The doctor's own identity, not the assistant's organization card.
    assert_eq!(header(r, "x-hpki-id"), "Test000001");
    assert_eq!(header(r, "x-hpki-kind"), "person");
    assert_eq!(header(r, "x-hpki-role"), "Medical Doctor");
    assert!(r.header("x-hpki-assertion").is_some());

    // Confirming again changes nothing.
    let r = decide(
        confirming_gw,
        "dentist",
        &id,
        "confirm",
        &[("csrf", &csrf(confirming_gw, "dentist"))],
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("pending_already_decided")
    );
    assert!(e.upstream.take().is_empty());

    // Both see the outcome.
    let mine = json(&entry(&e.gw, ASSISTANT, &id));
    assert_eq!(mine["state"], "forwarded");
    assert_eq!(mine["decided_by"], "Test000001");
    assert_eq!(mine["upstream_status"], 200);
}

fn concurrent_flow(e: &Env, a: &Gateway, b: &Gateway) {
    let id = hold_form(&e.gw, ASSISTANT, "/records", "race=1");
    let ta = csrf(a, "doctor");
    let tb = csrf(b, "dentist");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let one = s.spawn(|| decide(a, "doctor", &id, "confirm", &[("csrf", &ta)]).status);
        let two = s.spawn(|| decide(b, "dentist", &id, "confirm", &[("csrf", &tb)]).status);
        vec![one.join().unwrap(), two.join().unwrap()]
    });
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![200, 409],
        "one confirmation wins: {statuses:?}"
    );
    let got = e.upstream.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body_head, b"race=1");
}

// ---------------------------------------------------------------------------------------
// SQLite (the default store)
// ---------------------------------------------------------------------------------------

#[test]
fn assistant_write_is_held_then_confirmed_once_by_a_supervising_doctor() {
    let e = env_with(None, "");
    confirm_flow(&e, &e.gw);
}

#[test]
fn two_doctors_confirming_at_once_deliver_once() {
    let e = env_with(None, "");
    concurrent_flow(&e, &e.gw, &e.gw);
}

#[test]
fn a_rejected_write_never_reaches_the_portal_and_says_why() {
    let e = env_with(None, "");
    let id = hold_form(&e.gw, ASSISTANT, "/records", "x=1");
    let token = csrf(&e.gw, "doctor");
    let r = decide(&e.gw, "doctor", &id, "reject", &[("csrf", &token)]);
    assert_eq!(r.status, 400, "a rejection needs a reason: {}", r.body);
    let r = decide(
        &e.gw,
        "doctor",
        &id,
        "reject",
        &[("csrf", &token), ("reason", "用量を確認してください")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mine = json(&entry(&e.gw, ASSISTANT, &id));
    assert_eq!(mine["state"], "rejected");
    assert_eq!(mine["reject_reason"], "用量を確認してください");
    let r = decide(&e.gw, "doctor", &id, "confirm", &[("csrf", &token)]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(e.upstream.take().is_empty());
}

#[test]
fn an_unconfirmed_write_expires() {
    let e = env_with(None, "expire_after = \"2s\"");
    let id = hold_form(&e.gw, ASSISTANT, "/records", "late=1");
    std::thread::sleep(Duration::from_millis(3500));
    let token = csrf(&e.gw, "doctor");
    let r = decide(&e.gw, "doctor", &id, "confirm", &[("csrf", &token)]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(json(&entry(&e.gw, ASSISTANT, &id))["state"], "expired");
    assert!(e.upstream.take().is_empty());
}

#[test]
fn a_body_over_the_hold_limit_is_refused_with_413() {
    let e = env_with(None, "");
    let big = format!("x={}", "a".repeat(5000));
    let r = curl(
        &e.gw,
        Some(ASSISTANT),
        "/records",
        &["-H", "Accept: application/json", "--data", &big],
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(error_code(&r.body).as_deref(), Some("request_too_large"));
    assert!(r.body.contains("confirm.max_body"), "{}", r.body);
    assert!(block_on(e.store.count_pending()).unwrap() == 0);
}

#[test]
fn reads_by_an_assistant_pass_through_with_the_assistants_identity() {
    let e = env_with(None, "");
    let r = curl(&e.gw, Some(ASSISTANT), "/records", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let got = e.upstream.take();
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "x-hpki-assistant-id"), "a-001");
    assert_eq!(header(&got[0], "x-hpki-assistant-name"), "Hanako Uketsuke");
    assert_eq!(
        header(&got[0], "x-hpki-assistant-name-kanji"),
        hpki_gateway::identity::encode_header_value("受付\u{3000}花子")
    );
    assert_eq!(
        header(&got[0], "x-hpki-supervisors"),
        "Test000001,Test000003"
    );
    assert_eq!(header(&got[0], "x-hpki-kind"), "organization");
    // A client cannot smuggle the assistant headers in.
    let r = curl(
        &e.gw,
        Some("doctor"),
        "/records",
        &[
            "-H",
            "X-HPKI-Assistant-Id: forged",
            "-H",
            "X-HPKI-Entered-By: forged",
        ],
    );
    assert_eq!(r.status, 200);
    let got = e.upstream.take();
    assert!(got[0].header("x-hpki-assistant-id").is_none());
    assert!(got[0].header("x-hpki-entered-by").is_none());
}

#[test]
fn an_organization_card_nobody_holds_is_refused() {
    let upstream = Upstream::start();
    let (gw, _) = gateway_with(&upstream, None, "", &[]);
    let r = curl(
        &gw,
        Some(ASSISTANT),
        "/clinic",
        &["-H", "Accept: application/json"],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("assistant_not_in_ledger")
    );
    assert!(upstream.take().is_empty());
    // The HTML page explains it in Japanese and English.
    let r = curl(&gw, Some(ASSISTANT), "/clinic", &[]);
    assert!(
        r.body.contains("台帳") && r.body.contains("ledger"),
        "{}",
        r.body
    );
}

#[test]
fn a_reassigned_card_is_the_new_holders_identity() {
    let e = env_with(None, "");
    let r = curl(&e.gw, Some(ASSISTANT), "/clinic", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&e.upstream.take()[0], "x-hpki-assistant-id"),
        "a-001"
    );
    block_on(async {
        let now = store::now();
        e.store
            .release_card(&card_key(ASSISTANT), now, "test")
            .await
            .unwrap();
        e.store
            .add_assistant(
                &assistant("a-002", "受付\u{3000}次郎", "Jiro Uketsuke"),
                "test",
            )
            .await
            .unwrap();
        e.store
            .assign_card(&card_key(ASSISTANT), "a-002", now, "test")
            .await
            .unwrap();
    });
    let r = curl(&e.gw, Some(ASSISTANT), "/clinic", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        header(&e.upstream.take()[0], "x-hpki-assistant-id"),
        "a-002"
    );
    // The new holder's writes are theirs; a-002 has no supervisor yet, so no doctor sees it.
    let id = hold_form(&e.gw, ASSISTANT, "/records", "who=2");
    assert_eq!(json(&entry(&e.gw, ASSISTANT, &id))["assistant_id"], "a-002");
    let r = entry(&e.gw, "doctor", &id);
    assert_eq!(error_code(&r.body).as_deref(), Some("not_supervisor"));
}

#[test]
fn hostile_content_is_shown_escaped_not_run() {
    let e = env_with(None, "");
    let id = hold_form(
        &e.gw,
        ASSISTANT,
        "/records",
        "memo=%3Cscript%3Ealert(1)%3C%2Fscript%3E&%3Cimg+src%3Dx%3E=1",
    );
    let r = curl(&e.gw, Some("doctor"), &format!("/_hpki/pending/{id}"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(r.body.contains("&lt;img src=x&gt;"), "{}", r.body);
    assert!(!r.body.contains("<script"), "{}", r.body);
    assert!(!r.body.contains("<img"), "{}", r.body);
    // A JSON body is pretty-printed, still escaped.
    let r = curl(
        &e.gw,
        Some(ASSISTANT),
        "/records",
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: application/json",
            "--data",
            r#"{"note":"</pre><script>x()</script>","n":1}"#,
        ],
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = json(&r)["pending_id"].as_str().unwrap().to_owned();
    let r = curl(&e.gw, Some("doctor"), &format!("/_hpki/pending/{id}"), &[]);
    assert!(
        r.body.contains("  &quot;n&quot;: 1"),
        "pretty-printed: {}",
        r.body
    );
    assert!(!r.body.contains("<script"), "{}", r.body);
    // Never framed (clickjacking the confirm button); forms post to the gateway only.
    let r = curl(
        &e.gw,
        Some("doctor"),
        &format!("/_hpki/pending/{id}"),
        &["-D", "/dev/stderr"],
    );
    let head = r.stderr.to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("form-action 'self'"), "{head}");
    // The form posts to the gateway only; the page has no script.
    assert!(r.body.contains("form-action &#39;self&#39;") || r.body.contains("form-action 'self'"));
    assert!(r.body.contains("name=\"csrf\""), "{}", r.body);
}

#[test]
fn a_crash_between_confirm_and_forward_delivers_exactly_once_after_restart() {
    let upstream = Upstream::start();
    let (mut gw, text) = gateway_with(
        &upstream,
        None,
        "",
        &[("HPKI_GATEWAY_FAILPOINT", "pause-after-claim")],
    );
    let store = gateway_store(&gw);
    seed_clinic(&*store, &["doctor"]);
    let id = hold_form(&gw, ASSISTANT, "/records", "crash=1");
    let token = csrf(&gw, "doctor");
    // The confirmation is claimed, then the gateway stops before forwarding...
    confirm_and_hang(&gw, &id, &token);
    let claimed = block_on(store.pending(&id)).unwrap().unwrap();
    assert_eq!(claimed.state, PendingState::Forwarding);
    assert!(upstream.take().is_empty());
    // ...and dies.
    gw.kill9();
    let addr = gw.addr;
    drop(gw);
    let restarted = Gateway::start(&text, addr);
    // The lease (2 × upstream_response + 5 s) runs out, then the entry is forwarded once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        got = upstream.take();
    }
    assert_eq!(got.len(), 1, "{}", restarted.log_text());
    assert_eq!(header(&got[0], "x-hpki-confirmation-id"), id);
    assert_eq!(header(&got[0], "x-hpki-confirmed-by"), "Test000001");
    assert_eq!(got[0].body_head, b"crash=1");
    std::thread::sleep(Duration::from_secs(3));
    assert!(upstream.take().is_empty(), "delivered twice");
    let after = block_on(store.pending(&id)).unwrap().unwrap();
    assert_eq!(after.state, PendingState::Forwarded);
    assert_eq!(after.attempts, 2, "claimed once, recovered once");
}

#[test]
fn an_upstream_failure_is_kept_and_retryable() {
    let upstream = Upstream::start();
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The held-write route points at a port nobody listens on.
    let addr = listen();
    let text = config(addr, upstream.addr, "hpki-card", "required", &format!(
        "\n[[route]]\npath = \"/records\"\nupstream = \"http://{dead}\"\nallow_kinds = [\"person\", \"organization\"]\nhold_writes_from = [\"assistant\"]\n\n[store]\ncache_ttl = \"0s\"\n"
    ));
    let gw = Gateway::start(&text, addr);
    let store = gateway_store(&gw);
    seed(
        &*store,
        &assistant("a-001", "受付\u{3000}花子", "Hanako"),
        ASSISTANT,
        &["doctor"],
    );
    let id = hold_form(&gw, ASSISTANT, "/records", "retry=1");
    let token = csrf(&gw, "doctor");
    let r = decide(&gw, "doctor", &id, "confirm", &[("csrf", &token)]);
    let v = json(&r);
    assert_eq!(v["state"], "failed", "{v}");
    assert!(
        v["last_error"].as_str().unwrap().contains("upstream"),
        "{v}"
    );
    // Still failed, retryable: a second try fails again (the portal is still down) and
    // counts the attempt.
    let r = decide(&gw, "doctor", &id, "confirm", &[("csrf", &token)]);
    assert_eq!(json(&r)["state"], "failed");
    assert_eq!(json(&r)["attempts"], 2);
}

#[test]
fn emergency_access_is_granted_marked_upstream_and_ended() {
    let e = env_with(None, "");
    let token = csrf(&e.gw, "doctor");
    let r = curl(
        &e.gw,
        Some("doctor"),
        "/_hpki/emergency",
        &[
            "-H",
            "Accept: application/json",
            "--data-urlencode",
            &format!("csrf={token}"),
        ],
    );
    assert_eq!(r.status, 400, "a reason is mandatory: {}", r.body);
    let r = curl(
        &e.gw,
        Some("doctor"),
        "/_hpki/emergency",
        &[
            "-H",
            "Accept: application/json",
            "--data-urlencode",
            &format!("csrf={token}"),
            "--data-urlencode",
            "reason=意識不明の救急搬送",
            "--data-urlencode",
            "patient_ref=P-123",
        ],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let grant = json(&r)["active"]["id"].as_str().unwrap().to_owned();
    let r = curl(&e.gw, Some("doctor"), "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(header(&e.upstream.take()[0], "x-hpki-emergency"), grant);
    // Another doctor is not under the grant.
    curl(&e.gw, Some("dentist"), "/", &[]);
    assert!(e.upstream.take()[0].header("x-hpki-emergency").is_none());
    // Listed for the consent follow-up.
    let open = block_on(e.store.emergencies(0, true)).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].reason, "意識不明の救急搬送");
    assert_eq!(open[0].patient_ref.as_deref(), Some("P-123"));
    assert_eq!(open[0].doctor, doctor("doctor"));
    // The doctor ends it.
    let r = curl(
        &e.gw,
        Some("doctor"),
        &format!("/_hpki/emergency/{grant}/end"),
        &[
            "-H",
            "Accept: application/json",
            "--data-urlencode",
            &format!("csrf={token}"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    curl(&e.gw, Some("doctor"), "/", &[]);
    assert!(e.upstream.take()[0].header("x-hpki-emergency").is_none());
    // A card without a profession cannot open one.
    let t = csrf(&e.gw, "clerk");
    let r = curl(
        &e.gw,
        Some("clerk"),
        "/_hpki/emergency",
        &[
            "-H",
            "Accept: application/json",
            "--data-urlencode",
            &format!("csrf={t}"),
            "--data-urlencode",
            "reason=x",
        ],
    );
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("no_hcrole"),
        "{}",
        r.body
    );
}

// ---------------------------------------------------------------------------------------
// PostgreSQL, one gateway and two sharing the database
// ---------------------------------------------------------------------------------------

#[test]
fn postgres_held_write_confirmed_once() {
    let url = support::postgres::fresh_database();
    let e = env_with(Some(&url), "");
    confirm_flow(&e, &e.gw);
    concurrent_flow(&e, &e.gw, &e.gw);
}

#[test]
fn postgres_two_gateways_assistant_on_one_doctor_on_the_other() {
    let url = support::postgres::fresh_database();
    let e = env_with(Some(&url), "");
    // A second gateway on the same database, in front of the same portal.
    let (other, _) = gateway_with(&e.upstream, Some(&url), "", &[]);
    confirm_flow(&e, &other);
    // One doctor on each gateway, at the same moment.
    concurrent_flow(&e, &e.gw, &other);
    // The form token is shared: a page from one gateway posts to the other.
    assert_eq!(csrf(&e.gw, "doctor"), csrf(&other, "doctor"));
    let _ = &e.config_text;
}

#[test]
fn postgres_crash_recovery_by_the_surviving_gateway() {
    let url = support::postgres::fresh_database();
    let upstream = Upstream::start();
    let (mut crashing, _) = gateway_with(
        &upstream,
        Some(&url),
        "",
        &[("HPKI_GATEWAY_FAILPOINT", "pause-after-claim")],
    );
    let (survivor, _) = gateway_with(&upstream, Some(&url), "", &[]);
    let store = open_store(&url, std::path::Path::new("."));
    seed_clinic(&*store, &["doctor"]);
    let id = hold_form(&survivor, ASSISTANT, "/records", "pg-crash=1");
    let token = csrf(&crashing, "doctor");
    confirm_and_hang(&crashing, &id, &token);
    assert_eq!(
        block_on(store.pending(&id)).unwrap().unwrap().state,
        PendingState::Forwarding
    );
    crashing.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        got = upstream.take();
    }
    assert_eq!(got.len(), 1, "{}", survivor.log_text());
    assert_eq!(header(&got[0], "x-hpki-confirmation-id"), id);
    std::thread::sleep(Duration::from_secs(3));
    assert!(upstream.take().is_empty(), "delivered twice");
}

#[test]
fn postgres_outage_refuses_assistants_clearly_and_keeps_doctors_working() {
    let url = support::postgres::fresh_database();
    let e = env_with(Some(&url), "");
    let r = curl(&e.gw, Some(ASSISTANT), "/clinic", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    e.upstream.take();
    // The database disappears under the running gateway.
    let (server, name) = url.rsplit_once('/').unwrap();
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("{server}/postgres"))
        .arg("-c")
        .arg(format!("DROP DATABASE {name} WITH (FORCE)"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = curl(
        &e.gw,
        Some(ASSISTANT),
        "/records",
        &["-H", "Accept: application/json", "--data", "lost=1"],
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(error_code(&r.body).as_deref(), Some("store_unavailable"));
    let r = curl(&e.gw, Some(ASSISTANT), "/clinic", &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("保存されていません"),
        "the page says nothing was saved: {}",
        r.body
    );
    assert!(
        e.upstream.take().is_empty(),
        "nothing reaches the portal unattributed"
    );
    // A doctor's ordinary request still goes through.
    let r = curl(&e.gw, Some("doctor"), "/", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let got = e.upstream.take();
    assert_eq!(got.len(), 1);
    assert!(got[0].header("x-hpki-emergency").is_none());
}
