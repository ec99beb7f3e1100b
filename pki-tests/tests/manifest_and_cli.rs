//! manifest.json is complete and consistent with the files, its expectations are the
//! ones reasoned out from the HPKI rules, and the CLI behaves.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::generated;
use pki_tests::manifest::MANIFEST_FILE;
use pki_tests::profile::reason;
use pki_tests::{Manifest, SubjectKind};

const ALL_LEAVES: [&str; 12] = [
    "doctor",
    "pharmacist",
    "dentist",
    "clerk",
    "expired",
    "not-yet-valid",
    "unknown-critical",
    "wrong-policy",
    "signing-card",
    "org-clinic",
    "doctor-g2",
    "untrusted-doctor",
];

const ALL_CAS: [&str; 8] = [
    "root",
    "auth-ca",
    "sign-ca",
    "org-ca",
    "root-g2",
    "root-g2-cross",
    "auth-ca-g2",
    "untrusted-root",
];

#[test]
fn manifest_on_disk_equals_the_returned_one_and_lists_everything() {
    let (dir, _, returned) = generated();
    let loaded = Manifest::load(&dir.join(MANIFEST_FILE)).unwrap();
    assert_eq!(&loaded, returned);

    let leaves: BTreeSet<&str> = loaded.leaves.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(leaves, ALL_LEAVES.into_iter().collect());
    let cas: BTreeSet<&str> = loaded.cas.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cas, ALL_CAS.into_iter().collect());
}

#[test]
fn every_file_the_manifest_names_exists() {
    let (dir, _, manifest) = generated();
    let must_exist = |relative: &str| {
        assert!(dir.join(relative).is_file(), "missing {relative}");
    };
    for leaf in &manifest.leaves {
        must_exist(&leaf.cert);
        must_exist(&leaf.key);
        leaf.chain.iter().for_each(|c| must_exist(c));
    }
    for ca in &manifest.cas {
        must_exist(&ca.cert);
        must_exist(&ca.key);
    }
    for store in manifest.trust_stores.values() {
        store.anchors.iter().for_each(|a| must_exist(a));
        store.intermediates.iter().for_each(|i| must_exist(i));
        let crls = dir.join(&store.crls);
        assert!(crls.is_dir(), "{}", store.crls);
        // One initial CRL per CA of the store, each verifying (by openssl) with its CA.
        let mut names: Vec<String> = std::fs::read_dir(&crls)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want: Vec<String> = store
            .anchors
            .iter()
            .chain(&store.intermediates)
            .map(|p| {
                let stem = std::path::Path::new(p)
                    .file_stem()
                    .unwrap()
                    .to_string_lossy();
                format!("{stem}.crl")
            })
            .collect();
        want.sort();
        assert_eq!(names, want, "{}", store.crls);
        for name in &names {
            let ca = dir.join("certs").join(name.replace(".crl", ".pem"));
            let out = common::openssl(
                &[
                    "crl",
                    "-inform",
                    "DER",
                    "-noout",
                    "-in",
                    crls.join(name).to_str().unwrap(),
                    "-CAfile",
                    ca.to_str().unwrap(),
                ],
                dir,
            );
            assert!(
                out.success && out.text.contains("verify OK"),
                "{name}: {}",
                out.text
            );
        }
    }
    for profile in manifest.profiles.values() {
        assert!(
            dir.join(&profile.trust_store).is_dir(),
            "{}",
            profile.trust_store
        );
    }
}

