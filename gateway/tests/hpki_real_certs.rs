//! The real HPKI CA certificates and test-card certificates from `../shared/hpki/`,
//! through the library and through the `hpki-gateway cert` CLI (the real binary).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hpki_gateway::pki::{
    login_problems, read_identity, verify_for_login, verify_for_signing, verify_path,
    CertificatePool, KeyPurpose, ParsedCertificate, PathOptions, PolicyPrefix, Reason, UnixTime,
};
use serde_json::Value;

fn hpki() -> PathBuf {
    common::shared_dir().join("hpki")
}

fn cert(rel: &str) -> Arc<ParsedCertificate> {
    let bytes = std::fs::read(hpki().join(rel)).unwrap();
    Arc::new(ParsedCertificate::from_der(&bytes).unwrap())
}

/// A trust directory in the gateway's layout: MHLW root as anchor, MEDIS CAs as
/// intermediates.
fn trust_dir() -> tempdir::TempDir {
    let dir = tempdir::TempDir::new();
    std::fs::create_dir_all(dir.path().join("anchors")).unwrap();
    std::fs::create_dir_all(dir.path().join("intermediates")).unwrap();
    std::fs::copy(
        hpki().join("ca/mhlw-hpki-root-ca-v2.der"),
        dir.path().join("anchors/mhlw-hpki-root-ca-v2.der"),
    )
    .unwrap();
    for f in ["medis-auth-ca2-individual.der", "medis-sign-ca2.der"] {
        std::fs::copy(
            hpki().join("ca").join(f),
            dir.path().join("intermediates").join(f),
        )
        .unwrap();
    }
    dir
}

/// Minimal self-cleaning temp dir (no extra dependency for one helper).
mod tempdir {
    pub struct TempDir(std::path::PathBuf);
    impl TempDir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "hpki-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn at(s: &str) -> UnixTime {
    UnixTime::parse_rfc3339(s).unwrap()
}

fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(args)
        .output()
        .expect("run hpki-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn real_ca_certificates_parse_with_critical_policies() {
    let root = cert("ca/mhlw-hpki-root-ca-v2.der");
    let auth = cert("ca/medis-auth-ca2-individual.der");
    let sign = cert("ca/medis-sign-ca2.der");
    assert!(root.is_ca() && auth.is_ca() && sign.is_ca());
    assert!(root.is_self_issued());
    assert_eq!(
        auth.policies()
            .unwrap()
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>(),
        ["1.2.392.100495.1.5.1.2.3.1"]
    );
    assert_eq!(
        sign.policies()
            .unwrap()
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>(),
        ["1.2.392.100495.1.5.1.1.3.1"]
    );
    // The fingerprints given in shared/hpki/README.md.
    let hex = |c: &ParsedCertificate| hpki_gateway::pki::name::hex(c.sha256());
    assert!(hex(&root).starts_with("6ed2796b1b101736") && hex(&root).ends_with("1b674c"));
    assert!(hex(&auth).starts_with("476b64dd") && hex(&auth).ends_with("4bc3"));
    assert!(hex(&sign).starts_with("5f497e73") && hex(&sign).ends_with("e033"));
}

#[test]
fn medis_test_cards_read_roles_and_kanji_names_exactly() {
    let doctor = read_identity(&cert("test-certs/medis-doctor-sanjushi.der")).unwrap();
    assert_eq!(doctor.roles, ["Medical Doctor"]);
    assert_eq!(doctor.name.as_deref(), Some("Sanjushi Kagurazaka"));
    assert_eq!(doctor.name_kanji.as_deref(), Some("神楽坂\u{3000}三十四"));
    assert_eq!(doctor.org.as_deref(), Some("MEDIS UNIVERSITY HOSPITAL"));
    assert_eq!(doctor.org_kanji.as_deref(), Some("医療情報大学病院"));
    assert_eq!(doctor.hpki_id.as_deref(), Some("Test117120"));

    let pharmacist = read_identity(&cert("test-certs/medis-pharmacist-shiju.der")).unwrap();
    assert_eq!(pharmacist.roles, ["Pharmacist"]);
    assert_eq!(pharmacist.hpki_id.as_deref(), Some("Test317044"));

    let jma = read_identity(&cert("test-certs/jma-doctor-expired-2023.der")).unwrap();
    assert_eq!(jma.hpki_id.as_deref(), Some("TESTC20766"));
    assert_eq!(jma.org, None, "JMA certificates carry no O");
}

