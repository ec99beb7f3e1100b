//! `Identity`: who is on a connection, built once after the handshake, and the headers
//! and assertion claims made from it.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Map, Value};

use crate::assertion::{AssertionSigner, PreparedClaims};
use crate::pki::{self, name, CertKind};
use crate::trust::Authenticated;

/// Header values are ASCII: everything else, and '%' itself (so decoding is exact), is
/// percent-encoded UTF-8. ',' is encoded so that lists stay unambiguous.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b'%').add(b',');

pub fn encode_header_value(s: &str) -> String {
    utf8_percent_encode(s, HEADER_VALUE).to_string()
}

/// The identity headers the gateway owns. Any client-sent header with one of these names
/// (or any `X-HPKI-*`) is removed before forwarding.
pub const STRIPPED_EXACT: [&str; 3] = [
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
];
pub const STRIPPED_PREFIX: &str = "x-hpki-";

/// The authenticated holder of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: CertKind,
    pub profile: String,
    pub roles: Vec<String>,
    pub name: Option<String>,
    pub name_kanji: Option<String>,
    pub org: Option<String>,
    pub org_kanji: Option<String>,
    pub hpki_id: Option<String>,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sha256: String,
    /// The upstream headers, encoded once per connection rather than on every request.
    upstream_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// [`Self::claims`], serialized once per connection rather than on every request.
    assertion_claims: PreparedClaims,
}

impl Identity {
    pub fn from_authenticated(auth: &Authenticated) -> Result<Identity, pki::Reason> {
        let leaf = auth.path.leaf();
        let id = pki::read_identity(leaf)?;
        let mut identity = Identity {
            kind: auth.kind,
            profile: auth.profile.clone(),
            roles: id.roles,
            name: id.name,
            name_kanji: id.name_kanji,
            org: id.org,
            org_kanji: id.org_kanji,
            hpki_id: id.hpki_id,
            subject: name::display(leaf.subject()),
            issuer: name::display(leaf.issuer()),
            serial: leaf.serial_hex(),
            sha256: name::hex(leaf.sha256()),
            upstream_headers: Vec::new(),
            assertion_claims: PreparedClaims::default(),
        };
        identity.upstream_headers = identity
            .headers()
            .into_iter()
            .filter_map(|(name, value)| {
                // Encoded values are ASCII by construction, so this cannot fail.
                http::HeaderValue::from_str(&value)
                    .ok()
                    .map(|v| (http::HeaderName::from_static(name), v))
            })
            .collect();
        identity.assertion_claims = PreparedClaims::new(&identity.claims());
        Ok(identity)
    }

    /// The identity headers for the upstream, ready to insert.
    pub fn upstream_headers(&self) -> &[(http::HeaderName, http::HeaderValue)] {
        &self.upstream_headers
    }

    /// Headers for the upstream, values already encoded (DESIGN.md lists them).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("x-hpki-kind", self.kind.as_str().to_owned())];
        if !self.roles.is_empty() {
            let roles: Vec<String> = self.roles.iter().map(|r| encode_header_value(r)).collect();
            h.push(("x-hpki-role", roles.join(",")));
        }
        let optional = [
            ("x-hpki-id", &self.hpki_id),
            ("x-hpki-name", &self.name),
            ("x-hpki-name-kanji", &self.name_kanji),
            ("x-hpki-org", &self.org),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                h.push((k, encode_header_value(v)));
            }
        }
        h.push(("x-hpki-subject", encode_header_value(&self.subject)));
        h.push(("x-hpki-cert-serial", self.serial.clone()));
        h.push(("x-hpki-cert-issuer", encode_header_value(&self.issuer)));
        h.push(("x-hpki-cert-sha256", self.sha256.clone()));
        h
    }

    /// Claims of the signed assertion (the signer adds iss/aud/iat/exp/jti).
    pub fn claims(&self) -> Map<String, Value> {
        let v = self.to_json();
        let mut m = match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some(id) = &self.hpki_id {
            m.insert("sub".into(), Value::String(id.clone()));
        } else {
            m.insert(
                "sub".into(),
                Value::String(format!("sha256:{}", self.sha256)),
            );
        }
        m
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "profile": self.profile,
            "role": self.roles.first(),
            "roles": self.roles,
            "name": self.name,
            "name_kanji": self.name_kanji,
            "org": self.org,
            "org_kanji": self.org_kanji,
            "hpki_id": self.hpki_id,
            "subject": self.subject,
            "cert_issuer": self.issuer,
            "cert_serial": self.serial,
            "cert_sha256": self.sha256,
        })
    }
}

