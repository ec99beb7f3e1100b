//! Held writes (maker-checker): an assistant's POST/PUT/PATCH/DELETE on a route with
//! `hold_writes_from = ["assistant"]` is stored and answered `202`; a doctor who
//! supervises that assistant confirms it (then, and only then, it is forwarded, under the
//! doctor's identity, with `X-HPKI-Entered-By` / `X-HPKI-Confirmed-By` /
//! `X-HPKI-Confirmation-Id`) or rejects it.
//!
//! With `[confirm] require_signature`, the doctor also signs the entry's confirmation text
//! with their HPKI signing card; `proxy::confirmation` checks the signature before the
//! claim, the claim stores it, and the forward carries it as
//! `X-HPKI-Confirmation-Signature` (docs/confirmation-signature.md).
//!
//! Exactly-once forwarding rests on the store's state machine: a confirmation first
//! claims the entry (`pending` → `forwarding`, compare-and-set, with a lease), then calls
//! the upstream, then records the answer. A gateway that dies in between leaves the entry
//! `forwarding`; when the lease has passed, any gateway's maintenance task re-claims it
//! and forwards it with the same confirmation id (the upstream's idempotency key).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{deny, page_response, Body, ConnectionContext, Gateway};
use crate::config::RouteSection;
use crate::held_pages::{self, SigningPrompt, Viewer};
use crate::identity::{Identity, Principal};
use crate::pages::Denial;
use crate::pki::confirmation::confirmation_digest;
use crate::store::{
    self, ConfirmationSignature, Confirmer, DoctorRef, ForwardOutcome, NewPending, PendingWrite,
};

/// Content headers kept with a held write (the rest of the assistant's request headers
/// describe the assistant's connection, not the entry).
const KEPT_HEADERS: [&str; 3] = ["content-type", "content-encoding", "content-language"];
/// How much of the upstream's answer to a confirmed write is kept for both to read.
const KEPT_ANSWER: usize = 256 * 1024;
/// Forms posted to the gateway's own pages are small.
const MAX_FORM: usize = 64 * 1024;
/// Test hook: `HPKI_GATEWAY_FAILPOINT=pause-after-claim` stops a confirmation after its
/// claim is committed and before the upstream is called, so that a test can kill the
/// process at exactly that point.
const FAILPOINT_ENV: &str = "HPKI_GATEWAY_FAILPOINT";

pub fn must_hold(route: &RouteSection, principal: &Principal<'_>, method: &Method) -> bool {
    principal.assistant.is_some()
        && route.hold_writes_from.iter().any(|w| w == "assistant")
        && matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
}

/// Seconds a confirming gateway owns a `forwarding` entry: long enough for the upstream
/// call (response, then body) to end by itself.
fn lease(gw: &Gateway) -> i64 {
    2 * gw.config.timeouts.upstream_response.as_secs() as i64 + 5
}