#[test]
fn medis_cards_validate_to_the_mhlw_root_but_are_not_for_login() {
    let anchors = CertificatePool::from_certs([cert("ca/mhlw-hpki-root-ca-v2.der")]);
    let intermediates = CertificatePool::from_certs([
        cert("ca/medis-auth-ca2-individual.der"),
        cert("ca/medis-sign-ca2.der"),
    ]);
    let opts = PathOptions::new(at("2026-01-01T00:00:00Z"), KeyPurpose::Any);
    for f in ["medis-doctor-sanjushi.der", "medis-pharmacist-shiju.der"] {
        let leaf = cert(&format!("test-certs/{f}"));
        let path = verify_path(&leaf, &[], &anchors, &intermediates, &opts)
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(path.chain.len(), 3);
        assert!(path.anchor().same_as(&cert("ca/mhlw-hpki-root-ca-v2.der")));
        assert_eq!(login_problems(&leaf), [Reason::SigningCertNotForLogin]);
        // For signing use, under the signing arc, it validates; as a login it does not.
        let mut signing = opts.clone();
        signing.required_policies = vec![PolicyPrefix::parse("1.2.392.100495.1.5.1.1").unwrap()];
        let path = verify_for_signing(&leaf, &[], &anchors, &intermediates, &signing)
            .unwrap_or_else(|e| panic!("{f} for signing: {e}"));
        assert!(path.chain[1].same_as(&cert("ca/medis-sign-ca2.der")));
        let err = verify_for_login(&leaf, &[], &anchors, &intermediates, &opts).unwrap_err();
        assert_eq!(err.reason, Reason::SigningCertNotForLogin, "{f}");
    }
    // The CAs themselves are no signing certificates.
    let err = verify_for_signing(
        &cert("ca/medis-sign-ca2.der"),
        &[],
        &anchors,
        &intermediates,
        &opts,
    )
    .unwrap_err();
    assert_eq!(err.reason, Reason::KeyUsageNotForSigning);
    // The login purpose refuses nothing here by EKU (none present): the signing-card
    // refusal comes from keyUsage, which is what login_problems reports.
    let expired = cert("test-certs/medis-doctor-expired-2022.der");
    let err = verify_path(&expired, &[], &anchors, &intermediates, &opts).unwrap_err();
    assert_eq!(err.reason, Reason::CertExpired);
    assert_eq!(err.depth, Some(0));
    // Before its notAfter it validates: the failure above is time, not the chain.
    let then = PathOptions::new(at("2020-01-01T00:00:00Z"), KeyPurpose::Any);
    verify_path(&expired, &[], &anchors, &intermediates, &then).unwrap();
    // The JMA CA is not in this store.
    let jma = cert("test-certs/jma-doctor-expired-2023.der");
    let err = verify_path(&jma, &[], &anchors, &intermediates, &opts).unwrap_err();
    assert_eq!(err.reason, Reason::UntrustedIssuer);
    // Signing certificates are under the signing arc, not the authentication arc.
    let mut auth_only = opts.clone();
    auth_only.required_policies = vec![PolicyPrefix::parse("1.2.392.100495.1.5.1.2").unwrap()];
    let err = verify_path(
        &cert("test-certs/medis-doctor-sanjushi.der"),
        &[],
        &anchors,
        &intermediates,
        &auth_only,
    )
    .unwrap_err();
    assert_eq!(err.reason, Reason::PolicyNotAccepted);
}

