//! Object identifiers the validator acts on.

use const_oid::ObjectIdentifier as Oid;

pub const BASIC_CONSTRAINTS: Oid = Oid::new_unwrap("2.5.29.19");
pub const KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.15");
pub const EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
pub const CERTIFICATE_POLICIES: Oid = Oid::new_unwrap("2.5.29.32");
pub const POLICY_MAPPINGS: Oid = Oid::new_unwrap("2.5.29.33");
pub const POLICY_CONSTRAINTS: Oid = Oid::new_unwrap("2.5.29.36");
pub const INHIBIT_ANY_POLICY: Oid = Oid::new_unwrap("2.5.29.54");
pub const NAME_CONSTRAINTS: Oid = Oid::new_unwrap("2.5.29.30");
pub const SUBJECT_ALT_NAME: Oid = Oid::new_unwrap("2.5.29.17");
pub const SUBJECT_KEY_ID: Oid = Oid::new_unwrap("2.5.29.14");
pub const AUTHORITY_KEY_ID: Oid = Oid::new_unwrap("2.5.29.35");
pub const SUBJECT_DIRECTORY_ATTRIBUTES: Oid = Oid::new_unwrap("2.5.29.9");
pub const CRL_DISTRIBUTION_POINTS: Oid = Oid::new_unwrap("2.5.29.31");
pub const AUTHORITY_INFO_ACCESS: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.1.1");
pub const AD_OCSP: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.48.1");

pub const ANY_EXTENDED_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37.0");
pub const KP_SERVER_AUTH: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.1");
pub const KP_CLIENT_AUTH: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.2");

/// ISO 17090 id-hcpki-at-healthcareactor.
pub const HC_ACTOR: Oid = Oid::new_unwrap("1.0.17090.0.1");
/// The Japanese HPKI coding scheme for hcRole.
pub const HPKI_ROLE_CODING_SCHEME: Oid = Oid::new_unwrap("1.2.392.100495.1.6.1.1");

pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
pub const RSASSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
pub const MGF1: Oid = Oid::new_unwrap("1.2.840.113549.1.1.8");
pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
pub const SECP256R1: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
pub const SECP384R1: Oid = Oid::new_unwrap("1.3.132.0.34");
pub const ECDSA_WITH_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
pub const ECDSA_WITH_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
pub const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
