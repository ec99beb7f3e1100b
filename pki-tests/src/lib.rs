//! HPKI-shaped test PKI for hpki-gateway.
//!
//! Certificates are built with rcgen; the HPKI extensions rcgen cannot express (hcRole in
//! subjectDirectoryAttributes, the kanji directoryName SAN, critical certificatePolicies
//! with a CPS pointer) are hand-encoded by [`der_writer`], which shares no code with the
//! `der`/`x509-cert` crates the gateway parses with, and are checked byte-for-byte against
//! real HPKI certificates. A parser bug in the gateway therefore cannot be mirrored here.
//!
//! ```no_run
//! use pki_tests::{GenerateOptions, TestPki};
//! let pki = TestPki::generate(&GenerateOptions::default())?;
//! let manifest = pki.write_to(std::path::Path::new("target/testpki"))?;
//! assert_eq!(manifest.leaf("doctor").unwrap().expect["hpki-auth"], "valid");
//! # Ok::<(), pki_tests::PkiError>(())
//! ```

pub mod bench;
pub mod bulk_crl;
pub mod client;
pub mod der_reader;
pub mod der_writer;
pub mod hpki_ext;
pub mod manifest;
pub mod pki;
pub mod profile;
pub mod server;
pub mod vcard;

pub use hpki_ext::{
    certificate_policies_value, hc_role_extension_value, kanji_san_extension_value,
    unknown_critical_extension_value,
};
pub use manifest::{LeafEntry, Manifest, SubjectKind};
pub use pki::{
    GenerateOptions, IssuedCert, IssuedCrl, PkiError, Revoked, TestPki, DEFAULT_CRL_BASE_URL,
    INITIAL_CRL_DAYS,
};
