//! Who a certificate names: hcRole (ISO 17090 in subjectDirectoryAttributes), romaji
//! and kanji names, HPKI id, and whether it may be used to log in.

use const_oid::db::rfc4519;
use const_oid::ObjectIdentifier;
use x509_cert::ext::pkix::name::GeneralName;

use super::der_walk::{directory_string, tag, TlvReader};
use super::name::{attribute, display};
use super::{oids, ParsedCertificate, PolicyPrefix, Reason};

/// Whether the certificate stands for a person or an organization (a clinic's card).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    Person,
    Organization,
    Unknown,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Person => "person",
            CertKind::Organization => "organization",
            CertKind::Unknown => "unknown",
        }
    }
}

/// Policy arcs that mark a certificate as issued to a person. HPKI signing (1.1) and
/// authentication-for-individuals (1.2) are public facts; organization arcs are not
/// published, so they only come from configuration.
pub fn default_person_policies() -> Vec<PolicyPrefix> {
    ["1.2.392.100495.1.5.1.1", "1.2.392.100495.1.5.1.2"]
        .iter()
        .filter_map(|s| PolicyPrefix::parse(s).ok())
        .collect()
}

/// The identity facts read from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// Every hcRole codeDataFreeText under the HPKI coding scheme, exactly as encoded.
    pub roles: Vec<String>,
    pub name: Option<String>,
    pub name_kanji: Option<String>,
    pub org: Option<String>,
    pub org_kanji: Option<String>,
    /// subject serialNumber (the HPKI id).
    pub hpki_id: Option<String>,
}

impl CertIdentity {
    /// The first role, which is what a single-valued header carries.
    pub fn role(&self) -> Option<&str> {
        self.roles.first().map(String::as_str)
    }
}

/// Reads the identity. A present but malformed hcRole is an error, never "no role":
/// a card must not lose its profession silently, nor gain one.
pub fn read_identity(cert: &ParsedCertificate) -> Result<CertIdentity, Reason> {
    let roles = match &cert.subject_directory_attributes {
        Some(value) => hc_roles(value).ok_or(Reason::MalformedCertificate)?,
        None => Vec::new(),
    };
    let subject = cert.subject();
    let kanji = cert.subject_alt_names().and_then(|names| {
        names.iter().find_map(|gn| match gn {
            GeneralName::DirectoryName(n) => Some(n),
            _ => None,
        })
    });
    Ok(CertIdentity {
        roles,
        name: attribute(subject, &rfc4519::CN),
        name_kanji: kanji.and_then(|n| attribute(n, &rfc4519::CN)),
        org: attribute(subject, &rfc4519::O),
        org_kanji: kanji.and_then(|n| attribute(n, &rfc4519::O)),
        hpki_id: attribute(subject, &rfc4519::SERIAL_NUMBER),
    })
}