#[test]
fn trust_store_layout_is_the_gateways() {
    let (dir, _, _) = generated();
    let listing = |relative: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir.join(relative))
            .unwrap_or_else(|e| panic!("{relative}: {e}"))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(listing("trust/hpki-auth/anchors"), set(&["root.pem"]));
    assert_eq!(
        listing("trust/hpki-auth/intermediates"),
        set(&["auth-ca.pem", "sign-ca.pem"])
    );
    assert_eq!(listing("trust/hpki-org/anchors"), set(&["root.pem"]));
    assert_eq!(
        listing("trust/hpki-org/intermediates"),
        set(&["org-ca.pem"])
    );
    assert_eq!(listing("trust/hpki-g2/anchors"), set(&["root-g2.pem"]));
    assert_eq!(listing("trust/hpki-sign/anchors"), set(&["root.pem"]));
    assert_eq!(
        listing("trust/hpki-sign/intermediates"),
        set(&["sign-ca.pem"])
    );
    // Anchors are byte-identical copies of the generated certificates.
    assert_eq!(
        std::fs::read(dir.join("trust/hpki-auth/anchors/root.pem")).unwrap(),
        std::fs::read(dir.join("certs/root.pem")).unwrap()
    );
}

#[test]
fn expectations_are_the_reasoned_ones() {
    let (_, _, manifest) = generated();
    let expect = |leaf: &str, profile: &str| -> String {
        manifest.leaf(leaf).unwrap().expect[profile].clone()
    };
    use reason::*;
    let table = [
        ("doctor", VALID, POLICY_NOT_ACCEPTED),
        ("pharmacist", VALID, POLICY_NOT_ACCEPTED),
        ("dentist", VALID, POLICY_NOT_ACCEPTED),
        ("clerk", VALID, POLICY_NOT_ACCEPTED),
        ("expired", CERT_EXPIRED, CERT_EXPIRED),
        ("not-yet-valid", CERT_NOT_YET_VALID, CERT_NOT_YET_VALID),
        (
            "unknown-critical",
            UNSUPPORTED_CRITICAL_EXTENSION,
            UNSUPPORTED_CRITICAL_EXTENSION,
        ),
        ("wrong-policy", POLICY_NOT_ACCEPTED, POLICY_NOT_ACCEPTED),
        (
            "signing-card",
            SIGNING_CERT_NOT_FOR_LOGIN,
            SIGNING_CERT_NOT_FOR_LOGIN,
        ),
        ("org-clinic", POLICY_NOT_ACCEPTED, VALID),
        ("doctor-g2", VALID, POLICY_NOT_ACCEPTED),
        ("untrusted-doctor", UNTRUSTED_ISSUER, UNTRUSTED_ISSUER),
    ];
    assert_eq!(table.len(), manifest.leaves.len());
    for (leaf, auth, org) in table {
        assert_eq!(expect(leaf, "hpki-auth"), auth, "{leaf} under hpki-auth");
        assert_eq!(expect(leaf, "hpki-org"), org, "{leaf} under hpki-org");
        assert_eq!(manifest.leaf(leaf).unwrap().expect.len(), 2, "{leaf}");
    }
    assert_eq!(
        manifest.profiles.keys().collect::<Vec<_>>(),
        ["hpki-auth", "hpki-org"]
    );
}