/// Stores an assistant's write and answers 202 with its id. The entry is committed
/// before the answer is sent.
pub async fn hold(
    gw: &Gateway,
    route: &RouteSection,
    req: Request<Incoming>,
    principal: &Principal<'_>,
    request_id: &str,
    json: bool,
) -> Response<Body> {
    let Some(holder) = &principal.assistant else {
        return deny(Denial::AssistantNotInLedger, None, request_id, json);
    };
    let limit = gw.config.confirm.max_body;
    let too_large = || {
        deny(
            Denial::RequestTooLarge,
            Some(&format!(
                "an entry awaiting a doctor's confirmation may carry at most {limit} bytes \
                 (confirm.max_body); send smaller data or ask the administrator to raise it"
            )),
            request_id,
            json,
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        tokio::spawn(super::body::drain(req.into_body(), 0));
        return too_large();
    }
    let request_host = super::request_host(&req);
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, limit as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            return deny(
                Denial::BadRequest,
                Some(&format!("the request body could not be read: {e}")),
                request_id,
                json,
            );
        }
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            parts
                .headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*name).to_owned(), v.to_owned()))
        })
        .collect();
    let now = store::now();
    let entry = NewPending {
        id: store::new_id("p-"),
        route_path: route.path.clone(),
        request_host,
        method: parts.method.as_str().to_owned(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into()),
        headers,
        body: body.to_vec(),
        assistant_id: holder.assistant.id.clone(),
        assistant_name: holder.assistant.name_kanji.clone(),
        card_sha256: principal.identity.sha256.clone(),
        created_at: now,
        expires_at: now + gw.config.confirm.expire_after.as_secs() as i64,
    };
    if let Err(e) = gw.store.insert_pending(&entry).await {
        return super::store_unavailable(&e, request_id, json);
    }
    tracing::info!(
        request_id, pending_id = %entry.id, assistant = %entry.assistant_id,
        method = %entry.method, path = %entry.path_and_query, bytes = entry.body.len(),
        "write held for a supervising doctor's confirmation"
    );
    let mut response = page_response(held_pages::accepted_page(&entry, json));
    response
        .extensions_mut()
        .insert(super::HeldEntry(entry.id.clone()));
    if let Ok(v) = HeaderValue::from_str(&format!("/_hpki/pending/{}", entry.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Who is looking at the pending pages.
fn viewer(principal: &Principal<'_>) -> Viewer {
    if let Some(holder) = &principal.assistant {
        return Viewer::Assistant(holder.assistant.id.clone());
    }
    match &principal.identity.hpki_id {
        Some(id) => Viewer::Doctor(DoctorRef {
            hpki_id: id.clone(),
            issuer: principal.identity.issuer.clone(),
        }),
        None => Viewer::Nobody,
    }
}

/// `/_hpki/pending`, `/_hpki/pending/<id>`, `/_hpki/pending/<id>/confirm|reject`.
pub async fn endpoint(
    gw: &Gateway,
    req: Request<Incoming>,
    ctx: &ConnectionContext,
    request_id: &str,
    json: bool,
) -> Response<Body> {
    let identity = match super::require_card(ctx, request_id, json) {
        Ok(id) => id,
        Err(denied) => return *denied,
    };
    let principal = match gw.principal(&identity).await {
        Ok(p) => p,
        Err((denial, detail)) => return deny(denial, Some(&detail), request_id, json),
    };
    let viewer = viewer(&principal);
    let path = req.uri().path().to_owned();
    let rest = path
        .strip_prefix(super::PENDING_PATH)
        .unwrap_or("")
        .trim_start_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let csrf = gw.csrf_token(&identity.sha256);
    let store_down = |e: store::StoreError| super::store_unavailable(&e, request_id, json);
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, []) => {
            let assistants = match &viewer {
                Viewer::Doctor(d) => match gw.store.supervised_by(d).await {
                    Ok(a) => a,
                    Err(e) => return store_down(e),
                },
                Viewer::Assistant(id) => vec![id.clone()],
                Viewer::Nobody => Vec::new(),
            };
            let entries = match gw.store.pending_of(&assistants, 200).await {
                Ok(e) => e,
                Err(e) => return store_down(e),
            };
            page_response(held_pages::list_page(&viewer, &entries, &csrf, json))
        }
        (Method::GET, [id]) => match visible_entry(gw, &viewer, id).await {
            Ok((entry, can_decide)) => {
                let signing = signing_prompt(gw, &entry, &viewer, can_decide);
                page_response(held_pages::detail_page(
                    &entry,
                    &viewer,
                    can_decide,
                    &csrf,
                    signing.as_ref(),
                    json,
                ))
            }
            Err(r) => r.into_response(request_id, json),
        },
        (Method::GET, [id, "confirmation.txt"]) => match visible_entry(gw, &viewer, id).await {
            Ok((entry, true)) => {
                let Viewer::Doctor(doctor) = &viewer else {
                    return deny(Denial::NotSupervisor, None, request_id, json);
                };
                match entry.confirmation_text(&doctor.hpki_id) {
                    Ok(text) => confirmation_text_response(&entry.id, text),
                    Err(e) => deny(Denial::BadRequest, Some(&e.to_string()), request_id, json),
                }
            }
            Ok((entry, false)) => deny(
                Denial::NotSupervisor,
                Some(&format!(
                    "the confirmation text is for a doctor who supervises assistant {}: it \
                     names the doctor who signs it",
                    entry.assistant_id
                )),
                request_id,
                json,
            ),
            Err(r) => r.into_response(request_id, json),
        },
        (Method::POST, [id, action @ ("confirm" | "reject")]) => {
            let form = match read_form(req, &identity, gw).await {
                Ok(f) => f,
                Err((denial, detail)) => return deny(denial, Some(&detail), request_id, json),
            };
            let (entry, can_decide) = match visible_entry(gw, &viewer, id).await {
                Ok(v) => v,
                Err(r) => return r.into_response(request_id, json),
            };
            if !can_decide {
                return deny(
                    Denial::NotSupervisor,
                    Some(&format!(
                        "only a doctor recorded as a supervisor of assistant {} may decide this entry",
                        entry.assistant_id
                    )),
                    request_id,
                    json,
                );
            }
            let confirmer = confirmer(&identity);
            if *action == "confirm" {
                let signature =
                    match signature_if_required(gw, &identity, &entry, &form, request_id, json)
                        .await
                    {
                        Ok(s) => s,
                        Err(refused) => return *refused,
                    };
                let signed = signature.as_ref().map(|s| {
                    format!(
                        "; confirmation signed: digest sha256:{}, signing certificate sha256:{}",
                        crate::pki::name::hex(&s.digest),
                        crate::pki::name::hex(&crate::pki::sha256(&s.certificate))
                    )
                });
                let response = confirm(
                    gw,
                    entry.clone(),
                    &confirmer,
                    signature.as_ref(),
                    &viewer,
                    &csrf,
                    request_id,
                    json,
                )
                .await;
                if response.extensions().get::<super::DenialCode>().is_none() {
                    let after = gw.store.pending(&entry.id).await.ok().flatten();
                    let mut r = event(&identity, "confirm", request_id);
                    r.assistant_id = Some(entry.assistant_id.clone());
                    r.method = Some(entry.method.clone());
                    r.path = Some(entry.path_and_query.clone());
                    r.upstream_status = after
                        .as_ref()
                        .and_then(|e| e.upstream_status)
                        .and_then(|s| u16::try_from(s).ok());
                    r.decision = after.as_ref().map(|e| e.state.as_str().to_owned());
                    r.detail = Some(format!(
                        "pending {} entered by {}{}{}",
                        entry.id,
                        entry.assistant_id,
                        signed.unwrap_or_default(),
                        after
                            .as_ref()
                            .and_then(|e| e.last_error.as_ref())
                            .map(|e| format!("; {e}"))
                            .unwrap_or_default()
                    ));
                    record_event(gw, r).await;
                }
                response
            } else {
                let reason = form.get("reason").map(|r| r.trim()).unwrap_or("");
                if reason.is_empty() {
                    return deny(
                        Denial::BadRequest,
                        Some("a rejection needs a reason (the form field `reason`) for the assistant"),
                        request_id,
                        json,
                    );
                }
                match gw
                    .store
                    .reject_pending(&entry.id, &confirmer, reason, store::now())
                    .await
                {
                    Ok(true) => {
                        tracing::info!(request_id, pending_id = %entry.id, doctor = %confirmer.hpki_id, "held write rejected");
                        let mut r = event(&identity, "reject", request_id);
                        r.assistant_id = Some(entry.assistant_id.clone());
                        r.method = Some(entry.method.clone());
                        r.path = Some(entry.path_and_query.clone());
                        r.decision = Some("rejected".into());
                        r.detail = Some(format!("pending {}: {reason}", entry.id));
                        record_event(gw, r).await;
                        match gw.store.pending(&entry.id).await {
                            Ok(Some(e)) => page_response(held_pages::detail_page(
                                &e, &viewer, false, &csrf, None, json,
                            )),
                            Ok(None) => deny(Denial::PendingNotFound, None, request_id, json),
                            Err(e) => store_down(e),
                        }
                    }
                    Ok(false) => already_decided(gw, &entry.id, request_id, json).await,
                    Err(e) => store_down(e),
                }
            }
        }
        (_, [_, "confirm" | "reject" | "confirmation.txt"]) | (_, []) | (_, [_]) => deny(
            Denial::BadRequest,
            Some("use GET to read entries and POST (the page's forms) to confirm or reject"),
            request_id,
            json,
        ),
        _ => deny(Denial::NoRoute, None, request_id, json),
    }
}

