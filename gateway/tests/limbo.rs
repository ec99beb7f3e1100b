//! x509-limbo (C2SP) path-validation cases run through `pki`, from
//! `../shared/limbo/limbo-client.json`. Every applicable case must give its expected
//! result; skipped cases are listed with the reason. Cases with CRLs (`has-crl`) are
//! checked for revocation with `pki::revocation_check`, the checker the gateway uses.
//! Prints `N passed, N failed, N skipped`.

mod common;

use std::sync::Arc;

use hpki_gateway::pki::crl::UnverifiedCrl;
use hpki_gateway::pki::revocation_check::{check_path_crls, CheckDepth};
use hpki_gateway::pki::{
    parse_certificates, verify_path, CertificatePool, KeyPurpose, ParsedCertificate, PathOptions,
    UnixTime,
};
use serde_json::Value;

/// Why a case is not run. Stable text: it is printed in the test output and the docs.
fn skip_reason(case: &Value) -> Option<&'static str> {
    let id = case["id"].as_str().unwrap_or_default();
    let features: Vec<&str> = case["features"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if features.iter().any(|f| f.starts_with("pedantic-webpki")) {
        return Some(
            "Web PKI subscriber rules (EKU/key policy of the CA/B Forum); HPKI is not Web PKI",
        );
    }
    if features.contains(&"pedantic-rfc5280") {
        return Some("pedantic RFC 5280 reading (a cross-signed root without AKI) that limbo itself calls ambiguous");
    }
    if id.starts_with("webpki::aki::root-with-aki")
        || id == "webpki::forbidden-rsa-not-divisible-by-8-in-root"
        || id == "webpki::ee-basicconstraints-ca"
    {
        return Some(
            "CA/Browser Forum Baseline Requirements rule, not RFC 5280; HPKI follows RFC 5280",
        );
    }
    if id == "rfc5280::pc::ica-noncritical-pc" {
        return Some("NIST PKITS 4.8-4.12 use non-critical policyConstraints and expect them honoured; we follow PKITS");
    }
    if id == "rfc5280::root-non-critical-basic-constraints" {
        return Some("NIST PKITS 4.6.4 expects a CA with non-critical basicConstraints to be valid; we follow PKITS for every CA, anchors included");
    }
    // Where limbo has an RFC 5280 and a Web PKI variant of the same question, we follow
    // RFC 5280 (a CA certificate as leaf, a leaf without EKU).
    if id.starts_with("webpki::")
        && case["conflicts_with"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    {
        return Some("conflicts with its RFC 5280 variant, which we follow");
    }
    None
}

/// The reason code a revocation case must fail with, so that it does not pass by an
/// accidental failure.
fn expected_failure_reason(id: &str) -> Option<&'static str> {
    match id {
        "crl::revoked-certificate-with-crl" => Some("cert_revoked"),
        // A v2 CRL without cRLNumber (RFC 5280 5.2.3: conforming issuers MUST include
        // it) is not used; a critical cRLNumber is refused when parsing; a CA whose
        // keyUsage lacks cRLSign cannot sign CRLs. Each leaves the leaf without status.
        "crl::crlnumber-missing" | "crl::crlnumber-critical" | "crl::issuer-missing-crlsign" => {
            Some("revocation_unavailable")
        }
        _ => None,
    }
}

fn pem_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn parse_all(pems: &[String]) -> Result<Vec<Arc<ParsedCertificate>>, String> {
    let mut out = Vec::new();
    for p in pems {
        let certs = parse_certificates(p.as_bytes()).map_err(|e| e.to_string())?;
        out.extend(certs.into_iter().map(Arc::new));
    }
    Ok(out)
}

