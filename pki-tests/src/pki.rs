//! The HPKI-shaped test PKI: which certificates exist, how each is built, and where they
//! are written.
//!
//! rcgen encodes the certificate structure (names, validity, keyUsage, EKU, CRL
//! distribution points, basicConstraints, key identifiers on CAs) and signs; every
//! HPKI-specific extension comes from [`crate::hpki_ext`] as raw DER.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
    PKCS_RSA_SHA256,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::der_writer::DerError;
use crate::hpki_ext;
use crate::manifest::{
    CaEntry, LeafEntry, Manifest, ProfileEntry, SubjectKind, TrustStoreEntry, MANIFEST_FILE,
};
use crate::profile::{self, policy, reason};

/// Where the CRL distribution points and CPS pointers lead: a local HTTP server a test
/// can start, never a real repository.
pub const DEFAULT_CRL_BASE_URL: &str = "http://127.0.0.1:8880";

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Reference time; every validity period is relative to it. Sub-second precision is
    /// dropped because certificates cannot carry it and the manifest must match them.
    pub now: OffsetDateTime,
    /// Base of CRL distribution point and CPS URLs, without a trailing slash.
    pub crl_base_url: String,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            now: OffsetDateTime::now_utc(),
            crl_base_url: DEFAULT_CRL_BASE_URL.to_owned(),
        }
    }
}

#[derive(Debug)]
pub enum PkiError {
    Certificate {
        name: String,
        source: rcgen::Error,
    },
    Encoding {
        name: String,
        source: DerError,
    },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Json(serde_json::Error),
    Time(String),
    Random,
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Certificate { name, source } => {
                write!(f, "cannot build certificate {name}: {source}")
            }
            PkiError::Encoding { name, source } => {
                write!(f, "cannot encode an extension of {name}: {source}")
            }
            PkiError::Io { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            PkiError::Json(e) => write!(f, "cannot serialise the manifest: {e}"),
            PkiError::Time(e) => write!(f, "time out of range: {e}"),
            PkiError::Random => write!(f, "the system random number generator failed"),
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkiError::Certificate { source, .. } => Some(source),
            PkiError::Encoding { source, .. } => Some(source),
            PkiError::Io { source, .. } => Some(source),
            PkiError::Json(e) => Some(e),
            PkiError::Time(_) | PkiError::Random => None,
        }
    }
}

/// Who a leaf certificate is issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub name_romaji: &'static str,
    /// Family and given name separated by U+3000, as on real cards.
    pub name_kanji: &'static str,
    pub hpki_id: &'static str,
    pub org: &'static str,
    pub org_kanji: &'static str,
}

/// What the key on the card is for; decides keyUsage and EKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafUsage {
    /// Authentication card of a person: digitalSignature + keyEncipherment, clientAuth.
    Authentication,
    /// Signing card: nonRepudiation only and no EKU, exactly like real HPKI signing certs.
    Signing,
    /// Organization certificate: digitalSignature, clientAuth.
    Organization,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafValidity {
    Current,
    Expired,
    NotYetValid,
}

/// One end-entity certificate of the test PKI, with what the gateway must say about it.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub name: &'static str,
    pub issuer: &'static str,
    pub usage: LeafUsage,
    pub holder: Holder,
    pub roles: &'static [&'static str],
    pub validity: LeafValidity,
    pub policy: &'static str,
    pub unknown_critical: bool,
    /// CA certificates a client sends along, nearest first.
    pub chain: &'static [&'static str],
    pub expect_hpki_auth: &'static str,
    pub expect_hpki_org: &'static str,
}

/// One CA certificate of the test PKI.
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub name: &'static str,
    /// `None` for a self-signed root.
    pub issuer: Option<&'static str>,
    pub org: &'static str,
    pub org_unit: Option<&'static str>,
    pub common_name: &'static str,
    pub policy: Option<&'static str>,
    /// For a cross certificate: the CA whose subject and key it certifies.
    pub cross_certifies: Option<&'static str>,
}

const HOSPITAL: &str = "MEDIS UNIVERSITY HOSPITAL";
const HOSPITAL_KANJI: &str = "医療情報大学病院";

const fn person(
    name_romaji: &'static str,
    name_kanji: &'static str,
    hpki_id: &'static str,
) -> Holder {
    Holder {
        name_romaji,
        name_kanji,
        hpki_id,
        org: HOSPITAL,
        org_kanji: HOSPITAL_KANJI,
    }
}

const DOCTOR: Holder = person("Ichiro Kagurazaka", "神楽坂\u{3000}一郎", "Test000001");