/// The confirming doctor as stored with the entry, to forward under their identity even
/// after a restart.
fn confirmer(identity: &Identity) -> Confirmer {
    Confirmer {
        hpki_id: identity.hpki_id.clone().unwrap_or_default(),
        issuer: identity.issuer.clone(),
        name: identity
            .name_kanji
            .clone()
            .or_else(|| identity.name.clone())
            .unwrap_or_default(),
        headers: identity
            .headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        claims: serde_json::Value::Object(identity.claims()),
    }
}

enum Refusal {
    Denied(Denial, String),
    Store(store::StoreError),
}

impl Refusal {
    fn into_response(self, request_id: &str, json: bool) -> Response<Body> {
        match self {
            Refusal::Denied(d, detail) => deny(d, Some(&detail), request_id, json),
            Refusal::Store(e) => super::store_unavailable(&e, request_id, json),
        }
    }
}

/// The entry if this viewer may see it, and whether they may decide it (a current
/// supervisor of its assistant).
async fn visible_entry(
    gw: &Gateway,
    viewer: &Viewer,
    id: &str,
) -> Result<(PendingWrite, bool), Refusal> {
    let not_found = || {
        Refusal::Denied(
            Denial::PendingNotFound,
            format!("no entry {id:?} visible to this card"),
        )
    };
    let entry = gw
        .store
        .pending(id)
        .await
        .map_err(Refusal::Store)?
        .ok_or_else(not_found)?;
    match viewer {
        Viewer::Assistant(a) if *a == entry.assistant_id => Ok((entry, false)),
        Viewer::Doctor(d) => {
            let supervisors = gw
                .store
                .supervisors(&entry.assistant_id)
                .await
                .map_err(Refusal::Store)?;
            if supervisors.contains(d) {
                Ok((entry, true))
            } else {
                // Seen as "not yours" rather than "not found": the doctor followed a link
                // and should learn why they cannot act on it.
                Err(Refusal::Denied(
                    Denial::NotSupervisor,
                    format!(
                        "you are not recorded as a supervisor of assistant {}",
                        entry.assistant_id
                    ),
                ))
            }
        }
        _ => Err(not_found()),
    }
}

