//! Stable reason codes. They are public contract: portals, operators, audit records and
//! acceptance tests match on the snake_case strings, so a variant's code never changes.

use std::fmt;

/// Why a certificate (or a path) is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The bytes are not a well-formed X.509 certificate (or a known extension is malformed).
    MalformedCertificate,
    /// No path from the certificate to a trust anchor of the profile.
    UntrustedIssuer,
    /// A signature on the path does not verify.
    BadSignature,
    /// A signature or key algorithm outside the accepted set (e.g. SHA-1, RSA < 2048 bits).
    UnsupportedSignatureAlgorithm,
    /// The certificate (or one of its issuers) is past notAfter at the validation time.
    CertExpired,
    /// The certificate (or one of its issuers) is before notBefore at the validation time.
    CertNotYetValid,
    /// A critical extension the validator does not understand.
    UnsupportedCriticalExtension,
    /// The end-entity certificate carries none of the profile's required policy OIDs,
    /// or RFC 5280 policy processing left no acceptable policy.
    PolicyNotAccepted,
    /// More CA certificates than the depth limit, or a basicConstraints pathLen exceeded.
    PathTooLong,
    /// An issuing certificate is not a CA (basicConstraints cA absent/false, or v1/v2).
    NotACa,
    /// An issuing CA certificate whose keyUsage lacks keyCertSign.
    CaKeyUsageMissingCertSign,
    /// A name on the path violates an issuer's nameConstraints.
    NameConstraintViolation,
    /// The end-entity's extendedKeyUsage does not allow the required purpose.
    EkuNotAllowed,
    /// Path building gave up: too many candidate paths or signature checks (DoS bound).
    PathTooComplex,
    /// A signing (nonRepudiation-only) certificate presented for login.
    SigningCertNotForLogin,
    /// keyUsage lacks digitalSignature (and it is not a signing card either).
    KeyUsageNotForLogin,
    /// A CA certificate presented as an end-entity certificate.
    CaCertNotForLogin,
    /// The certificate, or a CA above it, is revoked (CRL or OCSP).
    CertRevoked,
    /// Revocation status could not be established (no CRL, a stale CRL, OCSP failed) and
    /// the profile's policy denies in that case.
    RevocationUnavailable,
    /// A certificate offered for signing (a held write's confirmation) that is not a
    /// signing certificate: keyUsage without nonRepudiation, or a CA certificate.
    KeyUsageNotForSigning,
}

impl Reason {
    pub const ALL: [Reason; 20] = [
        Reason::MalformedCertificate,
        Reason::UntrustedIssuer,
        Reason::BadSignature,
        Reason::UnsupportedSignatureAlgorithm,
        Reason::CertExpired,
        Reason::CertNotYetValid,
        Reason::UnsupportedCriticalExtension,
        Reason::PolicyNotAccepted,
        Reason::PathTooLong,
        Reason::NotACa,
        Reason::CaKeyUsageMissingCertSign,
        Reason::NameConstraintViolation,
        Reason::EkuNotAllowed,
        Reason::PathTooComplex,
        Reason::SigningCertNotForLogin,
        Reason::KeyUsageNotForLogin,
        Reason::CaCertNotForLogin,
        Reason::CertRevoked,
        Reason::RevocationUnavailable,
        Reason::KeyUsageNotForSigning,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::MalformedCertificate => "malformed_certificate",
            Reason::UntrustedIssuer => "untrusted_issuer",
            Reason::BadSignature => "bad_signature",
            Reason::UnsupportedSignatureAlgorithm => "unsupported_signature_algorithm",
            Reason::CertExpired => "cert_expired",
            Reason::CertNotYetValid => "cert_not_yet_valid",
            Reason::UnsupportedCriticalExtension => "unsupported_critical_extension",
            Reason::PolicyNotAccepted => "policy_not_accepted",
            Reason::PathTooLong => "path_too_long",
            Reason::NotACa => "not_a_ca",
            Reason::CaKeyUsageMissingCertSign => "ca_key_usage_missing_cert_sign",
            Reason::NameConstraintViolation => "name_constraint_violation",
            Reason::EkuNotAllowed => "eku_not_allowed",
            Reason::PathTooComplex => "path_too_complex",
            Reason::SigningCertNotForLogin => "signing_cert_not_for_login",
            Reason::KeyUsageNotForLogin => "key_usage_not_for_login",
            Reason::CaCertNotForLogin => "ca_cert_not_for_login",
            Reason::CertRevoked => "cert_revoked",
            Reason::RevocationUnavailable => "revocation_unavailable",
            Reason::KeyUsageNotForSigning => "key_usage_not_for_signing",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// One English sentence for operators and CLI output.
    pub const fn description(self) -> &'static str {
        match self {
            Reason::MalformedCertificate => "the certificate is not well-formed DER X.509",
            Reason::UntrustedIssuer => "no path to a trust anchor of this profile",
            Reason::BadSignature => "a signature on the certification path does not verify",
            Reason::UnsupportedSignatureAlgorithm => {
                "a signature or key algorithm outside the accepted set (SHA-1, small RSA keys...)"
            }
            Reason::CertExpired => "a certificate on the path has expired",
            Reason::CertNotYetValid => "a certificate on the path is not yet valid",
            Reason::UnsupportedCriticalExtension => {
                "a certificate carries a critical extension the gateway does not understand"
            }
            Reason::PolicyNotAccepted => "the certificate policy is not one this profile accepts",
            Reason::PathTooLong => "the path is longer than allowed (depth limit or pathLen)",
            Reason::NotACa => "an issuing certificate is not a CA certificate",
            Reason::CaKeyUsageMissingCertSign => "an issuing CA's keyUsage lacks keyCertSign",
            Reason::NameConstraintViolation => "a name violates an issuer's name constraints",
            Reason::EkuNotAllowed => "extendedKeyUsage does not allow this purpose",
            Reason::PathTooComplex => "path building exceeded its work bound",
            Reason::SigningCertNotForLogin => {
                "a signing (nonRepudiation) certificate cannot be used for login"
            }
            Reason::KeyUsageNotForLogin => "keyUsage does not allow digitalSignature",
            Reason::CaCertNotForLogin => "a CA certificate cannot be used for login",
            Reason::CertRevoked => "the certificate (or a CA above it) has been revoked",
            Reason::RevocationUnavailable => {
                "revocation status could not be established and the profile denies in that case"
            }
            Reason::KeyUsageNotForSigning => {
                "not a signing certificate: keyUsage lacks nonRepudiation, or it is a CA certificate"
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let code = r.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(Reason::from_code(code), Some(r));
        }
        assert_eq!(Reason::from_code("nope"), None);
    }
}