#[test]
fn medis_ca_chain_does_not_validate_without_the_root() {
    let anchors = CertificatePool::from_certs([cert("ca/medis-sign-ca2.der")]);
    let empty = CertificatePool::new();
    let opts = PathOptions::new(at("2026-01-01T00:00:00Z"), KeyPurpose::Any);
    // With the sign CA itself as anchor the card validates; with the auth CA it does not.
    verify_path(
        &cert("test-certs/medis-doctor-sanjushi.der"),
        &[],
        &anchors,
        &empty,
        &opts,
    )
    .unwrap();
    let wrong = CertificatePool::from_certs([cert("ca/medis-auth-ca2-individual.der")]);
    let err = verify_path(
        &cert("test-certs/medis-doctor-sanjushi.der"),
        &[],
        &wrong,
        &empty,
        &opts,
    )
    .unwrap_err();
    assert_eq!(err.reason, Reason::UntrustedIssuer);
}

#[test]
fn cli_inspect_prints_the_contract_fields() {
    let file = hpki().join("test-certs/medis-doctor-sanjushi.der");
    let (code, out, err) = gateway(&["cert", "inspect", p(&file), "--at", "2026-01-01T00:00:00Z"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    for key in [
        "subject",
        "issuer",
        "serial",
        "sha256",
        "not_before",
        "not_after",
        "kind",
        "role",
        "name",
        "name_kanji",
        "org",
        "org_kanji",
        "hpki_id",
        "policies",
        "key_usage",
        "usable_for_login",
        "reasons",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(v["role"], "Medical Doctor");
    assert_eq!(v["kind"], "person");
    assert_eq!(v["name_kanji"], "神楽坂\u{3000}三十四");
    assert_eq!(v["hpki_id"], "Test117120");
    assert_eq!(v["serial"], "015e");
    assert_eq!(v["not_after"], "2027-02-07T14:59:59Z");
    assert_eq!(v["key_usage"], serde_json::json!(["nonRepudiation"]));
    assert_eq!(
        v["policies"],
        serde_json::json!(["1.2.392.100495.1.5.1.1.0.1"])
    );
    assert_eq!(v["usable_for_login"], false);
    assert_eq!(
        v["reasons"],
        serde_json::json!(["signing_cert_not_for_login"])
    );

    // After expiry the reasons grow; PEM input works the same as DER.
    let pem = common::shared_dir().join("hpki/test-certs/medis-doctor-expired-2022.der");
    let (code, out, _) = gateway(&["cert", "inspect", p(&pem)]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["reasons"],
        serde_json::json!(["cert_expired", "signing_cert_not_for_login"])
    );
}

#[test]
fn cli_verify_validates_medis_cards_to_the_mhlw_root() {
    let trust = trust_dir();
    let card = hpki().join("test-certs/medis-doctor-sanjushi.der");
    let (code, out, err) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(trust.path()),
        "--at",
        "2026-01-01T00:00:00Z",
        p(&card),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("valid"), "{out}");
    assert!(out.contains("MHLW HPKI Root CA V2"), "{out}");
    assert!(
        out.contains("usable for login: no (signing_cert_not_for_login)"),
        "{out}"
    );

    // --login turns the signing card into a refusal with the stable code.
    let (code, out, _) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(trust.path()),
        "--at",
        "2026-01-01T00:00:00Z",
        "--login",
        "--json",
        p(&card),
    ]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reason"], "signing_cert_not_for_login");

    let expired = hpki().join("test-certs/medis-doctor-expired-2022.der");
    let (code, out, _) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(trust.path()),
        "--json",
        p(&expired),
    ]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reason"], "cert_expired");

    // The CA certificates themselves validate to the root.
    for f in ["medis-auth-ca2-individual.der", "medis-sign-ca2.der"] {
        let (code, out, _) = gateway(&[
            "cert",
            "verify",
            "--trust",
            p(trust.path()),
            "--at",
            "2026-01-01T00:00:00Z",
            p(&hpki().join("ca").join(f)),
        ]);
        assert_eq!(code, 0, "{f}: {out}");
    }
}

