//! Emergency (break-glass) access: a doctor whose role `[emergency] allow_roles` lists
//! opens a grant with a mandatory reason; while it runs, every forwarded request carries
//! `X-HPKI-Emergency: <grant id>`. Grants are kept for the consent follow-up
//! (`hpki-gateway audit emergency`).

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{deny, page_response, Body, ConnectionContext, Gateway};
use crate::held_pages::emergency_page;
use crate::pages::Denial;
use crate::store::{self, DoctorRef, EmergencyGrant};

const MAX_REASON: usize = 1000;
const MAX_PATIENT_REF: usize = 200;

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
    let store_down = |e: store::StoreError| super::store_unavailable(&e, request_id, json);
    let allowed_roles = &gw.config.emergency.allow_roles;
    let role_problem = if identity.kind != crate::pki::CertKind::Person {
        Some((
            Denial::KindNotAllowed,
            "emergency access is for a doctor's own HPKI card".to_owned(),
        ))
    } else if identity.roles.is_empty() {
        Some((
            Denial::NoHcRole,
            "emergency access needs an hcRole".to_owned(),
        ))
    } else if !identity.roles.iter().any(|r| allowed_roles.contains(r)) {
        Some((
            Denial::RoleNotAllowed,
            format!(
                "role {:?} is not among emergency.allow_roles {:?}",
                identity.roles, allowed_roles
            ),
        ))
    } else if identity.hpki_id.is_none() {
        Some((
            Denial::NoHcRole,
            "the certificate carries no HPKI id to record the grant under".to_owned(),
        ))
    } else {
        None
    };
    let csrf = gw.csrf_token(&identity.sha256);
    let minutes = gw.config.emergency.duration.as_secs() / 60;
    let path = req.uri().path().to_owned();
    let rest = path
        .strip_prefix(super::EMERGENCY_PATH)
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let now = store::now();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, []) => match gw.store.active_emergency(&identity.sha256, now).await {
            Ok(active) => page_response(emergency_page(
                StatusCode::OK,
                active.as_ref(),
                role_problem.is_none(),
                &csrf,
                minutes,
                json,
            )),
            Err(e) => store_down(e),
        },
        (Method::POST, []) => {
            let form = match super::held::read_form(req, &identity, gw).await {
                Ok(f) => f,
                Err((denial, detail)) => return deny(denial, Some(&detail), request_id, json),
            };
            if let Some((denial, detail)) = role_problem {
                return deny(denial, Some(&detail), request_id, json);
            }
            let reason = form.get("reason").map(|r| r.trim()).unwrap_or("");
            if reason.is_empty() || reason.chars().count() > MAX_REASON {
                return deny(
                    Denial::BadRequest,
                    Some(&format!(
                        "emergency access needs a reason (the field `reason`, 1 to {MAX_REASON} characters)"
                    )),
                    request_id,
                    json,
                );
            }
            let patient_ref = form
                .get("patient_ref")
                .map(|p| p.trim())
                .filter(|p| !p.is_empty());
            if patient_ref.is_some_and(|p| p.chars().count() > MAX_PATIENT_REF) {
                return deny(
                    Denial::BadRequest,
                    Some(&format!("patient_ref is longer than {MAX_PATIENT_REF} characters")),
                    request_id,
                    json,
                );
            }
            match gw.store.active_emergency(&identity.sha256, now).await {
                Ok(Some(active)) => {
                    return page_response(emergency_page(
                        StatusCode::OK,
                        Some(&active),
                        true,
                        &csrf,
                        minutes,
                        json,
                    ))
                }
                Ok(None) => {}
                Err(e) => return store_down(e),
            }
            let grant = EmergencyGrant {
                id: store::new_id("e-"),
                doctor: DoctorRef {
                    hpki_id: identity.hpki_id.clone().unwrap_or_default(),
                    issuer: identity.issuer.clone(),
                },
                doctor_name: identity
                    .name_kanji
                    .clone()
                    .or_else(|| identity.name.clone())
                    .unwrap_or_default(),
                cert_sha256: identity.sha256.clone(),
                reason: reason.to_owned(),
                patient_ref: patient_ref.map(str::to_owned),
                started_at: now,
                expires_at: now + gw.config.emergency.duration.as_secs() as i64,
                ended_at: None,
                followup_at: None,
                followup_by: None,
                followup_note: None,
            };
            if let Err(e) = gw.store.insert_emergency(&grant).await {
                return store_down(e);
            }
            gw.forget_grant(&identity.sha256).await;
            tracing::warn!(
                request_id, grant = %grant.id, doctor = %grant.doctor.hpki_id,
                patient = ?grant.patient_ref, reason = %grant.reason,
                "emergency access granted"
            );
            let mut r = super::held::event(&identity, "emergency", request_id);
            r.decision = Some("grant".into());
            r.detail = Some(format!(
                "grant {} until {} for patient {}: {}",
                grant.id,
                store::format_time(grant.expires_at),
                grant.patient_ref.as_deref().unwrap_or("-"),
                grant.reason
            ));
            super::held::record_event(gw, r).await;
            page_response(emergency_page(
                StatusCode::CREATED,
                Some(&grant),
                true,
                &csrf,
                minutes,
                json,
            ))
        }
        (Method::POST, [id, "end"]) => {
            if let Err((denial, detail)) = super::held::read_form(req, &identity, gw).await {
                return deny(denial, Some(&detail), request_id, json);
            }
            match gw.store.end_emergency(id, &identity.sha256, now).await {
                Ok(true) => {
                    gw.forget_grant(&identity.sha256).await;
                    let mut r = super::held::event(&identity, "emergency", request_id);
                    r.decision = Some("end".into());
                    r.detail = Some(format!("grant {id} ended by the doctor"));
                    super::held::record_event(gw, r).await;
                    tracing::info!(request_id, grant = %id, "emergency access ended by the doctor");
                    page_response(emergency_page(
                        StatusCode::OK,
                        None,
                        role_problem.is_none(),
                        &csrf,
                        minutes,
                        json,
                    ))
                }
                Ok(false) => deny(
                    Denial::BadRequest,
                    Some(&format!("no running emergency grant {id} of this card")),
                    request_id,
                    json,
                ),
                Err(e) => store_down(e),
            }
        }
        _ => deny(
            Denial::BadRequest,
            Some("GET /_hpki/emergency shows the form; POST starts a grant; POST /_hpki/emergency/<id>/end ends it"),
            request_id,
            json,
        ),
    }
}