/// hcRole strings from a subjectDirectoryAttributes value; None if malformed.
///
/// ```text
/// SEQUENCE OF Attribute { type 1.0.17090.0.1, values SET OF HCActorData }
/// HCActorData ::= SET OF HCActor
/// HCActor ::= SEQUENCE { codedData [0] EXPLICIT CodedData, ... }
/// CodedData ::= SET { [0] EXPLICIT OID, [1] ... OPTIONAL, [2] EXPLICIT DirectoryString }
/// ```
pub fn hc_roles(sda_value: &[u8]) -> Option<Vec<String>> {
    let mut roles = Vec::new();
    let mut top = TlvReader::new(sda_value);
    let attrs = top.expect(tag::SEQUENCE)?;
    if !top.is_empty() {
        return None;
    }
    let mut attrs = TlvReader::new(attrs.value);
    while let Some(attr) = attrs.read() {
        if attr.tag != tag::SEQUENCE {
            return None;
        }
        let mut a = TlvReader::new(attr.value);
        let oid = a.expect(tag::OID)?;
        let values = a.expect(tag::SET)?;
        if ObjectIdentifier::from_bytes(oid.value).ok()? != oids::HC_ACTOR {
            continue;
        }
        let mut values = TlvReader::new(values.value);
        while let Some(actor_data) = values.read() {
            if actor_data.tag != tag::SET {
                return None;
            }
            let mut actors = TlvReader::new(actor_data.value);
            while let Some(actor) = actors.read() {
                if actor.tag != tag::SEQUENCE {
                    return None;
                }
                let mut fields = TlvReader::new(actor.value);
                let coded_data = fields.expect(0xa0)?;
                let mut inner = TlvReader::new(coded_data.value);
                let set = inner.expect(tag::SET)?;
                let mut scheme = None;
                let mut text = None;
                let mut items = TlvReader::new(set.value);
                while let Some(item) = items.read() {
                    match item.tag {
                        0xa0 => {
                            let mut r = TlvReader::new(item.value);
                            let o = r.expect(tag::OID)?;
                            scheme = Some(ObjectIdentifier::from_bytes(o.value).ok()?);
                        }
                        0xa2 => {
                            let mut r = TlvReader::new(item.value);
                            let s = r.read()?;
                            text = Some(directory_string(&s)?);
                        }
                        // codeDataValue [1] is "do not use" in Japan: tolerated, ignored.
                        0xa1 => {}
                        _ => return None,
                    }
                }
                if items.failed() {
                    return None;
                }
                if scheme == Some(oids::HPKI_ROLE_CODING_SCHEME) {
                    if let Some(t) = text {
                        roles.push(t);
                    }
                }
            }
            if actors.failed() {
                return None;
            }
        }
        if values.failed() {
            return None;
        }
    }
    if attrs.failed() {
        return None;
    }
    Some(roles)
}

/// Classifies a certificate: person if it carries hcRole or a policy under
/// `person_policies`, organization if under `organization_policies`.
pub fn classify(
    cert: &ParsedCertificate,
    identity: &CertIdentity,
    person_policies: &[PolicyPrefix],
    organization_policies: &[PolicyPrefix],
) -> CertKind {
    let policies = cert.policies().unwrap_or(&[]);
    let under = |prefixes: &[PolicyPrefix]| {
        policies
            .iter()
            .any(|p| prefixes.iter().any(|pre| pre.matches(p)))
    };
    if under(organization_policies) {
        CertKind::Organization
    } else if !identity.roles.is_empty() || under(person_policies) {
        CertKind::Person
    } else {
        CertKind::Unknown
    }
}

/// Why this certificate cannot be used to log in, judged from the certificate alone
/// (empty = usable). A signing card chains to the same root as an authentication card,
/// so this check is what keeps signing cards out.
pub fn login_problems(cert: &ParsedCertificate) -> Vec<Reason> {
    let mut problems = Vec::new();
    if cert.is_ca() {
        problems.push(Reason::CaCertNotForLogin);
    }
    if let Some(ku) = cert.key_usage() {
        if !ku.digital_signature {
            problems.push(if ku.non_repudiation {
                Reason::SigningCertNotForLogin
            } else {
                Reason::KeyUsageNotForLogin
            });
        }
    }
    if let Some(eku) = cert.ext_key_usage() {
        if !eku.contains(&oids::KP_CLIENT_AUTH) && !eku.contains(&oids::ANY_EXTENDED_KEY_USAGE) {
            problems.push(Reason::EkuNotAllowed);
        }
    }
    problems
}

/// Why this certificate cannot sign a confirmation, judged from the certificate alone
/// (empty = a signing certificate). HPKI signing cards carry keyUsage nonRepudiation
/// (critical, alone); an authentication card's digitalSignature is not a commitment.
pub fn signing_problems(cert: &ParsedCertificate) -> Vec<Reason> {
    let non_repudiation = cert.key_usage().is_some_and(|ku| ku.non_repudiation);
    if cert.is_ca() || !non_repudiation {
        vec![Reason::KeyUsageNotForSigning]
    } else {
        Vec::new()
    }
}

/// Subject as text, for headers and logs.
pub fn subject_text(cert: &ParsedCertificate) -> String {
    display(cert.subject())
}