async fn already_decided(gw: &Gateway, id: &str, request_id: &str, json: bool) -> Response<Body> {
    let state = match gw.store.pending(id).await {
        Ok(Some(e)) => e.state.as_str().to_owned(),
        _ => "unknown".into(),
    };
    deny(
        Denial::PendingAlreadyDecided,
        Some(&format!("entry {id} is {state}")),
        request_id,
        json,
    )
}

/// The doctor's verified signature for this confirmation when `confirm.require_signature`
/// is on (`None` when it is off), or the refusal — recorded durably as `confirm_refused`
/// with its code — to answer instead.
async fn signature_if_required(
    gw: &Gateway,
    identity: &Identity,
    entry: &PendingWrite,
    form: &std::collections::HashMap<String, String>,
    request_id: &str,
    json: bool,
) -> Result<Option<ConfirmationSignature>, Box<Response<Body>>> {
    if !gw.config.confirm.require_signature {
        return Ok(None);
    }
    if !entry.state.confirmable() {
        return Err(Box::new(
            already_decided(gw, &entry.id, request_id, json).await,
        ));
    }
    let doctor = identity.hpki_id.as_deref().unwrap_or_default();
    let refusal = match super::confirmation::verify(gw, entry, doctor, form).await {
        Ok(signature) => return Ok(Some(signature)),
        Err(refusal) => refusal,
    };
    tracing::info!(
        request_id, pending_id = %entry.id, doctor,
        reason = refusal.denial.code(), detail = %refusal.detail,
        "signed confirmation refused"
    );
    let mut r = event(identity, "confirm_refused", request_id);
    r.assistant_id = Some(entry.assistant_id.clone());
    r.method = Some(entry.method.clone());
    r.path = Some(entry.path_and_query.clone());
    r.decision = Some("deny".into());
    r.reason = Some(refusal.denial.code().into());
    r.detail = Some(format!(
        "pending {}: {}{}",
        entry.id,
        refusal.detail,
        refusal
            .signer_sha256
            .as_ref()
            .map(|s| format!("; signing certificate sha256:{s}"))
            .unwrap_or_default()
    ));
    record_event(gw, r).await;
    Err(Box::new(deny(
        refusal.denial,
        Some(&refusal.detail),
        request_id,
        json,
    )))
}