/// Runs one case; Ok(()) = success, Err(reason) = failure.
fn run_case(case: &Value) -> Result<(), String> {
    let anchors = parse_all(&pem_list(&case["trusted_certs"]))?;
    let intermediates = parse_all(&pem_list(&case["untrusted_intermediates"]))?;
    let leaf = parse_all(&pem_list(&case["peer_certificate"]))?
        .into_iter()
        .next()
        .ok_or("no peer certificate")?;
    let time = match case["validation_time"].as_str() {
        Some(t) => UnixTime::parse_rfc3339(t).ok_or("bad validation_time")?,
        None => UnixTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        ),
    };
    let ekus: Vec<&str> = case["extended_key_usage"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let purpose = if ekus.contains(&"clientAuth") {
        KeyPurpose::ClientAuth
    } else if ekus.contains(&"serverAuth") || case["validation_kind"] == "SERVER" {
        KeyPurpose::ServerAuth
    } else {
        KeyPurpose::ClientAuth
    };
    let mut opts = PathOptions::new(time, purpose);
    if let Some(depth) = case["max_chain_depth"].as_u64() {
        opts.max_intermediates = depth as usize;
    }
    let anchors = CertificatePool::from_certs(anchors);
    let store = CertificatePool::new();
    let path = verify_path(&leaf, &intermediates, &anchors, &store, &opts)
        .map_err(|e| format!("{}: {}", e.reason, e.detail))?;
    // CRLs: every certificate below the anchor needs a current CRL from its issuer that
    // does not list it. A CRL the gateway refuses (a critical cRLNumber, say) is no CRL.
    if case["features"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "has-crl"))
    {
        let mut crls = Vec::new();
        for pem in pem_list(&case["crls"]) {
            if let Ok(mut c) = UnverifiedCrl::parse(pem.as_bytes()) {
                crls.append(&mut c);
            }
        }
        check_path_crls(&path, &crls, &intermediates, CheckDepth::Chain, time)
            .map_err(|f| format!("{}: {}", f.reason, f.detail))?;
    }
    let required_ku: Vec<&str> = case["key_usage"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(ku) = path.leaf().key_usage() {
        let names = ku.names();
        for want in required_ku {
            if !names.contains(&want) {
                return Err(format!("keyUsage lacks {want}"));
            }
        }
    }
    Ok(())
}

#[test]
fn limbo_cases_give_expected_results() {
    let path = common::shared_dir().join("limbo/limbo-client.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("limbo JSON");
    let cases = doc["testcases"].as_array().expect("testcases");
    let (mut passed, mut failed, mut skipped) = (0, 0, Vec::new());
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap_or("?");
        if let Some(reason) = skip_reason(case) {
            skipped.push((id.to_owned(), reason));
            continue;
        }
        let expect_success = case["expected_result"] == "SUCCESS";
        let got = run_case(case);
        let wrong_reason = match (&got, expected_failure_reason(id)) {
            (Err(e), Some(code)) if !e.starts_with(code) => Some(code),
            _ => None,
        };
        if let Some(code) = wrong_reason {
            failed += 1;
            failures.push(format!(
                "  {id}: FAILURE as expected, but for the wrong reason: {} (expected {code})",
                got.as_ref().err().map(String::as_str).unwrap_or("")
            ));
        } else if got.is_ok() == expect_success {
            passed += 1;
        } else {
            failed += 1;
            failures.push(format!(
                "  {id}: expected {}, got {}",
                case["expected_result"].as_str().unwrap_or("?"),
                match &got {
                    Ok(()) => "SUCCESS".to_owned(),
                    Err(e) => format!("FAILURE ({e})"),
                }
            ));
        }
    }
    println!("limbo skipped cases:");
    for (id, reason) in &skipped {
        println!("  {id}: {reason}");
    }
    if !failures.is_empty() {
        println!("limbo unexpected results:");
        for f in &failures {
            println!("{f}");
        }
    }
    println!(
        "limbo: {passed} passed, {failed} failed, {} skipped",
        skipped.len()
    );
    assert!(passed > 150, "too few limbo cases ran ({passed})");
    assert_eq!(
        failed,
        0,
        "limbo cases with unexpected results:\n{}",
        failures.join("\n")
    );
}