const CA_OPERATOR: &str = "HPKI Test CA Operator";
const CA_UNIT: Option<&str> = Some("Test HPKI CA");

/// The CA hierarchy, parents before children.
pub fn ca_specs() -> Vec<CaSpec> {
    let intermediate = |name, issuer, common_name, policy| CaSpec {
        name,
        issuer: Some(issuer),
        org: CA_OPERATOR,
        org_unit: CA_UNIT,
        common_name,
        policy: Some(policy),
        cross_certifies: None,
    };
    let root = |name, org, common_name| CaSpec {
        name,
        issuer: None,
        org,
        org_unit: None,
        common_name,
        policy: None,
        cross_certifies: None,
    };
    vec![
        // Shaped like the MHLW root: no certificatePolicies at all.
        root("root", "HPKI Test Authority", "Test HPKI Root CA"),
        intermediate(
            "auth-ca",
            "root",
            "HPKI-01-TestAuthCA-forAuthentication-forIndividual",
            policy::AUTH_CA,
        ),
        intermediate(
            "sign-ca",
            "root",
            "HPKI-01-TestSignCA-forNonRepudiation",
            policy::SIGN_CA,
        ),
        intermediate(
            "org-ca",
            "root",
            "HPKI-01-TestAuthCA-forAuthentication-forOrganization",
            policy::ORG_CA,
        ),
        root("root-g2", "HPKI Test Authority", "Test HPKI Root CA G2"),
        CaSpec {
            name: "root-g2-cross",
            issuer: Some("root"),
            org: "",
            org_unit: None,
            common_name: "",
            policy: None,
            cross_certifies: Some("root-g2"),
        },
        intermediate(
            "auth-ca-g2",
            "root-g2",
            "HPKI-01-TestAuthCA-G2-forAuthentication-forIndividual",
            policy::AUTH_CA,
        ),
        // Same CN and shape as root, different organisation and key: nothing a verifier
        // anchored at root may accept.
        root(
            "untrusted-root",
            "Unrelated HPKI Look-alike Authority",
            "Test HPKI Root CA",
        ),
    ]
}