#[allow(clippy::too_many_arguments)]
async fn confirm(
    gw: &Gateway,
    entry: PendingWrite,
    confirmer: &Confirmer,
    signature: Option<&ConfirmationSignature>,
    viewer: &Viewer,
    csrf: &str,
    request_id: &str,
    json: bool,
) -> Response<Body> {
    let now = store::now();
    let claimed = match gw
        .store
        .claim_for_forwarding(&entry.id, confirmer, signature, now, now + lease(gw))
        .await
    {
        Ok(c) => c,
        Err(e) => return super::store_unavailable(&e, request_id, json),
    };
    if !claimed {
        if entry.state == store::PendingState::Pending && entry.expires_at <= now {
            let _ = gw.store.expire_pending(now).await;
        }
        return already_decided(gw, &entry.id, request_id, json).await;
    }
    tracing::info!(request_id, pending_id = %entry.id, doctor = %confirmer.hpki_id, "held write confirmed; forwarding");
    if std::env::var(FAILPOINT_ENV).as_deref() == Ok("pause-after-claim") {
        tracing::warn!(pending_id = %entry.id, "failpoint pause-after-claim: not forwarding");
        std::future::pending::<()>().await;
    }
    let entry = match gw.store.pending(&entry.id).await {
        Ok(Some(e)) => e,
        Ok(None) => return deny(Denial::PendingNotFound, None, request_id, json),
        Err(e) => return super::store_unavailable(&e, request_id, json),
    };
    let finished = deliver(gw, &entry, request_id).await.unwrap_or(entry);
    // A failed delivery can be retried from this page: a retry is signed again.
    let signing = signing_prompt(gw, &finished, viewer, true);
    page_response(held_pages::detail_page(
        &finished,
        viewer,
        true,
        csrf,
        signing.as_ref(),
        json,
    ))
}

/// What a supervising doctor signs to confirm `entry`, when confirming needs a signature
/// (`confirm.require_signature`) and they may confirm it now.
fn signing_prompt(
    gw: &Gateway,
    entry: &PendingWrite,
    viewer: &Viewer,
    can_decide: bool,
) -> Option<SigningPrompt> {
    let Viewer::Doctor(doctor) = viewer else {
        return None;
    };
    if !gw.config.confirm.require_signature || !can_decide || !entry.state.confirmable() {
        return None;
    }
    Some(match entry.confirmation_text(&doctor.hpki_id) {
        Ok(text) => SigningPrompt::Ready {
            digest_hex: crate::pki::name::hex(&confirmation_digest(&text)),
            text,
        },
        Err(e) => SigningPrompt::Unsignable(e.to_string()),
    })
}

