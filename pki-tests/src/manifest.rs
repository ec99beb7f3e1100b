//! `manifest.json`: what was generated and what the gateway is expected to say about each
//! end-entity certificate. All paths are relative to the output directory and use `/`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The generator and its version, so a stale directory can be recognised.
    pub generated_by: String,
    /// The reference time validity periods were derived from (RFC 3339).
    pub now: String,
    pub crl_base_url: String,
    /// Order in which an `expect` value was chosen when several checks fail.
    pub reason_precedence: Vec<String>,
    /// The profiles named in every leaf's `expect`.
    pub profiles: BTreeMap<String, ProfileEntry>,
    /// Every trust-store directory written, by name (`trust/<name>`).
    pub trust_stores: BTreeMap<String, TrustStoreEntry>,
    pub cas: Vec<CaEntry>,
    pub leaves: Vec<LeafEntry>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))
    }

    pub fn leaf(&self, name: &str) -> Option<&LeafEntry> {
        self.leaves.iter().find(|l| l.name == name)
    }

    pub fn ca(&self, name: &str) -> Option<&CaEntry> {
        self.cas.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileEntry {
    /// Directory of the trust store the profile uses, e.g. `trust/hpki-auth`.
    pub trust_store: String,
    /// What the profile admits a certificate for; both current profiles are `login`.
    pub purpose: String,
    /// Arc prefix the end-entity certificate's policy OID must fall under.
    pub required_policy_prefix: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStoreEntry {
    pub dir: String,
    pub anchors: Vec<String>,
    pub intermediates: Vec<String>,
    /// Holds one initial CRL (`<ca>.crl`, DER, nothing revoked) per CA of the store.
    pub crls: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaEntry {
    pub name: String,
    pub cert: String,
    pub key: String,
    /// File stem of the issuing CA; equal to `name` for a self-signed root.
    pub issuer: String,
    pub self_signed: bool,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub policies: Vec<String>,
    pub crl_distribution_point: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Person,
    Organization,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafEntry {
    /// File stem, e.g. `doctor`.
    pub name: String,
    pub cert: String,
    /// PKCS#8 PEM private key.
    pub key: String,
    /// Intermediate certificates a client sends with this one, nearest first.
    pub chain: Vec<String>,
    pub issuer: String,
    pub kind: SubjectKind,
    /// hcRole strings; empty when the certificate has no hcRole extension.
    pub roles: Vec<String>,
    /// Subject serialNumber: the HPKI id (or the organization's id).
    pub hpki_id: String,
    /// Subject CN in romaji (the person's or the organization's name).
    pub name_romaji: String,
    /// CN of the subjectAltName directoryName.
    pub name_kanji: String,
    /// Subject O.
    pub org: Option<String>,
    /// O of the subjectAltName directoryName.
    pub org_kanji: Option<String>,
    pub not_before: String,
    pub not_after: String,
    /// RFC 5280 names: digitalSignature, nonRepudiation, keyEncipherment.
    pub key_usage: Vec<String>,
    /// `clientAuth` or nothing.
    pub extended_key_usage: Vec<String>,
    pub policies: Vec<String>,
    pub crl_distribution_point: String,
    /// OIDs of critical extensions no verifier is expected to know.
    pub unknown_critical_extensions: Vec<String>,
    /// Profile name → `valid` or the reason code the gateway must return.
    pub expect: BTreeMap<String, String>,
}