/// The end-entity certificates with their expectations, written by reasoning from the
/// HPKI rules (see [`profile::reason::PRECEDENCE`] for cases failing several checks).
pub fn leaf_specs() -> Vec<LeafSpec> {
    use reason::*;
    let auth = |name, holder, roles, expect_hpki_auth, expect_hpki_org| LeafSpec {
        name,
        issuer: "auth-ca",
        usage: LeafUsage::Authentication,
        holder,
        roles,
        validity: LeafValidity::Current,
        policy: policy::AUTH_END_ENTITY,
        unknown_critical: false,
        chain: &["auth-ca"],
        expect_hpki_auth,
        expect_hpki_org,
    };
    const DOCTOR_ROLE: &[&str] = &["Medical Doctor"];
    vec![
        // Chains to root under both profiles (the client sends auth-ca), so hpki-org
        // rejects on policy alone.
        auth("doctor", DOCTOR, DOCTOR_ROLE, VALID, POLICY_NOT_ACCEPTED),
        auth(
            "pharmacist",
            person("Jiro Kagurazaka", "神楽坂\u{3000}二郎", "Test000002"),
            &["Pharmacist"],
            VALID,
            POLICY_NOT_ACCEPTED,
        ),
        // Certificate validation does not look at the profession; which roles may log in
        // is authorisation, configured separately.
        auth(
            "dentist",
            person("Saburo Kagurazaka", "神楽坂\u{3000}三郎", "Test000003"),
            &["Dentist"],
            VALID,
            POLICY_NOT_ACCEPTED,
        ),
        // A valid chain without hcRole is a valid certificate, just not proof of a
        // profession.
        auth(
            "clerk",
            person("Shiro Kagurazaka", "神楽坂\u{3000}四郎", "Test000004"),
            &[],
            VALID,
            POLICY_NOT_ACCEPTED,
        ),
        LeafSpec {
            validity: LeafValidity::Expired,
            ..auth(
                "expired",
                person("Goro Kagurazaka", "神楽坂\u{3000}五郎", "Test000005"),
                DOCTOR_ROLE,
                CERT_EXPIRED,
                CERT_EXPIRED,
            )
        },
        LeafSpec {
            validity: LeafValidity::NotYetValid,
            ..auth(
                "not-yet-valid",
                person("Rokuro Kagurazaka", "神楽坂\u{3000}六郎", "Test000006"),
                DOCTOR_ROLE,
                CERT_NOT_YET_VALID,
                CERT_NOT_YET_VALID,
            )
        },
        LeafSpec {
            unknown_critical: true,
            ..auth(
                "unknown-critical",
                person("Shichiro Kagurazaka", "神楽坂\u{3000}七郎", "Test000007"),
                DOCTOR_ROLE,
                UNSUPPORTED_CRITICAL_EXTENSION,
                UNSUPPORTED_CRITICAL_EXTENSION,
            )
        },
        LeafSpec {
            policy: policy::UNASSIGNED,
            ..auth(
                "wrong-policy",
                person("Hachiro Kagurazaka", "神楽坂\u{3000}八郎", "Test000008"),
                DOCTOR_ROLE,
                POLICY_NOT_ACCEPTED,
                POLICY_NOT_ACCEPTED,
            )
        },
        // The doctor's other card. It chains to the same root, which is exactly why the
        // gateway must refuse it for login by its usage.
        LeafSpec {
            name: "signing-card",
            issuer: "sign-ca",
            usage: LeafUsage::Signing,
            holder: DOCTOR,
            roles: DOCTOR_ROLE,
            validity: LeafValidity::Current,
            policy: policy::SIGN_END_ENTITY,
            unknown_critical: false,
            chain: &["sign-ca"],
            expect_hpki_auth: SIGNING_CERT_NOT_FOR_LOGIN,
            expect_hpki_org: SIGNING_CERT_NOT_FOR_LOGIN,
        },
        LeafSpec {
            name: "org-clinic",
            issuer: "org-ca",
            usage: LeafUsage::Organization,
            holder: Holder {
                name_romaji: "Kagurazaka Clinic",
                name_kanji: "神楽坂クリニック",
                hpki_id: "TestOrg001",
                org: "Kagurazaka Clinic",
                org_kanji: "神楽坂クリニック",
            },
            roles: &[],
            validity: LeafValidity::Current,
            policy: policy::ORG_END_ENTITY,
            unknown_critical: false,
            chain: &["org-ca"],
            expect_hpki_auth: POLICY_NOT_ACCEPTED,
            expect_hpki_org: VALID,
        },
        // Reaches root only through root-g2-cross, which the client has to send.
        LeafSpec {
            issuer: "auth-ca-g2",
            chain: &["auth-ca-g2", "root-g2-cross"],
            ..auth(
                "doctor-g2",
                person("Kuro Kagurazaka", "神楽坂\u{3000}九郎", "Test000009"),
                DOCTOR_ROLE,
                VALID,
                POLICY_NOT_ACCEPTED,
            )
        },
        // Claims to be the doctor, from a hierarchy no profile trusts.
        LeafSpec {
            issuer: "untrusted-root",
            chain: &[],
            ..auth(
                "untrusted-doctor",
                DOCTOR,
                DOCTOR_ROLE,
                UNTRUSTED_ISSUER,
                UNTRUSTED_ISSUER,
            )
        },
    ]
}

/// Trust stores written under `DIR/trust/`: (name, anchors, intermediates).
pub fn trust_store_specs() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            profile::TRUST_HPKI_AUTH,
            vec!["root"],
            // sign-ca is here so that a signing card chains and can be refused for what it
            // is rather than as untrusted.
            vec!["auth-ca", "sign-ca"],
        ),
        (profile::TRUST_HPKI_ORG, vec!["root"], vec!["org-ca"]),
        (profile::TRUST_HPKI_G2, vec!["root-g2"], vec![]),
        (profile::TRUST_HPKI_SIGN, vec!["root"], vec!["sign-ca"]),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafDetails {
    pub kind: SubjectKind,
    pub roles: Vec<String>,
    pub holder: Holder,
    pub key_usage: Vec<String>,
    pub extended_key_usage: Vec<String>,
    pub chain: Vec<String>,
    pub unknown_critical_extensions: Vec<String>,
    pub expect: BTreeMap<String, String>,
}

/// One generated certificate and its private key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// File stem.
    pub name: String,
    /// File stem of the issuer; equal to `name` when self-signed.
    pub issuer: String,
    /// Subject in RFC 4514-like display form (most significant first, as openssl prints).
    pub subject: String,
    pub der: Vec<u8>,
    pub pem: String,
    /// Serial number as DER INTEGER content octets.
    pub serial: Vec<u8>,
    /// PKCS#8 PEM ("BEGIN PRIVATE KEY").
    pub key_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub policies: Vec<String>,
    pub crl_distribution_point: String,
    /// `None` for CA certificates.
    pub leaf: Option<LeafDetails>,
}