/// The confirmation text as a download: its exact bytes, `text/plain; charset=utf-8`.
fn confirmation_text_response(id: &str, text: String) -> Response<Body> {
    let mut r = Response::new(super::full_body(text));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Ids are the gateway's own (`p-` and hex): safe in a quoted file name.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"confirmation-{id}.txt\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Forwards a claimed entry and records the outcome; returns the entry as stored after.
async fn deliver(gw: &Gateway, entry: &PendingWrite, request_id: &str) -> Option<PendingWrite> {
    let path = entry
        .path_and_query
        .split('?')
        .next()
        .unwrap_or(&entry.path_and_query);
    let outcome = match gw.routes.find(entry.request_host.as_deref(), path) {
        Some(route) => {
            gw.upstreams
                .forward_held(gw, route, entry, request_id, KEPT_ANSWER)
                .await
        }
        None => ForwardOutcome::Failed {
            error: format!("no route matches {path} any more: check the configuration"),
            status: None,
            body: Vec::new(),
        },
    };
    match &outcome {
        ForwardOutcome::Delivered { status, .. } => {
            tracing::info!(request_id, pending_id = %entry.id, status, "held write delivered")
        }
        ForwardOutcome::Failed { error, .. } => {
            tracing::warn!(request_id, pending_id = %entry.id, error = %error, "held write failed; a supervising doctor can retry it")
        }
    }
    if let Err(e) = gw
        .store
        .finish_forwarding(&entry.id, &outcome, store::now())
        .await
    {
        // The entry stays `forwarding`; after its lease it is forwarded again with the
        // same confirmation id, which the upstream can use to drop the duplicate.
        tracing::error!(pending_id = %entry.id, error = %e, "cannot record the forwarding outcome");
        return None;
    }
    gw.store.pending(&entry.id).await.ok().flatten()
}

/// Expires overdue entries and forwards entries whose confirming gateway died, until
/// the gateway is dropped.
pub async fn run_maintenance(gateway: Weak<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gateway.upgrade() else { return };
        maintain(&gw).await;
    }
}

async fn maintain(gw: &Arc<Gateway>) {
    mirror_ledger_changes(gw).await;
    let now = store::now();
    match gw.store.expire_pending(now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "held writes expired unconfirmed"),
        Err(e) => tracing::warn!(error = %e, "cannot expire held writes"),
    }
    let reclaimed = match gw.store.reclaim_forwarding(now, now + lease(gw)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for interrupted confirmations");
            return;
        }
    };
    for entry in reclaimed {
        let request_id = super::new_request_id();
        tracing::warn!(pending_id = %entry.id, attempts = entry.attempts, "forwarding a confirmation interrupted by a crash");
        let after = deliver(gw, &entry, &request_id).await;
        let mut r = crate::audit::Record {
            time_ms: super::now_ms(),
            event: "confirm_recovered".into(),
            request_id: Some(request_id),
            hpki_id: entry.confirmer.as_ref().map(|c| c.hpki_id.clone()),
            assistant_id: Some(entry.assistant_id.clone()),
            method: Some(entry.method.clone()),
            path: Some(entry.path_and_query.clone()),
            ..Default::default()
        };
        r.decision = after.as_ref().map(|e| e.state.as_str().to_owned());
        r.upstream_status = after
            .as_ref()
            .and_then(|e| e.upstream_status)
            .and_then(|s| u16::try_from(s).ok());
        r.detail = Some(format!(
            "pending {} forwarded again after its lease ran out",
            entry.id
        ));
        record_event(gw, r).await;
    }
}

