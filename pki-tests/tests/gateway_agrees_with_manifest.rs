//! The gateway's `pki` core against the generator's hand-written expectations: every
//! leaf of the generated PKI, under every profile, must get exactly the reason code (or
//! "valid") the manifest states, and the identity the gateway reads must equal what the
//! generator encoded. The expectations come from the HPKI rules, not from gateway output.

mod common;

use std::path::Path;
use std::sync::Arc;

use hpki_gateway::pki::{
    classify, default_person_policies, read_identity, verify_for_login, CertKind, KeyPurpose,
    ParsedCertificate, PathOptions, PolicyPrefix, UnixTime,
};
use hpki_gateway::trust::TrustDirectory;
use pki_tests::SubjectKind;

fn load(dir: &Path, rel: &str) -> Arc<ParsedCertificate> {
    let bytes = std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut certs = hpki_gateway::pki::parse_certificates(&bytes)
        .unwrap_or_else(|e| panic!("gateway cannot parse generated {rel}: {e}"));
    Arc::new(certs.remove(0))
}

fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

#[test]
fn every_leaf_gets_the_expected_decision_under_every_profile() {
    let (dir, _pki, manifest) = common::generated();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (profile_name, profile) in &manifest.profiles {
        let store = TrustDirectory::load(&dir.join(&profile.trust_store))
            .unwrap_or_else(|e| panic!("{profile_name}: {e}"));
        let mut opts = PathOptions::new(now(), KeyPurpose::ClientAuth);
        opts.required_policies =
            vec![PolicyPrefix::parse(&profile.required_policy_prefix).unwrap()];
        for leaf in &manifest.leaves {
            let Some(expected) = leaf.expect.get(profile_name) else {
                continue;
            };
            let cert = load(dir, &leaf.cert);
            let chain: Vec<_> = leaf.chain.iter().map(|c| load(dir, c)).collect();
            let got = match verify_for_login(
                &cert,
                &chain,
                &store.anchors,
                &store.intermediates,
                &opts,
            ) {
                Ok(_) => "valid".to_owned(),
                Err(e) => e.reason.code().to_owned(),
            };
            checked += 1;
            if &got != expected {
                mismatches.push(format!(
                    "{} under {profile_name}: expected {expected}, got {got}",
                    leaf.name
                ));
            }
        }
    }
    assert!(checked >= 20, "only {checked} decisions checked");
    assert!(
        mismatches.is_empty(),
        "decisions differ from the manifest:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn identity_read_by_the_gateway_equals_what_the_generator_encoded() {
    let (dir, _pki, manifest) = common::generated();
    let org_prefix =
        PolicyPrefix::parse(&manifest.profiles["hpki-org"].required_policy_prefix).unwrap();
    for leaf in &manifest.leaves {
        let cert = load(dir, &leaf.cert);
        let id = read_identity(&cert).unwrap_or_else(|r| panic!("{}: {r}", leaf.name));
        assert_eq!(id.roles, leaf.roles, "{} roles", leaf.name);
        assert_eq!(
            id.name.as_deref(),
            Some(leaf.name_romaji.as_str()),
            "{} name",
            leaf.name
        );
        assert_eq!(
            id.name_kanji.as_deref(),
            Some(leaf.name_kanji.as_str()),
            "{} kanji",
            leaf.name
        );
        assert_eq!(id.org, leaf.org, "{} org", leaf.name);
        assert_eq!(id.org_kanji, leaf.org_kanji, "{} org kanji", leaf.name);
        assert_eq!(
            id.hpki_id.as_deref(),
            Some(leaf.hpki_id.as_str()),
            "{} id",
            leaf.name
        );
        let policies: Vec<String> = cert
            .policies()
            .unwrap_or(&[])
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(policies, leaf.policies, "{} policies", leaf.name);
        let ku: Vec<String> = cert
            .key_usage()
            .map(|k| k.names())
            .unwrap_or_default()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(ku, leaf.key_usage, "{} keyUsage", leaf.name);
        assert_eq!(
            cert.not_after().to_rfc3339(),
            leaf.not_after,
            "{} notAfter",
            leaf.name
        );
        let kind = classify(
            &cert,
            &id,
            &default_person_policies(),
            std::slice::from_ref(&org_prefix),
        );
        let want = match leaf.kind {
            SubjectKind::Person => CertKind::Person,
            SubjectKind::Organization => CertKind::Organization,
        };
        // The look-alike hierarchy uses the same policies; only the clerk needs the policy
        // arc (no hcRole) to be recognised as a person.
        assert_eq!(kind, want, "{} kind", leaf.name);
    }
}

#[test]
fn cross_certified_root_chains_both_ways() {
    let (dir, _pki, manifest) = common::generated();
    let leaf = manifest.leaf("doctor-g2").expect("doctor-g2 in manifest");
    let cert = load(dir, &leaf.cert);
    let chain: Vec<_> = leaf.chain.iter().map(|c| load(dir, c)).collect();
    let opts = PathOptions::new(now(), KeyPurpose::ClientAuth);
    // Through the cross certificate to the old root...
    let old = TrustDirectory::load(&dir.join("trust/hpki-auth")).unwrap();
    let path = verify_for_login(&cert, &chain, &old.anchors, &old.intermediates, &opts).unwrap();
    assert_eq!(path.chain.len(), 4, "leaf, auth-ca-g2, cross cert, root");
    // ...and directly to the new root, where the cross certificate is not needed.
    let new = TrustDirectory::load(&dir.join("trust/hpki-g2")).unwrap();
    let path = verify_for_login(&cert, &chain, &new.anchors, &new.intermediates, &opts).unwrap();
    assert_eq!(path.chain.len(), 3, "leaf, auth-ca-g2, root-g2");
    // Without the cross certificate the old root cannot be reached.
    let err =
        verify_for_login(&cert, &chain[..1], &old.anchors, &old.intermediates, &opts).unwrap_err();
    assert_eq!(err.reason.code(), "untrusted_issuer");
}