impl IssuedCert {
    pub fn is_ca(&self) -> bool {
        self.leaf.is_none()
    }
}

/// The generated test PKI, held in memory until [`TestPki::write_to`].
#[derive(Debug, Clone)]
pub struct TestPki {
    pub now: OffsetDateTime,
    pub crl_base_url: String,
    /// CAs first (parents before children), then leaves, in specification order.
    pub certs: Vec<IssuedCert>,
    /// The CAs' keys, kept so that tests can issue new CRLs (revocations) later.
    cas: HashMap<&'static str, CaState>,
}

/// A certificate to list on a CRL.
#[derive(Debug, Clone)]
pub struct Revoked<'a> {
    /// File stem of the revoked certificate.
    pub cert: &'a str,
    pub at: OffsetDateTime,
    pub reason: Option<rcgen::RevocationReason>,
}

/// A CRL issued by one of the test CAs.
#[derive(Debug, Clone)]
pub struct IssuedCrl {
    /// File stem of the issuing CA.
    pub issuer: String,
    pub der: Vec<u8>,
    pub pem: String,
}

/// Validity of the CRLs written by [`TestPki::write_to`]: long enough for any test run,
/// short enough to be plainly a test artefact.
pub const INITIAL_CRL_DAYS: i64 = 7;

#[derive(Debug, Clone)]
struct CaState {
    params: CertificateParams,
    key: std::sync::Arc<KeyPair>,
    policies: Vec<String>,
}

impl TestPki {
    pub fn generate(opts: &GenerateOptions) -> Result<TestPki, PkiError> {
        Self::generate_with_progress(opts, |_| {})
    }

    /// Like [`TestPki::generate`], calling `progress` after each certificate, since RSA
    /// key generation makes the whole run take seconds.
    pub fn generate_with_progress(
        opts: &GenerateOptions,
        mut progress: impl FnMut(&IssuedCert),
    ) -> Result<TestPki, PkiError> {
        let now = opts
            .now
            .to_offset(UtcOffset::UTC)
            .replace_nanosecond(0)
            .map_err(|e| PkiError::Time(e.to_string()))?;
        let base = opts.crl_base_url.trim_end_matches('/').to_owned();
        let mut cas: HashMap<&'static str, CaState> = HashMap::new();
        let mut certs = Vec::new();

        for spec in ca_specs() {
            let (cert, state) = issue_ca(&spec, now, &base, &cas)?;
            progress(&cert);
            certs.push(cert);
            cas.insert(spec.name, state);
        }
        for spec in leaf_specs() {
            let cert = issue_leaf(&spec, now, &base, &cas)?;
            progress(&cert);
            certs.push(cert);
        }
        Ok(TestPki {
            now,
            crl_base_url: base,
            certs,
            cas,
        })
    }

    /// A CRL from CA `issuer` listing `revoked`, numbered `number`, valid from
    /// `this_update` to `next_update`. Built with rcgen, independently of the gateway.
    pub fn crl(
        &self,
        issuer: &str,
        revoked: &[Revoked<'_>],
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<IssuedCrl, PkiError> {
        let ca = self
            .cas
            .get(issuer)
            .ok_or_else(|| PkiError::Time(format!("no CA named {issuer}")))?;
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            let cert = self
                .get(r.cert)
                .ok_or_else(|| PkiError::Time(format!("no certificate named {}", r.cert)))?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&cert.serial),
                revocation_time: r.at,
                reason_code: r.reason,
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&Issuer::from_params(&ca.params, &*ca.key))
            .map_err(|source| PkiError::Certificate {
                name: format!("{issuer} CRL"),
                source,
            })?;
        Ok(IssuedCrl {
            issuer: issuer.to_owned(),
            der: crl.der().to_vec(),
            pem: crl.pem().map_err(|source| PkiError::Certificate {
                name: format!("{issuer} CRL"),
                source,
            })?,
        })
    }

    /// The first CRL of a CA: nothing revoked, number 1, issued an hour ago.
    pub fn initial_crl(&self, issuer: &str) -> Result<IssuedCrl, PkiError> {
        self.crl(
            issuer,
            &[],
            1,
            self.now - Duration::hours(1),
            self.now + Duration::days(INITIAL_CRL_DAYS),
        )
    }

    /// Issues one more end-entity certificate from the generated CAs (`spec.issuer` names
    /// one), for load tests that need many distinct cards. It is not added to `certs`, the
    /// trust stores or the manifest.
    pub fn issue_extra(&self, spec: &LeafSpec) -> Result<IssuedCert, PkiError> {
        issue_leaf(spec, self.now, &self.crl_base_url, &self.cas)
    }