#[test]
fn leaf_descriptions_match_the_certificates() {
    let (_, _, manifest) = generated();
    let doctor = manifest.leaf("doctor").unwrap();
    assert_eq!(doctor.kind, SubjectKind::Person);
    assert_eq!(doctor.roles, ["Medical Doctor"]);
    assert_eq!(doctor.hpki_id, "Test000001");
    assert_eq!(doctor.name_romaji, "Ichiro Kagurazaka");
    assert_eq!(doctor.name_kanji, "神楽坂\u{3000}一郎");
    assert_eq!(doctor.org.as_deref(), Some("MEDIS UNIVERSITY HOSPITAL"));
    assert_eq!(doctor.org_kanji.as_deref(), Some("医療情報大学病院"));
    assert_eq!(doctor.chain, ["certs/auth-ca.pem"]);
    assert_eq!(
        doctor.crl_distribution_point,
        "http://127.0.0.1:8880/auth-ca.crl"
    );
    assert_eq!(doctor.key_usage, ["digitalSignature", "keyEncipherment"]);
    assert_eq!(doctor.policies, ["1.2.392.100495.1.5.1.2.0.1"]);

    let signing = manifest.leaf("signing-card").unwrap();
    assert_eq!(signing.hpki_id, doctor.hpki_id, "the doctor's second card");
    assert_eq!(signing.key_usage, ["nonRepudiation"]);
    assert!(signing.extended_key_usage.is_empty());

    let clinic = manifest.leaf("org-clinic").unwrap();
    assert_eq!(clinic.kind, SubjectKind::Organization);
    assert!(clinic.roles.is_empty());
    assert!(manifest.leaf("clerk").unwrap().roles.is_empty());
    assert_eq!(
        manifest.leaf("doctor-g2").unwrap().chain,
        ["certs/auth-ca-g2.pem", "certs/root-g2-cross.pem"]
    );
    assert_eq!(
        manifest
            .leaf("unknown-critical")
            .unwrap()
            .unknown_critical_extensions,
        ["1.3.6.1.4.1.99999.1"]
    );
}

#[test]
fn validity_is_relative_to_now() {
    let (_, _, manifest) = generated();
    let now = manifest.now.as_str();
    for leaf in &manifest.leaves {
        // RFC 3339 UTC timestamps of equal shape compare correctly as strings.
        match leaf.name.as_str() {
            "expired" => assert!(leaf.not_after.as_str() < now),
            "not-yet-valid" => assert!(leaf.not_before.as_str() > now),
            _ => assert!(leaf.not_before.as_str() < now && now < leaf.not_after.as_str()),
        }
    }
    for ca in &manifest.cas {
        assert!(ca.not_before.as_str() < now && now < ca.not_after.as_str());
    }
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hpki-testpki"))
}

#[test]
fn cli_generate_honours_now_and_reports_progress() {
    let out_dir = tempfile::tempdir().unwrap();
    let output = cli()
        .args(["generate", "--now", "2030-04-01T09:00:00+09:00", "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ALL_CAS.iter().chain(ALL_LEAVES.iter()) {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "no progress line for {name}:\n{stdout}"
        );
    }
    let manifest = Manifest::load(&out_dir.path().join(MANIFEST_FILE)).unwrap();
    assert_eq!(manifest.now, "2030-04-01T00:00:00Z");
    let doctor = manifest.leaf("doctor").unwrap();
    assert_eq!(doctor.not_before, "2030-03-31T00:00:00Z");
    assert_eq!(
        manifest.ca("root").unwrap().not_before,
        "2029-04-01T00:00:00Z"
    );
}

#[test]
fn cli_reports_an_unusable_output_directory() {
    let scratch = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, even by root.
    let blocker = scratch.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let target = blocker.join("out");
    let output = cli()
        .args(["generate", "--out"])
        .arg(&target)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("hpki-testpki: error:") && stderr.contains(&*target.to_string_lossy()),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "fails before generating anything");
}

#[test]
fn library_write_error_names_the_path() {
    let (_, pki, _) = generated();
    let scratch = tempfile::tempdir().unwrap();
    let blocker = scratch.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let err = pki.write_to(&blocker.join("x")).unwrap_err().to_string();
    assert!(err.contains(&*blocker.to_string_lossy()), "{err}");
}

#[test]
fn cli_hc_role_prints_the_readme_hex() {
    let output = cli().args(["hc-role", "Medical Doctor"]).output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "303430320606288185420001312831263024A0223120A00C060A2A830886910F01060101A2100C0E4D65646963616C20446F63746F72"
    );
}

#[test]
fn cli_rejects_a_malformed_now() {
    let scratch = tempfile::tempdir().unwrap();
    let output = cli()
        .args(["generate", "--now", "yesterday", "--out"])
        .arg(scratch.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RFC 3339"));
    assert!(!Path::new(&scratch.path().join(MANIFEST_FILE)).exists());
}
