//! The generated PKI judged by an independent verifier: the openssl CLI. OpenSSL knows
//! certificatePolicies (so the critical flag does not stop it) and does no policy
//! matching by default, so it accepts `wrong-policy` and `signing-card` chains: those are
//! for the gateway's own rules, checked elsewhere.

mod common;

use common::{certs_dir, generated, openssl, OpensslOutput};

fn verify(args: &[&str]) -> OpensslOutput {
    let mut full = vec!["verify"];
    full.extend_from_slice(args);
    openssl(&full, &certs_dir())
}

fn assert_verified(out: &OpensslOutput, leaf: &str) {
    assert!(
        out.success && out.text.contains(&format!("{leaf}.pem: OK")),
        "{leaf} should verify:\n{}",
        out.text
    );
}

fn assert_rejected(out: &OpensslOutput, leaf: &str, reason: &str) {
    assert!(!out.success, "{leaf} must not verify:\n{}", out.text);
    assert!(
        out.text.contains(reason),
        "{leaf}: expected {reason:?} in:\n{}",
        out.text
    );
}

#[test]
fn doctor_verifies_to_root_through_auth_ca() {
    let out = verify(&[
        "-CAfile",
        "root.pem",
        "-untrusted",
        "auth-ca.pem",
        "doctor.pem",
    ]);
    assert_verified(&out, "doctor");
}

#[test]
fn auth_leaves_are_strict_rfc5280_client_certificates() {
    for leaf in ["doctor", "pharmacist", "dentist", "clerk", "wrong-policy"] {
        let out = verify(&[
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "auth-ca.pem",
            &format!("{leaf}.pem"),
        ]);
        assert_verified(&out, leaf);
    }
}

#[test]
fn organization_certificate_is_a_strict_client_certificate() {
    let out = verify(&[
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "org-ca.pem",
        "org-clinic.pem",
    ]);
    assert_verified(&out, "org-clinic");
}

#[test]
fn expired_and_not_yet_valid_fail_on_time() {
    let chain = ["-CAfile", "root.pem", "-untrusted", "auth-ca.pem"];
    let expired = verify(&[&chain[..], &["expired.pem"]].concat());
    assert_rejected(&expired, "expired", "certificate has expired");
    let early = verify(&[&chain[..], &["not-yet-valid.pem"]].concat());
    assert_rejected(&early, "not-yet-valid", "certificate is not yet valid");
}

#[test]
fn unknown_critical_extension_is_refused_by_openssl_too() {
    let out = verify(&[
        "-CAfile",
        "root.pem",
        "-untrusted",
        "auth-ca.pem",
        "unknown-critical.pem",
    ]);
    assert_rejected(&out, "unknown-critical", "unhandled critical extension");
}

#[test]
fn untrusted_doctor_fails_against_root_but_is_internally_consistent() {
    let out = verify(&["-CAfile", "root.pem", "untrusted-doctor.pem"]);
    assert_rejected(
        &out,
        "untrusted-doctor",
        "unable to get local issuer certificate",
    );
    // Proves the failure above is about trust, not a broken certificate.
    let own = verify(&["-CAfile", "untrusted-root.pem", "untrusted-doctor.pem"]);
    assert_verified(&own, "untrusted-doctor");
}

#[test]
fn signing_card_chains_but_is_no_tls_client_certificate() {
    let chain = ["-CAfile", "root.pem", "-untrusted", "sign-ca.pem"];
    let plain = verify(&[&chain[..], &["-x509_strict", "signing-card.pem"]].concat());
    assert_verified(&plain, "signing-card");
    let as_client = verify(&[&chain[..], &["-purpose", "sslclient", "signing-card.pem"]].concat());
    assert_rejected(&as_client, "signing-card", "unsuitable certificate purpose");
}

#[test]
fn doctor_g2_verifies_via_cross_certificate_and_directly() {
    let (dir, _, _) = generated();
    let bundle = dir.join("g2-client-chain.pem");
    let read = |name: &str| std::fs::read_to_string(certs_dir().join(name)).unwrap();
    std::fs::write(&bundle, read("root-g2-cross.pem") + &read("auth-ca-g2.pem")).unwrap();
    let bundle = bundle.to_str().unwrap();

    let via_cross = verify(&[
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-show_chain",
        "-CAfile",
        "root.pem",
        "-untrusted",
        bundle,
        "doctor-g2.pem",
    ]);
    assert_verified(&via_cross, "doctor-g2");
    assert!(
        via_cross
            .text
            .contains("CN = Test HPKI Root CA G2 (untrusted)"),
        "the path must run through the cross certificate:\n{}",
        via_cross.text
    );

    let direct = verify(&[
        "-x509_strict",
        "-CAfile",
        "root-g2.pem",
        "-untrusted",
        "auth-ca-g2.pem",
        "doctor-g2.pem",
    ]);
    assert_verified(&direct, "doctor-g2");

    // Without the cross certificate root alone cannot reach doctor-g2.
    let no_cross = verify(&[
        "-CAfile",
        "root.pem",
        "-untrusted",
        "auth-ca-g2.pem",
        "doctor-g2.pem",
    ]);
    assert_rejected(
        &no_cross,
        "doctor-g2",
        "unable to get local issuer certificate",
    );
}