    pub fn get(&self, name: &str) -> Option<&IssuedCert> {
        self.certs.iter().find(|c| c.name == name)
    }

    pub fn leaves(&self) -> impl Iterator<Item = &IssuedCert> {
        self.certs.iter().filter(|c| !c.is_ca())
    }

    pub fn cas(&self) -> impl Iterator<Item = &IssuedCert> {
        self.certs.iter().filter(|c| c.is_ca())
    }

    /// Writes `certs/<name>.pem` and `.key`, the trust stores and `manifest.json` under
    /// `dir`, creating directories as needed and overwriting files of an earlier run.
    pub fn write_to(&self, dir: &Path) -> Result<Manifest, PkiError> {
        let certs_dir = dir.join("certs");
        create_dir(&certs_dir)?;
        for cert in &self.certs {
            write_file(&certs_dir.join(format!("{}.pem", cert.name)), &cert.pem)?;
            write_file(&certs_dir.join(format!("{}.key", cert.name)), &cert.key_pem)?;
        }
        for (store, anchors, intermediates) in trust_store_specs() {
            let store_dir = dir.join("trust").join(store);
            for (sub, names) in [("anchors", &anchors), ("intermediates", &intermediates)] {
                let sub_dir = store_dir.join(sub);
                create_dir(&sub_dir)?;
                for name in names.iter() {
                    let cert = self.get(name).expect("trust stores name generated CAs");
                    write_file(&sub_dir.join(format!("{name}.pem")), &cert.pem)?;
                }
            }
            let crl_dir = store_dir.join("crls");
            create_dir(&crl_dir)?;
            for name in anchors.iter().chain(intermediates.iter()) {
                let crl = self.initial_crl(name)?;
                fs::write(crl_dir.join(format!("{name}.crl")), &crl.der).map_err(|source| {
                    PkiError::Io {
                        path: crl_dir.join(format!("{name}.crl")),
                        source,
                    }
                })?;
            }
        }
        // Every CA's CRL, named as its distribution point names it, for serving over HTTP.
        let crls_dir = dir.join("crls");
        create_dir(&crls_dir)?;
        for ca in self.cas() {
            let crl = self.initial_crl(&ca.name)?;
            let path = crls_dir.join(format!("{}.crl", ca.name));
            fs::write(&path, &crl.der).map_err(|source| PkiError::Io { path, source })?;
        }
        let manifest = self.manifest()?;
        let mut json = serde_json::to_string_pretty(&manifest).map_err(PkiError::Json)?;
        json.push('\n');
        write_file(&dir.join(MANIFEST_FILE), &json)?;
        Ok(manifest)
    }

