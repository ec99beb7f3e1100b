//! The doctor's signature on a held write's confirmation (`confirm.require_signature`,
//! docs/confirmation-signature.md): checked before the claim, in this order, each failure
//! with its own reason code:
//!
//! 1. a signature and a signing certificate were sent (`signature_required`);
//! 2. both can be read, and the signature verifies over the confirmation text rebuilt
//!    from the *stored* entry and the logged-in doctor (`signature_invalid` — so an entry
//!    changed after the doctor signed fails here);
//! 3. the certificate validates for signing against the signing profile
//!    (`signing_cert_untrusted`, the path reason in the detail);
//! 4. it is not revoked under that profile's revocation policy, with the same CRL/OCSP
//!    machinery as logins (`signing_cert_revoked`, `signing_cert_status_unknown`);
//! 5. its HPKI id is the logged-in doctor's (`signer_not_doctor`).
//!
//! The text building and the signature check are `pki::confirmation` (pure); this shell
//! adds the form, the trust store, the clock and revocation.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;

use super::Gateway;
use crate::pages::Denial;
use crate::pki::confirmation::{confirmation_digest, verify_confirmation_signature};
use crate::pki::{self, name, ParsedCertificate};
use crate::store::{ConfirmationSignature, PendingWrite};

/// Why a signed confirmation is refused: the denial, its detail, and the signing
/// certificate's SHA-256 when one was read (for the audit record).
#[derive(Debug)]
pub struct SignatureRefusal {
    pub denial: Denial,
    pub detail: String,
    pub signer_sha256: Option<String>,
}

fn refuse(denial: Denial, detail: impl Into<String>) -> SignatureRefusal {
    SignatureRefusal {
        denial,
        detail: detail.into(),
        signer_sha256: None,
    }
}

/// Checks the signature posted with a confirmation of `entry` by the doctor with HPKI id
/// `doctor_hpki_id`; the signature to store with the claim, or why not.
pub async fn verify(
    gw: &Gateway,
    entry: &PendingWrite,
    doctor_hpki_id: &str,
    form: &HashMap<String, String>,
) -> Result<ConfirmationSignature, SignatureRefusal> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let (signature_field, certificate_field) = (field("signature"), field("certificate"));
    let missing: Vec<&str> = [
        ("signature", signature_field),
        ("certificate", certificate_field),
    ]
    .iter()
    .filter(|(_, v)| v.is_empty())
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(refuse(
            Denial::SignatureRequired,
            format!(
                "confirming needs the doctor's signature; missing: {}. Sign the confirmation \
                 text with `hpki-card sign --digest <its SHA-256>` and send the signature \
                 (base64) as `signature` and the signing certificate (PEM or base64 DER) as \
                 `certificate`",
                missing.join(", ")
            ),
        ));
    }
    let signature = decode_base64(signature_field).ok_or_else(|| {
        refuse(
            Denial::SignatureInvalid,
            "the signature is not base64: paste what `hpki-card sign --digest` printed",
        )
    })?;
    let (leaf, presented) = read_certificates(certificate_field).map_err(|e| {
        refuse(
            Denial::SignatureInvalid,
            format!("the signing certificate cannot be read: {e}"),
        )
    })?;
    let signer_sha256 = name::hex(leaf.sha256());
    let with_signer = |denial: Denial, detail: String| SignatureRefusal {
        denial,
        detail,
        signer_sha256: Some(signer_sha256.clone()),
    };
    let text = entry
        .confirmation_text(doctor_hpki_id)
        .map_err(|e| with_signer(Denial::BadRequest, e.to_string()))?;
    let digest = confirmation_digest(&text);
    verify_confirmation_signature(&leaf, text.as_bytes(), &signature).map_err(|reason| {
        with_signer(
            Denial::SignatureInvalid,
            format!(
                "the signature does not verify ({reason}) over the confirmation text of entry {} \
                 as stored now (SHA-256 {}) with the key of \"{}\": the entry changed after it \
                 was signed, or another text or key was used",
                entry.id,
                name::hex(&digest),
                name::display(leaf.subject())
            ),
        )
    })?;
    let trust = gw.trust();
    let profile_name = gw.config.confirm.signing_profile.as_deref().unwrap_or("");
    let Some(profile) = trust.signing_profile(profile_name) else {
        return Err(with_signer(
            Denial::SigningCertUntrusted,
            format!(
                "no signing trust profile {profile_name:?} is loaded (confirm.signing_profile)"
            ),
        ));
    };
    let now = super::now();
    let path = profile
        .validate_signing(&leaf, &presented, now)
        .map_err(|e| {
            with_signer(
                Denial::SigningCertUntrusted,
                format!(
                    "{}: {} (signing profile {})",
                    e.reason.code(),
                    e.detail,
                    profile.name
                ),
            )
        })?;
    use crate::revocation::Outcome;
    match gw.revocation.check(&path, &profile.revocation, now).await {
        Outcome::Good => {}
        Outcome::AllowedUnavailable { depth, why } => {
            super::record_fail_open(gw, &path, &profile.name, depth, &why).await;
        }
        Outcome::Revoked {
            depth,
            reason,
            source,
        } => {
            return Err(with_signer(
                Denial::SigningCertRevoked,
                format!(
                    "{} is revoked ({}) according to {source} (signing profile {})",
                    if depth == 0 {
                        "the signing certificate".to_owned()
                    } else {
                        format!("the CA certificate at depth {depth} above the signing certificate")
                    },
                    reason.as_deref().unwrap_or("no reason given"),
                    profile.name
                ),
            ))
        }
        Outcome::Unavailable { depth, why } => {
            return Err(with_signer(
                Denial::SigningCertStatusUnknown,
                format!(
                    "revocation status of the certificate at depth {depth} unknown: {why} \
                     (signing profile {}, revocation.on_unavailable = \"deny\")",
                    profile.name
                ),
            ))
        }
    }
    let signer_id = pki::read_identity(&leaf).ok().and_then(|i| i.hpki_id);
    if signer_id.as_deref() != Some(doctor_hpki_id) {
        return Err(with_signer(
            Denial::SignerNotDoctor,
            format!(
                "the signing certificate's HPKI id is {}, the logged-in doctor's is {doctor_hpki_id}",
                signer_id.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    Ok(ConfirmationSignature {
        digest,
        signature,
        certificate: leaf.der().to_vec(),
        chain: path.chain[1..].iter().map(|c| c.der().to_vec()).collect(),
    })
}

/// Standard base64, whitespace (line breaks of a paste) ignored.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
        .filter(|b| !b.is_empty())
}

/// The signing certificate, then any CA certificates pasted after it: PEM (one or more
/// blocks, as `hpki-card certs --pem` prints them) or one base64 DER certificate.
fn read_certificates(
    text: &str,
) -> Result<(Arc<ParsedCertificate>, Vec<Arc<ParsedCertificate>>), String> {
    let certs = if text.contains("-----BEGIN") {
        // Lax about text around the blocks (labels, comments), like OpenSSL.
        pki::pem_blocks(text)
            .map_err(|e| e.detail)?
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| ParsedCertificate::from_der(&b.der).map_err(|e| e.detail))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let der = decode_base64(text)
            .ok_or("neither PEM nor base64 DER: paste the certificate as `hpki-card certs --pem` prints it")?;
        vec![ParsedCertificate::from_der(&der).map_err(|e| e.detail)?]
    };
    let mut certs = certs.into_iter().map(Arc::new);
    let leaf = certs.next().ok_or("no certificate")?;
    Ok((leaf, certs.collect()))
}
