//! The generated certificates have the extension layout of real HPKI certificates: read
//! back with this crate's DER reader (not the `der` crate the gateway uses) and compared
//! with the real MEDIS certificates where the shape must be the same.

mod common;

use common::{generated, real_cert};
use pki_tests::der_reader::{name_attributes, parse_certificate, CertificateView};
use pki_tests::der_writer::{TAG_PRINTABLE_STRING, TAG_UTF8_STRING};
use pki_tests::hpki_ext::*;
use pki_tests::profile::policy;

fn view(name: &str) -> CertificateView {
    let (_, pki, _) = generated();
    let cert = pki
        .get(name)
        .unwrap_or_else(|| panic!("no certificate {name}"));
    parse_certificate(&cert.der).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (OID, critical) of every extension, sorted, to compare layouts regardless of order.
fn layout(cert: &CertificateView) -> Vec<(String, bool)> {
    let mut out: Vec<_> = cert
        .extensions
        .iter()
        .map(|e| (e.oid.clone(), e.critical))
        .collect();
    out.sort();
    out
}

fn policy_oid_of(cert: &CertificateView) -> String {
    let ext = cert
        .extension(OID_CERTIFICATE_POLICIES)
        .expect("certificatePolicies");
    let infos = pki_tests::der_reader::read_single(&ext.value)
        .unwrap()
        .children()
        .unwrap();
    let first = infos[0].children().unwrap()[0];
    pki_tests::der_reader::oid_to_string(first.contents).unwrap()
}

#[test]
fn signing_card_has_exactly_the_extension_layout_of_a_real_signing_card() {
    let real = parse_certificate(&real_cert("test-certs/medis-doctor-sanjushi.der")).unwrap();
    assert_eq!(layout(&view("signing-card")), layout(&real));
}

#[test]
fn auth_leaf_layout_is_the_signing_layout_plus_eku() {
    let real = parse_certificate(&real_cert("test-certs/medis-doctor-sanjushi.der")).unwrap();
    let mut expected = layout(&real);
    expected.push((OID_EXTENDED_KEY_USAGE.to_owned(), false));
    expected.sort();
    assert_eq!(layout(&view("doctor")), expected);
}

#[test]
fn intermediate_ca_layout_matches_the_real_auth_ca() {
    let real = parse_certificate(&real_cert("ca/medis-auth-ca2-individual.der")).unwrap();
    assert_eq!(layout(&view("auth-ca")), layout(&real));
    assert_eq!(layout(&view("sign-ca")), layout(&real));
}

#[test]
fn root_has_no_policies_and_critical_ca_constraints() {
    let root = view("root");
    assert!(root.extension(OID_CERTIFICATE_POLICIES).is_none());
    assert!(root.extension(OID_BASIC_CONSTRAINTS).unwrap().critical);
    // keyUsage BIT STRING: keyCertSign (bit 5) + cRLSign (bit 6) = 0x06, 1 unused bit.
    let key_usage = root.extension(OID_KEY_USAGE).unwrap();
    assert!(key_usage.critical);
    assert_eq!(key_usage.value, [0x03, 0x02, 0x01, 0x06]);
    assert_eq!(root.issuer_raw, root.subject_raw);
}

#[test]
fn leaf_extensions_carry_the_hand_encoded_values() {
    let doctor = view("doctor");
    assert_eq!(
        doctor
            .extension(OID_SUBJECT_DIRECTORY_ATTRIBUTES)
            .unwrap()
            .value,
        hc_role_extension_value(&["Medical Doctor"])
    );
    assert_eq!(
        doctor.extension(OID_SUBJECT_ALT_NAME).unwrap().value,
        kanji_san_extension_value(Some("医療情報大学病院"), "神楽坂\u{3000}一郎", "Test000001")
            .unwrap()
    );
    assert_eq!(policy_oid_of(&doctor), policy::AUTH_END_ENTITY);
    assert!(doctor.extension(OID_BASIC_CONSTRAINTS).is_none());
    let ski = doctor
        .extension(OID_SUBJECT_KEY_IDENTIFIER)
        .expect("SKI on leaves");
    assert_eq!(ski.value.len(), 22, "OCTET STRING of a 20-byte key id");

    for (leaf, role) in [("pharmacist", "Pharmacist"), ("dentist", "Dentist")] {
        assert_eq!(
            view(leaf)
                .extension(OID_SUBJECT_DIRECTORY_ATTRIBUTES)
                .unwrap()
                .value,
            hc_role_extension_value(&[role]),
            "{leaf}"
        );
    }
}

#[test]
fn clerk_and_organization_have_no_hc_role() {
    for leaf in ["clerk", "org-clinic"] {
        let cert = view(leaf);
        assert!(
            cert.extension(OID_SUBJECT_DIRECTORY_ATTRIBUTES).is_none(),
            "{leaf}"
        );
        assert!(cert.extension(OID_SUBJECT_ALT_NAME).is_some(), "{leaf}");
    }
}

#[test]
fn key_usage_bits_per_kind() {
    // digitalSignature (bit 0) + keyEncipherment (bit 2): 0xA0, 5 unused bits.
    assert_eq!(
        view("doctor").extension(OID_KEY_USAGE).unwrap().value,
        [0x03, 0x02, 0x05, 0xA0]
    );
    // nonRepudiation only, as in the real signing card: 0x40, 6 unused bits.
    let real = parse_certificate(&real_cert("test-certs/medis-doctor-sanjushi.der")).unwrap();
    let signing = view("signing-card");
    assert_eq!(
        signing.extension(OID_KEY_USAGE).unwrap().value,
        real.extension(OID_KEY_USAGE).unwrap().value
    );
    assert!(signing.extension(OID_EXTENDED_KEY_USAGE).is_none());
    // digitalSignature only.
    assert_eq!(
        view("org-clinic").extension(OID_KEY_USAGE).unwrap().value,
        [0x03, 0x02, 0x07, 0x80]
    );
}

#[test]
fn policies_per_certificate() {
    for (name, oid) in [
        ("auth-ca", policy::AUTH_CA),
        ("sign-ca", policy::SIGN_CA),
        ("org-ca", policy::ORG_CA),
        ("auth-ca-g2", policy::AUTH_CA),
        ("signing-card", policy::SIGN_END_ENTITY),
        ("org-clinic", policy::ORG_END_ENTITY),
        ("wrong-policy", policy::UNASSIGNED),
        ("doctor-g2", policy::AUTH_END_ENTITY),
    ] {
        let cert = view(name);
        assert!(
            cert.extension(OID_CERTIFICATE_POLICIES).unwrap().critical,
            "{name}"
        );
        assert_eq!(policy_oid_of(&cert), oid, "{name}");
    }
}

#[test]
fn only_unknown_critical_has_the_unknown_extension() {
    let (_, pki, _) = generated();
    for cert in &pki.certs {
        let ext = parse_certificate(&cert.der).unwrap();
        let unknown = ext.extension(OID_UNKNOWN_CRITICAL);
        if cert.name == "unknown-critical" {
            assert!(unknown.is_some_and(|e| e.critical));
        } else {
            assert!(unknown.is_none(), "{}", cert.name);
        }
    }
}

#[test]
fn subject_layout_and_types_match_the_real_card() {
    let real = parse_certificate(&real_cert("test-certs/medis-doctor-sanjushi.der")).unwrap();
    let types = |v: &CertificateView| -> Vec<(String, u8)> {
        name_attributes(&v.subject_raw)
            .unwrap()
            .into_iter()
            .map(|(oid, tag, _)| (oid, tag))
            .collect()
    };
    let expected = vec![
        ("2.5.4.6".to_owned(), TAG_PRINTABLE_STRING),
        ("2.5.4.10".to_owned(), TAG_UTF8_STRING),
        ("2.5.4.3".to_owned(), TAG_UTF8_STRING),
        ("2.5.4.5".to_owned(), TAG_PRINTABLE_STRING),
    ];
    assert_eq!(types(&real), expected);
    for leaf in ["doctor", "signing-card", "org-clinic", "untrusted-doctor"] {
        assert_eq!(types(&view(leaf)), expected, "{leaf}");
    }
}

#[test]
fn cross_certificate_shares_subject_and_key_with_root_g2() {
    let (_, pki, _) = generated();
    let g2 = view("root-g2");
    let cross = view("root-g2-cross");
    assert_eq!(cross.subject_raw, g2.subject_raw);
    assert_eq!(cross.issuer_raw, view("root").subject_raw);
    assert_eq!(
        cross.extension(OID_SUBJECT_KEY_IDENTIFIER),
        g2.extension(OID_SUBJECT_KEY_IDENTIFIER)
    );
    assert_eq!(
        pki.get("root-g2-cross").unwrap().key_pem,
        pki.get("root-g2").unwrap().key_pem
    );
}

#[test]
fn untrusted_hierarchy_mimics_the_trusted_one() {
    let impostor = view("untrusted-doctor");
    let doctor = view("doctor");
    assert_eq!(
        impostor.subject_raw, doctor.subject_raw,
        "claims the doctor's identity"
    );
    assert_ne!(view("untrusted-root").subject_raw, view("root").subject_raw);
    assert_eq!(layout(&impostor), layout(&doctor));
}
