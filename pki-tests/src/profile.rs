//! Policy OIDs, the gateway's reason codes and the trust profiles the expectations in the
//! manifest are written against.
//!
//! The expectations are stated by hand per certificate (see `pki::leaf_specs`), reasoned
//! from the HPKI rules in `shared/hpki/README.md`; nothing here computes them.

/// Policy OIDs. The signing and individual-authentication CA OIDs are the real HPKI ones.
/// The end-entity authentication OID follows the real arc layout (`...1.5.1.2.` for
/// authentication, `.0.1` for end entities) but no public sample exists, and the
/// organization OIDs are made up for this test PKI: in the gateway all of them are
/// configuration, never code.
pub mod policy {
    pub const SIGN_CA: &str = "1.2.392.100495.1.5.1.1.3.1";
    pub const SIGN_END_ENTITY: &str = "1.2.392.100495.1.5.1.1.0.1";
    pub const AUTH_CA: &str = "1.2.392.100495.1.5.1.2.3.1";
    pub const AUTH_END_ENTITY: &str = "1.2.392.100495.1.5.1.2.0.1";
    /// Test value: the real organization-certificate OIDs are configuration.
    pub const ORG_CA: &str = "1.2.392.100495.1.5.1.3.3.1";
    /// Test value: the real organization-certificate OIDs are configuration.
    pub const ORG_END_ENTITY: &str = "1.2.392.100495.1.5.1.3.0.1";
    /// Under the HPKI arc but in no profile: a certificate that chains fine yet must not
    /// be accepted for anything.
    pub const UNASSIGNED: &str = "1.2.392.100495.1.5.1.9.0.1";

    /// Arc prefixes the two login profiles require of the end-entity certificate.
    pub const AUTH_PREFIX: &str = "1.2.392.100495.1.5.1.2";
    pub const ORG_PREFIX: &str = "1.2.392.100495.1.5.1.3";
}

/// The gateway's stable reason codes used in `expect`.
pub mod reason {
    pub const VALID: &str = "valid";
    pub const CERT_EXPIRED: &str = "cert_expired";
    pub const CERT_NOT_YET_VALID: &str = "cert_not_yet_valid";
    pub const UNTRUSTED_ISSUER: &str = "untrusted_issuer";
    pub const UNSUPPORTED_CRITICAL_EXTENSION: &str = "unsupported_critical_extension";
    pub const POLICY_NOT_ACCEPTED: &str = "policy_not_accepted";
    pub const SIGNING_CERT_NOT_FOR_LOGIN: &str = "signing_cert_not_for_login";

    pub const ALL: [&str; 7] = [
        VALID,
        CERT_EXPIRED,
        CERT_NOT_YET_VALID,
        UNTRUSTED_ISSUER,
        UNSUPPORTED_CRITICAL_EXTENSION,
        POLICY_NOT_ACCEPTED,
        SIGNING_CERT_NOT_FOR_LOGIN,
    ];

    /// When a certificate fails several checks, the expectation names the first failing
    /// one in this order. Without a path to an anchor nothing else in the certificate can
    /// be believed; validity and unrecognised critical extensions are path-validation
    /// failures (RFC 5280 6.1.3, 6.1.5) that make the certificate unusable whatever it
    /// is for; a signing card is named as such rather than as a policy mismatch because
    /// that tells the user to take the other card; the policy check comes last.
    pub const PRECEDENCE: [&str; 6] = [
        UNTRUSTED_ISSUER,
        CERT_EXPIRED,
        CERT_NOT_YET_VALID,
        UNSUPPORTED_CRITICAL_EXTENSION,
        SIGNING_CERT_NOT_FOR_LOGIN,
        POLICY_NOT_ACCEPTED,
    ];
}

/// Profile names used as keys of `expect`.
pub const PROFILE_HPKI_AUTH: &str = "hpki-auth";
pub const PROFILE_HPKI_ORG: &str = "hpki-org";

/// Trust-store directory names under `DIR/trust/`.
pub const TRUST_HPKI_AUTH: &str = "hpki-auth";
pub const TRUST_HPKI_ORG: &str = "hpki-org";
pub const TRUST_HPKI_G2: &str = "hpki-g2";
pub const TRUST_HPKI_SIGN: &str = "hpki-sign";

/// A login profile as the expectations assume it.
#[derive(Debug, Clone, Copy)]
pub struct LoginProfile {
    pub name: &'static str,
    pub trust_store: &'static str,
    pub required_policy_prefix: &'static str,
    pub description: &'static str,
}

pub const LOGIN_PROFILES: [LoginProfile; 2] = [
    LoginProfile {
        name: PROFILE_HPKI_AUTH,
        trust_store: TRUST_HPKI_AUTH,
        required_policy_prefix: policy::AUTH_PREFIX,
        description: "Login with an HPKI authentication (individual) card. Anchor: root. \
            Intermediates come from the trust store and from the chain the client sends. \
            The end-entity certificate must carry a certificatePolicies OID under the \
            required prefix (arc-wise); CA policy OIDs differ from end-entity ones in \
            HPKI, so they are not matched against it. A signing certificate \
            (keyUsage nonRepudiation without digitalSignature) is refused as \
            signing_cert_not_for_login.",
    },
    LoginProfile {
        name: PROFILE_HPKI_ORG,
        trust_store: TRUST_HPKI_ORG,
        required_policy_prefix: policy::ORG_PREFIX,
        description: "Login with a medical institution's organization certificate \
            (assistants). Anchor: root. Same rules as hpki-auth with the organization \
            policy prefix.",
    },
];
