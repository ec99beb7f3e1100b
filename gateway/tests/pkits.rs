//! NIST PKITS 1.0.1 (`../shared/pkits/`) through `pki`: every case the validator can
//! decide must give the manifest's expected result, with the manifest's policy settings.
//! Cases that need revocation checking or an algorithm we refuse are listed with the
//! reason. Prints `N passed, N failed`.

mod common;

use std::sync::Arc;

use const_oid::ObjectIdentifier;
use hpki_gateway::pki::{
    verify_path, CertificatePool, KeyPurpose, ParsedCertificate, PathOptions, PolicySettings,
    UnixTime,
};
use serde_json::Value;

/// Why a case is not decided by path validation alone (stable text for the docs).
fn skip_reason(case: &Value) -> Option<&'static str> {
    let id = case["id"].as_str().unwrap_or_default();
    match case["section"].as_str().unwrap_or_default() {
        "4.4" | "4.14" | "4.15" => {
            return Some("CRL processing (basic, distribution points, delta CRLs) is issue 4")
        }
        _ => {}
    }
    match id {
        "4.2.3" => Some("der 0.7 (under x509-cert) cannot represent a UTCTime before 1970; this notBefore is 1950, so the certificate is refused as malformed"),
        "4.1.4" | "4.1.5" => Some("DSA signatures are refused (CRYPTREC: RSA >= 2048, ECDSA, EdDSA only)"),
        // The expected rejection is a revoked certificate or a CRL that cannot be verified.
        "4.5.2" | "4.5.5" | "4.5.7" | "4.7.4" | "4.7.5" => {
            Some("the expected failure is a revocation (CRL) outcome; CRL processing is issue 4")
        }
        _ => None,
    }
}

fn load(dir: &std::path::Path, file: &str) -> Result<Arc<ParsedCertificate>, String> {
    let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    ParsedCertificate::from_der(&bytes)
        .map(Arc::new)
        .map_err(|e| format!("{file}: {e}"))
}

fn oids(v: &Value) -> Vec<ObjectIdentifier> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().and_then(|s| ObjectIdentifier::new(s).ok()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pkits_cases_give_expected_results() {
    let root = common::shared_dir().join("pkits");
    let certs_dir = root.join("certs");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("manifest.json")).expect("PKITS manifest"),
    )
    .expect("PKITS manifest JSON");
    let cases = manifest.as_array().expect("a list of cases");
    let (mut passed, mut failures, mut skipped) = (0, Vec::new(), Vec::new());
    for case in cases {
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        if let Some(reason) = skip_reason(case) {
            skipped.push((id, reason));
            continue;
        }
        let anchors =
            CertificatePool::from_certs([load(&certs_dir, case["trust_anchor"].as_str().unwrap())
                .expect("PKITS trust anchor parses")]);
        // A certificate that does not parse makes the path invalid.
        let leaf = load(&certs_dir, case["end_entity"].as_str().unwrap());
        let mut presented = Vec::new();
        let mut unparsable = leaf.as_ref().err().cloned();
        for key in ["intermediates", "extra_certs"] {
            for f in case[key].as_array().into_iter().flatten() {
                match load(&certs_dir, f.as_str().unwrap()) {
                    Ok(c) => presented.push(c),
                    Err(e) => unparsable = Some(e),
                }
            }
        }
        let s = &case["settings"];
        let mut opts = PathOptions::new(
            UnixTime(case["time"].as_u64().expect("time")),
            KeyPurpose::Any,
        );
        opts.policy_settings = PolicySettings {
            initial_policy_set: oids(&s["initial_policy_set"]),
            initial_explicit_policy: s["initial_explicit_policy"].as_bool().unwrap_or(false),
            initial_policy_mapping_inhibit: s["initial_policy_mapping_inhibit"]
                .as_bool()
                .unwrap_or(false),
            initial_inhibit_any_policy: s["initial_inhibit_any_policy"].as_bool().unwrap_or(false),
        };
        let result = match (&leaf, unparsable) {
            (Ok(leaf), None) => {
                verify_path(leaf, &presented, &anchors, &CertificatePool::new(), &opts)
                    .map_err(|e| format!("{}: {}", e.reason, e.detail))
            }
            (_, Some(e)) => Err(format!("malformed_certificate: {e}")),
            (Err(e), None) => Err(format!("malformed_certificate: {e}")),
        };
        let expect_valid = case["expected"] == "valid";
        let ok = match &result {
            Ok(path) if expect_valid => {
                let mut want = oids(&case["expected_user_constrained_policy_set"]);
                let mut got = path.user_constrained_policies.clone();
                want.sort();
                got.sort();
                want == got || {
                    failures.push(format!(
                        "  {id} {}: user-constrained policies {got:?}, expected {want:?}",
                        case["name"].as_str().unwrap_or("")
                    ));
                    false
                }
            }
            Ok(_) => {
                failures.push(format!(
                    "  {id} {}: expected invalid, got valid",
                    case["name"].as_str().unwrap_or("")
                ));
                false
            }
            Err(e) if expect_valid => {
                failures.push(format!(
                    "  {id} {}: expected valid, got {e}",
                    case["name"].as_str().unwrap_or(""),
                ));
                false
            }
            Err(_) => true,
        };
        if ok {
            passed += 1;
        }
    }
    println!("PKITS skipped cases:");
    for (id, reason) in &skipped {
        println!("  {id}: {reason}");
    }
    if !failures.is_empty() {
        println!("PKITS unexpected results:\n{}", failures.join("\n"));
    }
    println!(
        "pkits: {passed} passed, {} failed, {} skipped",
        failures.len(),
        skipped.len()
    );
    assert!(passed >= 150, "too few PKITS cases ran ({passed})");
    assert!(
        failures.is_empty(),
        "PKITS cases with unexpected results:\n{}",
        failures.join("\n")
    );
}