    pub fn manifest(&self) -> Result<Manifest, PkiError> {
        let cert_path = |name: &str| format!("certs/{name}.pem");
        let key_path = |name: &str| format!("certs/{name}.key");
        let cas = self
            .cas()
            .map(|c| {
                Ok(CaEntry {
                    name: c.name.clone(),
                    cert: cert_path(&c.name),
                    key: key_path(&c.name),
                    issuer: c.issuer.clone(),
                    self_signed: c.issuer == c.name,
                    subject: c.subject.clone(),
                    not_before: rfc3339(c.not_before)?,
                    not_after: rfc3339(c.not_after)?,
                    policies: c.policies.clone(),
                    crl_distribution_point: c.crl_distribution_point.clone(),
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let leaves = self
            .leaves()
            .map(|c| {
                let leaf = c.leaf.as_ref().expect("leaves() yields leaves");
                Ok(LeafEntry {
                    name: c.name.clone(),
                    cert: cert_path(&c.name),
                    key: key_path(&c.name),
                    chain: leaf.chain.iter().map(|n| cert_path(n)).collect(),
                    issuer: c.issuer.clone(),
                    kind: leaf.kind.clone(),
                    roles: leaf.roles.clone(),
                    hpki_id: leaf.holder.hpki_id.to_owned(),
                    name_romaji: leaf.holder.name_romaji.to_owned(),
                    name_kanji: leaf.holder.name_kanji.to_owned(),
                    org: Some(leaf.holder.org.to_owned()),
                    org_kanji: Some(leaf.holder.org_kanji.to_owned()),
                    not_before: rfc3339(c.not_before)?,
                    not_after: rfc3339(c.not_after)?,
                    key_usage: leaf.key_usage.clone(),
                    extended_key_usage: leaf.extended_key_usage.clone(),
                    policies: c.policies.clone(),
                    crl_distribution_point: c.crl_distribution_point.clone(),
                    unknown_critical_extensions: leaf.unknown_critical_extensions.clone(),
                    expect: leaf.expect.clone(),
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let profiles = profile::LOGIN_PROFILES
            .iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    ProfileEntry {
                        trust_store: format!("trust/{}", p.trust_store),
                        purpose: "login".to_owned(),
                        required_policy_prefix: p.required_policy_prefix.to_owned(),
                        description: p.description.to_owned(),
                    },
                )
            })
            .collect();
        let trust_stores = trust_store_specs()
            .into_iter()
            .map(|(name, anchors, intermediates)| {
                let dir = format!("trust/{name}");
                let entry = TrustStoreEntry {
                    anchors: anchors
                        .iter()
                        .map(|a| format!("{dir}/anchors/{a}.pem"))
                        .collect(),
                    intermediates: intermediates
                        .iter()
                        .map(|i| format!("{dir}/intermediates/{i}.pem"))
                        .collect(),
                    crls: format!("{dir}/crls"),
                    dir,
                };
                (name.to_owned(), entry)
            })
            .collect();
        Ok(Manifest {
            generated_by: format!("hpki-testpki {}", env!("CARGO_PKG_VERSION")),
            now: rfc3339(self.now)?,
            crl_base_url: self.crl_base_url.clone(),
            reason_precedence: reason::PRECEDENCE.iter().map(|s| s.to_string()).collect(),
            profiles,
            trust_stores,
            cas,
            leaves,
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> Result<String, PkiError> {
    t.format(&Rfc3339)
        .map_err(|e| PkiError::Time(e.to_string()))
}

fn create_dir(path: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// Calendar-agnostic year: validity only needs to be long, not to land on an anniversary.
const YEAR_DAYS: i64 = 365;

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Random)?;
    // Positive and exactly 16 octets, so every serial encodes the same way.
    bytes[0] = (bytes[0] & 0x7F) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn printable(name: &str, text: &str) -> Result<DnValue, PkiError> {
    let value = text.try_into().map_err(|source| PkiError::Certificate {
        name: name.to_owned(),
        source,
    })?;
    Ok(DnValue::PrintableString(value))
}

fn serial_number_dn_type() -> DnType {
    DnType::CustomDnType(vec![2, 5, 4, 5])
}

fn oid_arcs(dotted: &str) -> Vec<u64> {
    dotted
        .split('.')
        .map(|a| a.parse().expect("built-in OID constant"))
        .collect()
}

fn extension(oid: &str, critical: bool, value: Vec<u8>) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(&oid_arcs(oid), value);
    ext.set_criticality(critical);
    ext
}

fn policies_extension(
    name: &str,
    policy_oid: &str,
    base: &str,
) -> Result<CustomExtension, PkiError> {
    let cps = format!("{base}/cps/");
    let value =
        hpki_ext::certificate_policies_value(&[policy_oid], Some(&cps)).map_err(|source| {
            PkiError::Encoding {
                name: name.to_owned(),
                source,
            }
        })?;
    // Critical on every HPKI CA and end-entity certificate: the reason rustls-webpki
    // rejects real cards, so the gateway must cope with it.
    Ok(extension(hpki_ext::OID_CERTIFICATE_POLICIES, true, value))
}

fn generate_key(name: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_RSA_SHA256).map_err(|source| PkiError::Certificate {
        name: name.to_owned(),
        source,
    })
}

fn issue_ca(
    spec: &CaSpec,
    now: OffsetDateTime,
    base: &str,
    cas: &HashMap<&'static str, CaState>,
) -> Result<(IssuedCert, CaState), PkiError> {
    let rcgen_err = |source| PkiError::Certificate {
        name: spec.name.to_owned(),
        source,
    };
    let issuer_name = spec.issuer.unwrap_or(spec.name);
    let crl_distribution_point = format!("{base}/{issuer_name}.crl");

    let (mut params, key, policies) = match spec.cross_certifies {
        // Same subject, key and extensions as the certified CA; only the issuer differs.
        Some(subject_ca) => {
            let certified = &cas[subject_ca];
            // rcgen's KeyPair is not Clone; a round trip through PKCS#8 gives a second
            // handle on the same key.
            let key = KeyPair::from_pkcs8_pem_and_sign_algo(
                &certified.key.serialize_pem(),
                &PKCS_RSA_SHA256,
            )
            .map_err(rcgen_err)?;
            (certified.params.clone(), key, certified.policies.clone())
        }
        None => {
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CountryName, printable(spec.name, "JP")?);
            dn.push(DnType::OrganizationName, spec.org);
            if let Some(unit) = spec.org_unit {
                dn.push(DnType::OrganizationalUnitName, unit);
            }
            dn.push(DnType::CommonName, spec.common_name);
            params.distinguished_name = dn;
            params.not_before = now - days(YEAR_DAYS);
            params.not_after = params.not_before + days(20 * YEAR_DAYS);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.use_authority_key_identifier_extension = true;
            if let Some(policy_oid) = spec.policy {
                params
                    .custom_extensions
                    .push(policies_extension(spec.name, policy_oid, base)?);
            }
            let policies = spec.policy.iter().map(|p| p.to_string()).collect();
            (params, generate_key(spec.name)?, policies)
        }
    };
    let serial = random_serial()?;
    params.serial_number = Some(serial.clone());
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![crl_distribution_point.clone()],
    }];

    let cert = match spec.issuer {
        None => params.self_signed(&key),
        Some(issuer) => {
            let parent = &cas[issuer];
            params.signed_by(&key, &Issuer::from_params(&parent.params, &*parent.key))
        }
    }
    .map_err(rcgen_err)?;

    let issued = IssuedCert {
        name: spec.name.to_owned(),
        issuer: issuer_name.to_owned(),
        subject: display_dn(&params.distinguished_name),
        der: cert.der().to_vec(),
        pem: cert.pem(),
        serial: serial.to_bytes(),
        key_pem: key.serialize_pem(),
        not_before: params.not_before,
        not_after: params.not_after,
        policies: policies.clone(),
        crl_distribution_point,
        leaf: None,
    };
    Ok((
        issued,
        CaState {
            params,
            key: std::sync::Arc::new(key),
            policies,
        },
    ))
}

fn issue_leaf(
    spec: &LeafSpec,
    now: OffsetDateTime,
    base: &str,
    cas: &HashMap<&'static str, CaState>,
) -> Result<IssuedCert, PkiError> {
    let rcgen_err = |source| PkiError::Certificate {
        name: spec.name.to_owned(),
        source,
    };
    let encoding_err = |source| PkiError::Encoding {
        name: spec.name.to_owned(),
        source,
    };
    let holder = &spec.holder;
    let key = generate_key(spec.name)?;
    let mut params = CertificateParams::default();

    // Attribute order and string types as in real MEDIS certificates.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable(spec.name, "JP")?);
    dn.push(DnType::OrganizationName, holder.org);
    dn.push(DnType::CommonName, holder.name_romaji);
    dn.push(
        serial_number_dn_type(),
        printable(spec.name, holder.hpki_id)?,
    );
    params.distinguished_name = dn;

    let five_years = days(5 * YEAR_DAYS);
    (params.not_before, params.not_after) = match spec.validity {
        LeafValidity::Current => (now - days(1), now + five_years),
        // Inside the issuing CA's validity, which starts a year before now.
        LeafValidity::Expired => (now - days(300), now - days(1)),
        LeafValidity::NotYetValid => (now + days(1), now + five_years),
    };
    let serial = random_serial()?;
    params.serial_number = Some(serial.clone());
    params.use_authority_key_identifier_extension = true;

    let (key_usages, key_usage_names): (Vec<_>, &[&str]) = match spec.usage {
        LeafUsage::Authentication => (
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            &["digitalSignature", "keyEncipherment"],
        ),
        // rcgen calls nonRepudiation by its X.509 2000 name, contentCommitment.
        LeafUsage::Signing => (
            vec![KeyUsagePurpose::ContentCommitment],
            &["nonRepudiation"],
        ),
        LeafUsage::Organization => (
            vec![KeyUsagePurpose::DigitalSignature],
            &["digitalSignature"],
        ),
    };
    let (ekus, eku_names): (Vec<_>, &[&str]) = match spec.usage {
        LeafUsage::Authentication | LeafUsage::Organization => {
            (vec![ExtendedKeyUsagePurpose::ClientAuth], &["clientAuth"])
        }
        LeafUsage::Signing => (vec![], &[]),
    };
    params.key_usages = key_usages;
    params.extended_key_usages = ekus;

    let crl_distribution_point = format!("{base}/{}.crl", spec.issuer);
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![crl_distribution_point.clone()],
    }];

    // Custom extensions follow the order of a real card: SKI, SAN, SDA, policies.
    let key_id = params.key_identifier(&key);
    params.custom_extensions.push(extension(
        hpki_ext::OID_SUBJECT_KEY_IDENTIFIER,
        false,
        hpki_ext::subject_key_identifier_value(&key_id),
    ));
    let san = hpki_ext::kanji_san_extension_value(
        Some(holder.org_kanji),
        holder.name_kanji,
        holder.hpki_id,
    )
    .map_err(encoding_err)?;
    params
        .custom_extensions
        .push(extension(hpki_ext::OID_SUBJECT_ALT_NAME, false, san));
    if !spec.roles.is_empty() {
        params.custom_extensions.push(extension(
            hpki_ext::OID_SUBJECT_DIRECTORY_ATTRIBUTES,
            false,
            hpki_ext::hc_role_extension_value(spec.roles),
        ));
    }
    params
        .custom_extensions
        .push(policies_extension(spec.name, spec.policy, base)?);
    let mut unknown_critical_extensions = Vec::new();
    if spec.unknown_critical {
        params.custom_extensions.push(extension(
            hpki_ext::OID_UNKNOWN_CRITICAL,
            true,
            hpki_ext::unknown_critical_extension_value(),
        ));
        unknown_critical_extensions.push(hpki_ext::OID_UNKNOWN_CRITICAL.to_owned());
    }

    let parent = &cas[spec.issuer];
    let cert = params
        .signed_by(&key, &Issuer::from_params(&parent.params, &*parent.key))
        .map_err(rcgen_err)?;

    let expect = BTreeMap::from([
        (
            profile::PROFILE_HPKI_AUTH.to_owned(),
            spec.expect_hpki_auth.to_owned(),
        ),
        (
            profile::PROFILE_HPKI_ORG.to_owned(),
            spec.expect_hpki_org.to_owned(),
        ),
    ]);
    Ok(IssuedCert {
        name: spec.name.to_owned(),
        issuer: spec.issuer.to_owned(),
        subject: display_dn(&params.distinguished_name),
        der: cert.der().to_vec(),
        pem: cert.pem(),
        serial: serial.to_bytes(),
        key_pem: key.serialize_pem(),
        not_before: params.not_before,
        not_after: params.not_after,
        policies: vec![spec.policy.to_owned()],
        crl_distribution_point,
        leaf: Some(LeafDetails {
            kind: match spec.usage {
                LeafUsage::Organization => SubjectKind::Organization,
                LeafUsage::Authentication | LeafUsage::Signing => SubjectKind::Person,
            },
            roles: spec.roles.iter().map(|r| r.to_string()).collect(),
            holder: spec.holder,
            key_usage: key_usage_names.iter().map(|k| k.to_string()).collect(),
            extended_key_usage: eku_names.iter().map(|e| e.to_string()).collect(),
            chain: spec.chain.iter().map(|c| c.to_string()).collect(),
            unknown_critical_extensions,
            expect,
        }),
    })
}

fn display_dn(dn: &DistinguishedName) -> String {
    dn.iter()
        .map(|(ty, value)| {
            let label = match ty {
                DnType::CountryName => "C".to_owned(),
                DnType::OrganizationName => "O".to_owned(),
                DnType::OrganizationalUnitName => "OU".to_owned(),
                DnType::CommonName => "CN".to_owned(),
                DnType::CustomDnType(arcs) if arcs == &[2, 5, 4, 5] => "serialNumber".to_owned(),
                other => format!("{other:?}"),
            };
            let text = match value {
                DnValue::PrintableString(s) => s.as_str().to_owned(),
                DnValue::Utf8String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            format!("{label}={text}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_has_an_expectation_for_every_profile_from_the_known_codes() {
        for spec in leaf_specs() {
            for code in [spec.expect_hpki_auth, spec.expect_hpki_org] {
                assert!(reason::ALL.contains(&code), "{}: {code}", spec.name);
            }
        }
    }

    #[test]
    fn spec_names_are_unique_and_issuers_exist_before_use() {
        let mut seen = std::collections::HashSet::new();
        for ca in ca_specs() {
            if let Some(issuer) = ca.issuer {
                assert!(seen.contains(issuer), "{} issued before {issuer}", ca.name);
            }
            assert!(seen.insert(ca.name), "duplicate {}", ca.name);
        }
        for leaf in leaf_specs() {
            assert!(seen.contains(leaf.issuer), "{}", leaf.name);
            for c in leaf.chain {
                assert!(seen.contains(c), "{} chain names {c}", leaf.name);
            }
            assert!(seen.insert(leaf.name), "duplicate {}", leaf.name);
        }
    }
}
