//! NIST PKITS 1.0.1 (`../shared/pkits/`) through `pki`: every case the validator can
//! decide must give the manifest's expected result, with the manifest's policy settings
//! and, as PKITS intends, with revocation checked from the case's CRLs
//! (`pki::revocation_check`, the checker the gateway and `cert verify --crl` use: every
//! certificate below the anchor needs a current CRL from its issuer that does not list
//! it). Cases that need a CRL feature the gateway refuses (indirect CRLs, reason-
//! partitioned CRLs, delta CRLs) or an algorithm we refuse are listed with the reason.
//! Prints `N passed, N failed, N skipped`.

mod common;

use std::sync::Arc;

use const_oid::ObjectIdentifier;
use hpki_gateway::pki::crl::UnverifiedCrl;
use hpki_gateway::pki::revocation_check::{check_path_crls, CheckDepth};
use hpki_gateway::pki::{
    verify_path, CertificatePool, KeyPurpose, ParsedCertificate, PathOptions, PolicySettings,
    UnixTime,
};
use serde_json::Value;

/// Why a case is not decided here (stable text for the docs). Where the gateway refuses
/// a CRL feature it fails closed, so an "invalid" case would still come out invalid, but
/// for the wrong reason: such cases are skipped rather than counted.
fn skip_reason(case: &Value) -> Option<&'static str> {
    let id = case["id"].as_str().unwrap_or_default();
    let number = |prefix: &str| {
        id.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    match case["section"].as_str().unwrap_or_default() {
        "4.14" if (15..=21).contains(&number("4.14.")) => {
            return Some("CRLs partitioned by reason (onlySomeReasons) are not combined: such a CRL covers nothing and the gateway fails closed")
        }
        "4.14" if number("4.14.") >= 22 => {
            return Some("indirect CRLs and cRLIssuer distribution points are not supported: such CRLs are refused and the gateway fails closed")
        }
        "4.15" => {
            return Some("delta CRLs are not supported: they are refused, and a base CRL used without its delta could miss a revocation (4.15.4)")
        }
        _ => {}
    }
    match id {
        "4.2.3" => Some("der 0.7 (under x509-cert) cannot represent a UTCTime before 1970; this notBefore is 1950, so the certificate is refused as malformed"),
        "4.1.4" | "4.1.5" => Some("DSA signatures are refused (CRYPTREC: RSA >= 2048, ECDSA, EdDSA only)"),
        _ => None,
    }
}

/// For the invalid cases whose failure is a revocation outcome, the reason code it must
/// be: a case must not pass because of some other, accidental failure.
fn expected_revocation_reason(id: &str) -> Option<&'static str> {
    const REVOKED: &str = "cert_revoked";
    const UNAVAILABLE: &str = "revocation_unavailable";
    Some(match id {
        // Revoked CA, revoked EE, negative and long serials, separate CRL key.
        "4.4.2" | "4.4.3" | "4.4.15" | "4.4.18" | "4.4.20" => REVOKED,
        // No CRL, bad signature, wrong issuer name, another CA's CRL, unknown critical
        // (entry) extensions, nextUpdate in the past, a revoked CRL signer.
        "4.4.1" | "4.4.4" | "4.4.5" | "4.4.6" | "4.4.8" | "4.4.9" | "4.4.10" | "4.4.11"
        | "4.4.12" | "4.4.21" => UNAVAILABLE,
        // Key rollover: the EE is revoked on the CRL signed by the other key.
        "4.5.2" | "4.5.5" | "4.5.7" => REVOKED,
        // The CA's keyUsage lacks cRLSign, so its CRL cannot be used.
        "4.7.4" | "4.7.5" => UNAVAILABLE,
        // Distribution points and scopes: revoked on the matching CRL, or no CRL whose
        // issuingDistributionPoint covers the certificate.
        "4.14.2" | "4.14.6" => REVOKED,
        "4.14.3" | "4.14.8" | "4.14.9" | "4.14.11" | "4.14.12" | "4.14.14" => UNAVAILABLE,
        _ => return None,
    })
}

fn load_crls(dir: &std::path::Path, case: &Value) -> Vec<UnverifiedCrl> {
    let mut out = Vec::new();
    for f in case["crls"].as_array().into_iter().flatten() {
        let f = f.as_str().unwrap();
        let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        // A CRL the gateway refuses (unknown critical extension, delta, indirect...) is
        // no CRL at all: the certificates it would cover have no status (fail closed).
        if let Ok(mut crls) = UnverifiedCrl::parse(&bytes) {
            out.append(&mut crls);
        }
    }
    out
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
    let crls_dir = root.join("crls");
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
        let time = opts.time;
        let result = match (&leaf, unparsable) {
            (Ok(leaf), None) => {
                verify_path(leaf, &presented, &anchors, &CertificatePool::new(), &opts)
                    .map_err(|e| format!("{}: {}", e.reason, e.detail))
                    .and_then(|path| {
                        let crls = load_crls(&crls_dir, case);
                        check_path_crls(&path, &crls, &presented, CheckDepth::Chain, time)
                            .map(|()| path)
                            .map_err(|f| format!("{} at depth {}: {}", f.reason, f.depth, f.detail))
                    })
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
            Err(e) => match expected_revocation_reason(&id) {
                Some(code) if !e.starts_with(code) => {
                    failures.push(format!(
                        "  {id} {}: invalid as expected, but for the wrong reason: {e} (expected {code})",
                        case["name"].as_str().unwrap_or("")
                    ));
                    false
                }
                _ => true,
            },
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