/// Who acts on one request: the connection's certificate holder, plus, for a clinic's
/// organization card, the assistant the ledger names as its current holder, plus a
/// doctor's running emergency grant. Built per request because the ledger and grants
/// change while a connection lives.
#[derive(Debug, Clone)]
pub struct Principal<'a> {
    pub identity: &'a Identity,
    pub assistant: Option<std::sync::Arc<crate::store::CardHolder>>,
    /// The id of the doctor's active emergency grant.
    pub emergency: Option<String>,
}

impl Principal<'_> {
    /// Headers beyond the connection's own (`Identity::upstream_headers`).
    pub fn extra_headers(&self) -> Vec<(http::HeaderName, http::HeaderValue)> {
        let mut h: Vec<(&'static str, String)> = Vec::new();
        if let Some(holder) = &self.assistant {
            let a = &holder.assistant;
            h.push(("x-hpki-assistant-id", encode_header_value(&a.id)));
            h.push(("x-hpki-assistant-name", encode_header_value(&a.name_romaji)));
            h.push((
                "x-hpki-assistant-name-kanji",
                encode_header_value(&a.name_kanji),
            ));
            h.push((
                "x-hpki-assistant-facility",
                encode_header_value(&a.facility),
            ));
            let ids: Vec<String> = holder
                .supervisors
                .iter()
                .map(|d| encode_header_value(&d.hpki_id))
                .collect();
            h.push(("x-hpki-supervisors", ids.join(",")));
        }
        if let Some(grant) = &self.emergency {
            h.push(("x-hpki-emergency", encode_header_value(grant)));
        }
        h.into_iter()
            .filter_map(|(name, value)| {
                http::HeaderValue::from_str(&value)
                    .ok()
                    .map(|v| (http::HeaderName::from_static(name), v))
            })
            .collect()
    }

    /// Signs the assertion of one request: [`Self::claims`], with the identity's part
    /// serialized beforehand.
    pub fn assertion(
        &self,
        signer: &AssertionSigner,
        audience: &str,
        request_id: &str,
        now_unix: u64,
    ) -> String {
        let own = &self.identity.assertion_claims;
        if self.assistant.is_none() && self.emergency.is_none() {
            return signer.sign_prepared(&[own], audience, request_id, now_unix);
        }
        let mut extra = self.claims();
        extra.retain(|k, _| k == "assistant" || k == "emergency");
        signer.sign_prepared(
            &[own, &PreparedClaims::new(&extra)],
            audience,
            request_id,
            now_unix,
        )
    }

    /// Assertion claims: the identity's, plus `assistant` and `emergency`.
    pub fn claims(&self) -> Map<String, Value> {
        let mut m = self.identity.claims();
        if let Some(holder) = &self.assistant {
            let a = &holder.assistant;
            m.insert(
                "assistant".into(),
                json!({
                    "id": a.id,
                    "name": a.name_romaji,
                    "name_kanji": a.name_kanji,
                    "facility": a.facility,
                    "supervisors": holder.supervisors.iter().map(|d| &d.hpki_id).collect::<Vec<_>>(),
                }),
            );
        }
        if let Some(grant) = &self.emergency {
            m.insert("emergency".into(), Value::String(grant.clone()));
        }
        m
    }

    /// The identity as `/_hpki/whoami` shows it.
    pub fn to_json(&self) -> Value {
        let mut v = self.identity.to_json();
        if let Some(holder) = &self.assistant {
            v["assistant"] = json!({
                "id": holder.assistant.id,
                "name": holder.assistant.name_romaji,
                "name_kanji": holder.assistant.name_kanji,
                "facility": holder.assistant.facility,
                "supervisors": holder.supervisors.iter().map(|d| &d.hpki_id).collect::<Vec<_>>(),
            });
        }
        if let Some(grant) = &self.emergency {
            v["emergency"] = Value::String(grant.clone());
        }
        v
    }
}

/// What the gateway knows about the client of a connection.
#[derive(Debug, Clone)]
pub enum ConnectionIdentity {
    /// No client certificate (allowed only under `client_auth = "optional"`).
    Anonymous,
    Authenticated(std::sync::Arc<Identity>),
    /// A certificate was presented (and its key proven) but it is not accepted.
    Refused {
        reason: pki::Reason,
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_and_separators_are_percent_encoded() {
        assert_eq!(encode_header_value("Medical Doctor"), "Medical Doctor");
        assert_eq!(
            encode_header_value("神楽坂\u{3000}一郎"),
            "%E7%A5%9E%E6%A5%BD%E5%9D%82%E3%80%80%E4%B8%80%E9%83%8E"
        );
        assert_eq!(encode_header_value("a,b%c\r\n"), "a%2Cb%25c%0D%0A");
    }
}