#[test]
fn trust_store_files_are_the_same_certificates() {
    let (dir, _, _) = generated();
    let out = openssl(
        &[
            "verify",
            "-CAfile",
            "trust/hpki-auth/anchors/root.pem",
            "-untrusted",
            "trust/hpki-auth/intermediates/auth-ca.pem",
            "certs/doctor.pem",
        ],
        dir,
    );
    assert_verified(&out, "certs/doctor");
}

#[test]
fn certificate_policies_are_critical_on_cas_and_leaves_but_absent_on_roots() {
    for name in [
        "auth-ca",
        "sign-ca",
        "org-ca",
        "auth-ca-g2",
        "doctor",
        "signing-card",
        "org-clinic",
    ] {
        let out = openssl(
            &[
                "x509",
                "-noout",
                "-in",
                &format!("{name}.pem"),
                "-ext",
                "certificatePolicies",
            ],
            &certs_dir(),
        );
        assert!(
            out.success && out.text.contains("X509v3 Certificate Policies: critical"),
            "{name}:\n{}",
            out.text
        );
    }
    for root in ["root", "root-g2", "root-g2-cross"] {
        let out = openssl(
            &[
                "x509",
                "-noout",
                "-in",
                &format!("{root}.pem"),
                "-ext",
                "certificatePolicies",
            ],
            &certs_dir(),
        );
        assert!(
            !out.text.contains("Certificate Policies"),
            "{root} should carry no policies like the MHLW root:\n{}",
            out.text
        );
    }
}

/// openssl prints a subjectAltName directoryName with `\xNN` escapes whatever `-nameopt`
/// says (that option only governs subject and issuer), so the escapes are undone here.
fn unescape_openssl(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 3 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 2..i + 4], 16) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("openssl escapes whole UTF-8 sequences")
}

#[test]
fn text_shows_romaji_subject_and_kanji_name_with_full_width_space() {
    let out = openssl(
        &[
            "x509",
            "-noout",
            "-text",
            "-nameopt",
            "utf8",
            "-in",
            "doctor.pem",
        ],
        &certs_dir(),
    );
    assert!(out.success, "{}", out.text);
    assert!(
        out.text.contains(
            "Subject: C=JP, O=MEDIS UNIVERSITY HOSPITAL, CN=Ichiro Kagurazaka, serialNumber=Test000001"
        ),
        "{}",
        out.text
    );
    let text = unescape_openssl(&out.text);
    assert!(
        text.contains(
            "DirName:/C=JP/O=医療情報大学病院/CN=神楽坂\u{3000}一郎/serialNumber=Test000001"
        ),
        "{text}"
    );
    assert!(text.contains("Medical Doctor"), "{text}");
}

#[test]
fn subject_string_types_match_real_cards() {
    let out = openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "sep_comma_plus,show_type",
            "-in",
            "doctor.pem",
        ],
        &certs_dir(),
    );
    assert!(
        out.text.contains("C=PRINTABLESTRING:JP")
            && out.text.contains("O=UTF8STRING:MEDIS UNIVERSITY HOSPITAL")
            && out.text.contains("CN=UTF8STRING:Ichiro Kagurazaka")
            && out.text.contains("serialNumber=PRINTABLESTRING:Test000001"),
        "{}",
        out.text
    );
}

#[test]
fn private_keys_are_pkcs8_rsa_2048_matching_their_certificates() {
    let (_, pki, _) = generated();
    for cert in &pki.certs {
        let dir = certs_dir();
        let key_file = format!("{}.key", cert.name);
        let key_text = std::fs::read_to_string(dir.join(&key_file)).unwrap();
        assert!(
            key_text.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{key_file}"
        );
        let from_key = openssl(&["pkey", "-in", &key_file, "-pubout"], &dir);
        let from_cert = openssl(
            &[
                "x509",
                "-in",
                &format!("{}.pem", cert.name),
                "-noout",
                "-pubkey",
            ],
            &dir,
        );
        assert!(from_key.success && from_cert.success);
        assert_eq!(from_key.text, from_cert.text, "{}", cert.name);
        let text = openssl(
            &[
                "x509",
                "-in",
                &format!("{}.pem", cert.name),
                "-noout",
                "-text",
            ],
            &dir,
        );
        assert!(
            text.text.contains("Public-Key: (2048 bit)"),
            "{}",
            cert.name
        );
        assert!(
            text.text
                .contains("Signature Algorithm: sha256WithRSAEncryption"),
            "{}",
            cert.name
        );
    }
}

#[test]
fn manifest_validity_matches_what_openssl_reads() {
    let (_, _, manifest) = generated();
    for leaf in &manifest.leaves {
        let out = openssl(
            &[
                "x509",
                "-noout",
                "-startdate",
                "-enddate",
                "-dateopt",
                "iso_8601",
                "-in",
                &format!("{}.pem", leaf.name),
            ],
            &certs_dir(),
        );
        // iso_8601 prints "2026-11-21 12:24:25Z".
        let as_openssl = |rfc3339: &str| rfc3339.replace('T', " ");
        assert!(
            out.text
                .contains(&format!("notBefore={}", as_openssl(&leaf.not_before)))
                && out
                    .text
                    .contains(&format!("notAfter={}", as_openssl(&leaf.not_after))),
            "{}: manifest {} .. {} vs\n{}",
            leaf.name,
            leaf.not_before,
            leaf.not_after,
            out.text
        );
    }
}
