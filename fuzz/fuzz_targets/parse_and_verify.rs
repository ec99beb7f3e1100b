//! Certificate input as a client or an operator hands it over (DER, or a PEM bundle),
//! then everything the gateway does with it: identity, login checks, path validation.
//!
//! The trust store is the real HPKI CAs (MHLW root as anchor, MEDIS CAs as
//! intermediates), read once from `$HPKI_SHARED_DIR/hpki/ca` (or `<repo>/../shared`).
//! Without them only parsing and identity are fuzzed.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hpki_gateway::pki::{
    classify, default_person_policies, login_problems, parse_certificates, read_identity,
    subject_text, verify_path, CertificatePool, KeyPurpose, ParsedCertificate, PathOptions,
    UnixTime,
};
use libfuzzer_sys::fuzz_target;

/// 2026-01-01T00:00:00Z, inside the validity of the real CAs.
const VALIDATION_TIME: UnixTime = UnixTime(1_767_225_600);

struct Store {
    anchors: CertificatePool,
    intermediates: CertificatePool,
    /// A real leaf (MEDIS signing card) for the fuzzed-anchor check.
    doctor: Option<Arc<ParsedCertificate>>,
}

static STORE: OnceLock<Option<Store>> = OnceLock::new();

fn load(path: PathBuf) -> Option<Arc<ParsedCertificate>> {
    let der = std::fs::read(&path).ok()?;
    match ParsedCertificate::from_der(&der) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            eprintln!("fuzz store: {} does not parse: {e}", path.display());
            None
        }
    }
}

fn store() -> Option<&'static Store> {
    STORE
        .get_or_init(|| {
            let shared = std::env::var_os("HPKI_SHARED_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
            let hpki = shared.join("hpki");
            let ca = hpki.join("ca");
            let root = load(ca.join("mhlw-hpki-root-ca-v2.der"));
            let auth = load(ca.join("medis-auth-ca2-individual.der"));
            let sign = load(ca.join("medis-sign-ca2.der"));
            match (root, auth, sign) {
                (Some(root), Some(auth), Some(sign)) => Some(Store {
                    anchors: CertificatePool::from_certs([root]),
                    intermediates: CertificatePool::from_certs([auth, sign]),
                    doctor: load(hpki.join("test-certs/medis-doctor-sanjushi.der")),
                }),
                _ => {
                    eprintln!(
                        "fuzz store: real HPKI CAs not found under {}; verify_path is skipped \
                         (set HPKI_SHARED_DIR to the directory holding hpki/)",
                        ca.display()
                    );
                    None
                }
            }
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Ok(certs) = parse_certificates(data) else {
        return;
    };
    let certs: Vec<Arc<ParsedCertificate>> = certs.into_iter().map(Arc::new).collect();
    let store = store();
    for (i, leaf) in certs.iter().enumerate() {
        if let Ok(identity) = read_identity(leaf) {
            let _ = classify(leaf, &identity, &default_person_policies(), &[]);
        }
        let _ = login_problems(leaf);
        let _ = subject_text(leaf);

        let Some(store) = store else { continue };
        let presented: Vec<Arc<ParsedCertificate>> = certs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| c.clone())
            .collect();
        for purpose in [KeyPurpose::ClientAuth, KeyPurpose::Any] {
            let opts = PathOptions::new(VALIDATION_TIME, purpose);
            if let Ok(path) = verify_path(
                leaf,
                &presented,
                &store.anchors,
                &store.intermediates,
                &opts,
            ) {
                assert!(path.leaf().same_as(leaf));
            }
        }
        // The fuzzed certificate as the trust anchor of a real chain: the only position
        // where mutated bytes get past the signature checks into the rest of validation.
        if let Some(doctor) = &store.doctor {
            let anchor = CertificatePool::from_certs([leaf.clone()]);
            let opts = PathOptions::new(VALIDATION_TIME, KeyPurpose::Any);
            let _ = verify_path(doctor, &presented, &anchor, &store.intermediates, &opts);
        }
    }
});
