//! The ledger and held-write workflow from a test's side: seed a gateway's store through
//! the library (the same store the gateway opens), read certificates' ledger keys, and
//! drive `/_hpki/pending` with curl as the assistant's and doctors' cards.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hpki_gateway::pki::{name, ParsedCertificate};
use hpki_gateway::store::{self, Assistant, CardKey, DoctorRef, Store};

use super::{curl, pki, CurlResult, Gateway};

/// The config of a gateway on `listen` with the test PKI's profiles and a held-write
/// route `/records` to `upstream`; its store is `store_url` (None: its own SQLite file),
/// with no ledger cache; `sections` (TOML: `[confirm]`, more `[[trust]]`...) is appended.
pub fn held_write_config(
    listen: SocketAddr,
    upstream: SocketAddr,
    store_url: Option<&str>,
    sections: &str,
) -> String {
    let store = store_url
        .map(|u| format!("url = \"{u}\"\n"))
        .unwrap_or_default();
    super::config(
        listen,
        upstream,
        "hpki-card",
        "required",
        &format!(
            "{}\n[store]\n{store}cache_ttl = \"0s\"\n{sections}",
            held_writes_route(upstream)
        ),
    )
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The parsed test certificate `card`.
pub fn certificate(card: &str) -> ParsedCertificate {
    let pem = std::fs::read_to_string(pki().cert(card)).unwrap();
    let der = pem_body(&pem);
    ParsedCertificate::from_der(&der).unwrap()
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// The ledger key of a card: its certificate's SHA-256.
pub fn card_key(card: &str) -> CardKey {
    CardKey::Sha256(name::hex(certificate(card).sha256()))
}

/// How the ledger names a doctor card: HPKI id + issuer DN.
pub fn doctor(card: &str) -> DoctorRef {
    let cert = certificate(card);
    let id = hpki_gateway::pki::read_identity(&cert).unwrap();
    DoctorRef {
        hpki_id: id.hpki_id.expect("a doctor card has an HPKI id"),
        issuer: name::display(cert.issuer()),
    }
}

/// Opens (and migrates) a store by URL, as the gateway does.
pub fn open_store(url: &str, base: &Path) -> Arc<dyn Store> {
    block_on(store::open(url, base, true)).unwrap()
}

/// The store a running test gateway uses (its config's `[store]`, default SQLite file).
pub fn gateway_store(gw: &Gateway) -> Arc<dyn Store> {
    let config = hpki_gateway::config::Config::load(&gw.config).unwrap();
    open_store(&config.store.url, &config.base_dir)
}

pub fn assistant(id: &str, kanji: &str, romaji: &str) -> Assistant {
    Assistant {
        id: id.into(),
        name_kanji: kanji.into(),
        name_romaji: romaji.into(),
        facility: "神楽坂クリニック".into(),
        active_from: 0,
        active_until: None,
    }
}

/// The test PKI's clinic (organization) card.
pub const CLINIC_CARD: &str = "org-clinic";

/// Records the tests' clinic assistant, a-001 (受付　花子), as the holder of the clinic card,
/// supervised by the doctors on `doctors`.
pub fn seed_clinic(store: &dyn Store, doctors: &[&str]) {
    seed(
        store,
        &assistant("a-001", "受付\u{3000}花子", "Hanako Uketsuke"),
        CLINIC_CARD,
        doctors,
    );
}

/// Records `assistant` as the holder of `card`, supervised by the doctors on `doctors`.
pub fn seed(store: &dyn Store, a: &Assistant, card: &str, doctors: &[&str]) {
    block_on(async {
        store.add_assistant(a, "test").await.unwrap();
        store
            .assign_card(&card_key(card), &a.id, store::now() - 1, "test")
            .await
            .unwrap();
        for d in doctors {
            store
                .add_supervisor(&a.id, &doctor(d), store::now(), "test")
                .await
                .unwrap();
        }
    })
}

pub fn json(r: &CurlResult) -> serde_json::Value {
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): status {} body {}", r.status, r.body))
}

/// The assistant's write: a form POST answered 202 with the pending id.
pub fn hold_form(gw: &Gateway, card: &str, path: &str, form: &str) -> String {
    let r = curl(
        gw,
        Some(card),
        path,
        &["-H", "Accept: application/json", "--data", form],
    );
    assert_eq!(r.status, 202, "{} {}", r.body, r.stderr);
    let v = json(&r);
    assert_eq!(v["state"], "pending", "{v}");
    v["pending_id"].as_str().unwrap().to_owned()
}

/// The card's anti-forgery token, as its list page gives it.
pub fn csrf(gw: &Gateway, card: &str) -> String {
    let r = curl(
        gw,
        Some(card),
        "/_hpki/pending",
        &["-H", "Accept: application/json"],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    json(&r)["csrf"].as_str().unwrap().to_owned()
}

/// POSTs a decision form (`confirm` or `reject`) as `card`, JSON answer.
pub fn decide(
    gw: &Gateway,
    card: &str,
    id: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> CurlResult {
    let mut args: Vec<String> = vec!["-H".into(), "Accept: application/json".into()];
    for (k, v) in fields {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    if fields.is_empty() {
        args.push("-X".into());
        args.push("POST".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(
        gw,
        Some(card),
        &format!("/_hpki/pending/{id}/{action}"),
        &args,
    )
}

/// The entry as `card` sees it (JSON).
pub fn entry(gw: &Gateway, card: &str, id: &str) -> CurlResult {
    curl(
        gw,
        Some(card),
        &format!("/_hpki/pending/{id}"),
        &["-H", "Accept: application/json"],
    )
}

/// The `[[route]]` on which the clinic card's writes are held: `/records` to `upstream`,
/// open to persons and organizations.
pub fn held_writes_route(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[[route]]
path = "/records"
upstream = "http://{upstream}"
allow_kinds = ["person", "organization"]
hold_writes_from = ["assistant"]
"#
    )
}