/// Copies ledger changes (made with `hpki-gateway ledger`, on any machine) into this
/// node's audit log, each once per node: the node's cursor (the last change id it
/// recorded) is kept in the store, so a restart resumes where it stopped.
async fn mirror_ledger_changes(gw: &Gateway) {
    let cursor_name = format!("audit_ledger_cursor:{}", gw.config.audit.node);
    let Ok(mut cursor) = gw.store.shared_setting(&cursor_name, "").await else {
        return;
    };
    loop {
        let changes = match gw.store.ledger_changes_after(&cursor, 200).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read ledger changes for the audit log");
                return;
            }
        };
        let Some(last) = changes.last().map(|c| c.id.clone()) else {
            return;
        };
        for c in changes {
            let r = crate::audit::Record {
                time_ms: c.recorded_at * 1000,
                event: "ledger_change".into(),
                operator: Some(c.operator),
                decision: Some(c.action),
                assistant_id: Some(c.subject),
                detail: Some(format!(
                    "{} (effective {})",
                    c.detail,
                    store::format_time(c.at)
                )),
                ..Default::default()
            };
            if gw.audit.append_durable(r).await.is_err() {
                // Not recorded: the cursor stops before it; it is tried again next time.
                gw.metrics.audit_failure();
                let _ = gw.store.set_setting(&cursor_name, &cursor).await;
                return;
            }
            cursor = c.id;
        }
        debug_assert_eq!(cursor, last);
        if gw.store.set_setting(&cursor_name, &cursor).await.is_err() {
            return;
        }
    }
}

/// A record of a workflow event by this card.
pub(super) fn event(identity: &Identity, name: &str, request_id: &str) -> crate::audit::Record {
    let mut r = crate::audit::Record {
        time_ms: super::now_ms(),
        event: name.into(),
        request_id: Some(request_id.to_owned()),
        ..Default::default()
    };
    super::fill_identity(&mut r, identity);
    r
}

/// Writes a workflow record durably; a failure is logged and counted (the request's own
/// record then reports the refusal under `audit.on_failure = "refuse"`).
pub(super) async fn record_event(gw: &Gateway, r: crate::audit::Record) {
    if let Err(e) = gw.audit.append_durable(r).await {
        gw.metrics.audit_failure();
        tracing::error!(error = %e, "workflow audit record not written");
    }
}

/// Reads a posted form (urlencoded or JSON) after checking it comes from the gateway's
/// own page: no cross-site fetch metadata, a same-origin Origin when one is sent, and
/// the card's anti-forgery token.
pub(super) async fn read_form(
    req: Request<Incoming>,
    identity: &Identity,
    gw: &Gateway,
) -> Result<std::collections::HashMap<String, String>, (Denial, String)> {
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if cross_site {
        return Err((
            Denial::CsrfFailed,
            "the form was sent from another site".into(),
        ));
    }
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        let host = super::request_host(&req).unwrap_or_default();
        // Browsers leave the default port out of Origin; a Host header may carry it.
        let host = host.strip_suffix(":443").unwrap_or(&host);
        if origin != "null" && !origin.eq_ignore_ascii_case(&format!("https://{host}")) {
            return Err((
                Denial::CsrfFailed,
                format!("the form was sent from {origin}, not from this gateway"),
            ));
        }
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body: Bytes = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|e| {
            (
                Denial::BadRequest,
                format!("the form could not be read: {e}"),
            )
        })?
        .to_bytes();
    let form = if is_json {
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            (
                Denial::BadRequest,
                format!("the JSON body is not valid: {e}"),
            )
        })?;
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        parse_urlencoded(&body)
    };
    let token = form.get("csrf").map(String::as_str).unwrap_or("");
    if !gw.csrf_ok(&identity.sha256, token) {
        return Err((
            Denial::CsrfFailed,
            "the form's anti-forgery token (`csrf`) is missing or not this card's: open the page again"
                .into(),
        ));
    }
    Ok(form)
}

/// `application/x-www-form-urlencoded` into a map (the last value of a repeated name wins).
pub fn parse_urlencoded(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_pairs(body).into_iter().collect()
}

/// The pairs of a urlencoded body, in order.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let decode = |s: &[u8]| {
                let plus: Vec<u8> = s
                    .iter()
                    .map(|b| if *b == b'+' { b' ' } else { *b })
                    .collect();
                percent_encoding::percent_decode(&plus)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let k = decode(it.next().unwrap_or_default());
            let v = decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_forms_decode_plus_and_percent() {
        let f = form_pairs(b"a=1+2&b=%E7%A5%9E&c&=x");
        assert_eq!(
            f,
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "神".into()),
                ("c".into(), "".into()),
                ("".into(), "x".into())
            ]
        );
    }
}
