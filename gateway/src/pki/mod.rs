//! The HPKI certificate core: parsing, path building and validation, policy and name
//! constraints, hcRole and identity extraction.
//!
//! Pure by design (like rustls' core): no I/O, no async, no clock — the validation time
//! is a parameter — and no panics on any input, so it can be fuzzed and tested
//! exhaustively. Everything that touches disk, network or time sits around it.

mod cert;
pub mod confirmation;
pub mod crl;
pub mod der_walk;
mod identity;
pub mod name;
pub mod name_constraints;
pub mod ocsp;
pub mod oids;
mod path;
pub mod policy;
mod reason;
pub mod revocation_check;
mod signature;

pub use cert::{
    parse_certificates, pem_blocks, pem_encode, sha256, KeyUsageBits, ParseError,
    ParsedCertificate, PemBlock,
};
pub use identity::{
    classify, default_person_policies, hc_roles, login_problems, read_identity, signing_problems,
    subject_text, CertIdentity, CertKind,
};
pub use path::{
    verify_for_login, verify_for_signing, verify_path, CertificatePool, KeyPurpose, PathError,
    PathOptions, ValidatedPath, DEFAULT_MAX_INTERMEDIATES,
};
pub use policy::PolicySettings;
pub use reason::Reason;
pub use signature::verify_signature;

use const_oid::ObjectIdentifier;

/// Seconds since the Unix epoch (UTC). The only notion of time `pki` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    pub fn from_x509(t: &x509_cert::time::Time) -> Self {
        UnixTime(t.to_unix_duration().as_secs())
    }

    /// RFC 3339 text (UTC, seconds precision).
    pub fn to_rfc3339(self) -> String {
        let secs = i64::try_from(self.0).unwrap_or(i64::MAX);
        match time::OffsetDateTime::from_unix_timestamp(secs) {
            Ok(t) => t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }

    /// Parses RFC 3339 (`2026-01-01T00:00:00Z`, offsets allowed).
    pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        u64::try_from(t.unix_timestamp()).ok().map(UnixTime)
    }
}

/// A required policy: an OID that matches itself and everything under it, on arc
/// boundaries (`1.2.3` matches `1.2.3` and `1.2.3.4`, not `1.2.34`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPrefix {
    arcs: Vec<u32>,
}

impl PolicyPrefix {
    /// Accepts a dotted OID; a trailing dot (`1.2.392.100495.1.5.1.2.`) is tolerated
    /// because that is how HPKI documents write an arc.
    pub fn parse(s: &str) -> Result<PolicyPrefix, String> {
        let trimmed = s.trim().trim_end_matches('.');
        let arcs: Result<Vec<u32>, _> = trimmed.split('.').map(str::parse::<u32>).collect();
        match arcs {
            Ok(arcs) if arcs.len() >= 2 => Ok(PolicyPrefix { arcs }),
            _ => Err(format!(
                "\"{s}\" is not a dotted OID (expected something like 1.2.392.100495.1.5.1.2)"
            )),
        }
    }

    pub fn matches(&self, oid: &ObjectIdentifier) -> bool {
        let mut arcs = oid.arcs();
        for want in &self.arcs {
            match arcs.next() {
                Some(have) if have == *want => {}
                _ => return false,
            }
        }
        true
    }
}

impl std::fmt::Display for PolicyPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.arcs.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_prefix_matches_on_arc_boundaries() {
        let p = PolicyPrefix::parse("1.2.392.100495.1.5.1.2.").unwrap();
        let yes = ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.2.0.1");
        let same = ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.2");
        let no = ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.20.1");
        let sign = ObjectIdentifier::new_unwrap("1.2.392.100495.1.5.1.1.0.1");
        assert!(p.matches(&yes));
        assert!(p.matches(&same));
        assert!(!p.matches(&no));
        assert!(!p.matches(&sign));
        assert!(PolicyPrefix::parse("hello").is_err());
        assert!(PolicyPrefix::parse("1").is_err());
    }

    #[test]
    fn unix_time_round_trips_rfc3339() {
        let t = UnixTime::parse_rfc3339("2026-11-22T12:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T12:00:00Z");
        assert_eq!(
            UnixTime::parse_rfc3339("2026-11-22T21:00:00+09:00"),
            Some(t)
        );
        assert!(UnixTime::parse_rfc3339("yesterday").is_none());
    }
}