#[test]
fn cli_bad_input_exits_2_with_a_clear_message() {
    let tmp = tempdir::TempDir::new();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "hello, this is not a certificate\n").unwrap();
    let (code, _, err) = gateway(&["cert", "inspect", p(&junk)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("junk.pem") && err.contains("expected a PEM or DER"),
        "{err}"
    );

    let real = std::fs::read(hpki().join("test-certs/medis-doctor-sanjushi.der")).unwrap();
    let truncated = tmp.path().join("truncated.der");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let (code, _, err) = gateway(&["cert", "inspect", p(&truncated)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("malformed certificate"), "{err}");

    let (code, _, err) = gateway(&["cert", "inspect", p(&tmp.path().join("missing.pem"))]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");

    // A trust directory with junk in anchors/: refused, naming the file.
    let trust = trust_dir();
    std::fs::write(
        trust.path().join("anchors/broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let card = hpki().join("test-certs/medis-doctor-sanjushi.der");
    let (code, _, err) = gateway(&["cert", "verify", "--trust", p(trust.path()), p(&card)]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.pem"), "{err}");

    // No anchors/ at all.
    let empty = tempdir::TempDir::new();
    let (code, _, err) = gateway(&["cert", "verify", "--trust", p(empty.path()), p(&card)]);
    assert_eq!(code, 2);
    assert!(err.contains("anchors") && err.contains("missing"), "{err}");

    let (code, _, err) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(trust.path()),
        "--at",
        "tomorrow",
        p(&card),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn shipped_trust_profiles_load_and_validate_the_real_cards() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sign =
        hpki_gateway::trust::TrustDirectory::load(&repo.join("certs/hpki/hpki-sign")).unwrap();
    let auth =
        hpki_gateway::trust::TrustDirectory::load(&repo.join("certs/hpki/hpki-auth")).unwrap();
    let opts = PathOptions::new(at("2026-01-01T00:00:00Z"), KeyPurpose::Any);
    let card = cert("test-certs/medis-doctor-sanjushi.der");
    verify_path(&card, &[], &sign.anchors, &sign.intermediates, &opts).unwrap();
    // The authentication profile does not hold the signing CA: a signing card has no path.
    let err = verify_path(&card, &[], &auth.anchors, &auth.intermediates, &opts).unwrap_err();
    assert_eq!(err.reason, Reason::UntrustedIssuer);

    // As a `kind = "signing"` profile of a trust store, hpki-sign validates the card for
    // signing and is never used for login (nor hinted in the TLS CertificateRequest).
    use hpki_gateway::config::TrustKind;
    use hpki_gateway::trust::{TrustProfile, TrustStore};
    let profile = |name: &str, kind, directory| TrustProfile {
        name: name.into(),
        kind,
        required_policies: Vec::new(),
        max_intermediates: 6,
        revocation: Default::default(),
        directory,
    };
    let signing_only = TrustStore {
        profiles: vec![profile("hpki-sign", TrustKind::Signing, sign.clone())],
    };
    let now = at("2026-01-01T00:00:00Z");
    let path = signing_only
        .signing_profile("hpki-sign")
        .expect("a signing profile")
        .validate_signing(&card, &[], now)
        .unwrap();
    assert_eq!(path.chain.len(), 3);
    assert!(signing_only.signing_profile("hpki-auth").is_none());
    assert!(signing_only.hint_subjects().is_empty());
    let err = signing_only.authenticate(&card, &[], now).unwrap_err();
    assert_eq!(err.reason, Reason::UntrustedIssuer);
    assert!(
        err.detail.contains("no login trust profile"),
        "{}",
        err.detail
    );
    // The same directory as a person profile would take the card as far as the path
    // goes, and refuse it as a signing card: the kind is what keeps it out of logins.
    let as_login = TrustStore {
        profiles: vec![profile("hpki-sign", TrustKind::Person, sign)],
    };
    let err = as_login.authenticate(&card, &[], now).unwrap_err();
    assert_eq!(err.reason, Reason::SigningCertNotForLogin);
}
