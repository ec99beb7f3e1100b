//! The hand-written HPKI extensions must equal, byte for byte, those of real HPKI
//! certificates. The real extensions are cut out twice, once with this crate's DER reader
//! and once from `openssl asn1parse`, so a reader bug cannot make both sides agree.

mod common;

use common::{openssl, real_cert, shared_hpki_dir};
use pki_tests::der_reader::{parse_certificate, Extension};
use pki_tests::der_writer::{from_hex, to_hex};
use pki_tests::hpki_ext::{
    certificate_policies_value, hc_role_extension_value, kanji_san_extension_value,
    OID_CERTIFICATE_POLICIES, OID_SUBJECT_ALT_NAME, OID_SUBJECT_DIRECTORY_ATTRIBUTES,
};

const MEDIS_DOCTOR: &str = "test-certs/medis-doctor-sanjushi.der";
const MEDIS_PHARMACIST: &str = "test-certs/medis-pharmacist-shiju.der";
const MEDIS_DOCTOR_EXPIRED: &str = "test-certs/medis-doctor-expired-2022.der";
const JMA_DOCTOR: &str = "test-certs/jma-doctor-expired-2023.der";
const JMA_PHARMACIST: &str = "test-certs/jma-pharmacist-expired-2023.der";

fn real_extension(cert: &str, oid: &str) -> Extension {
    parse_certificate(&real_cert(cert))
        .expect("real certificate parses")
        .extension(oid)
        .unwrap_or_else(|| panic!("{cert} has no extension {oid}"))
        .clone()
}

/// The extension value as `openssl asn1parse` dumps it: the `[HEX DUMP]` of the OCTET
/// STRING on the line after the extension's OID (and its critical flag, if any).
fn openssl_extension_hex(cert: &str, openssl_ext_name: &str) -> Vec<u8> {
    let out = openssl(
        &["asn1parse", "-inform", "DER", "-in", cert],
        &shared_hpki_dir(),
    );
    assert!(out.success, "{}", out.text);
    let lines: Vec<&str> = out.text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with(&format!(":{openssl_ext_name}")))
        .unwrap_or_else(|| panic!("asn1parse shows no {openssl_ext_name}:\n{}", out.text));
    let dump = lines[at + 1..]
        .iter()
        .take(2)
        .find_map(|l| l.split("[HEX DUMP]:").nth(1))
        .expect("OCTET STRING follows the OID");
    from_hex(dump).expect("asn1parse prints hex")
}

#[test]
fn readme_hex_is_what_the_real_doctor_certificate_carries() {
    // The README's bytes and the certificate must agree before either is used as truth.
    let readme = std::fs::read_to_string(shared_hpki_dir().join("README.md")).unwrap();
    let readme_hex: String = readme
        .split("```")
        .find(|block| block.contains("303430320606"))
        .expect("README has the hcRole hex block")
        .split_whitespace()
        .collect();
    let real = real_extension(MEDIS_DOCTOR, OID_SUBJECT_DIRECTORY_ATTRIBUTES);
    assert_eq!(readme_hex, to_hex(&real.value));
    assert_eq!(
        to_hex(&hc_role_extension_value(&["Medical Doctor"])),
        readme_hex
    );
}

#[test]
fn hc_role_medical_doctor_equals_real_certificates() {
    let ours = hc_role_extension_value(&["Medical Doctor"]);
    for cert in [MEDIS_DOCTOR, MEDIS_DOCTOR_EXPIRED, JMA_DOCTOR] {
        let real = real_extension(cert, OID_SUBJECT_DIRECTORY_ATTRIBUTES);
        assert!(!real.critical, "{cert}: hcRole is non-critical in HPKI");
        assert_eq!(to_hex(&ours), to_hex(&real.value), "{cert}");
    }
    assert_eq!(
        ours,
        openssl_extension_hex(MEDIS_DOCTOR, "X509v3 Subject Directory Attributes")
    );
}

#[test]
fn hc_role_pharmacist_equals_real_certificates() {
    let ours = hc_role_extension_value(&["Pharmacist"]);
    for cert in [MEDIS_PHARMACIST, JMA_PHARMACIST] {
        let real = real_extension(cert, OID_SUBJECT_DIRECTORY_ATTRIBUTES);
        assert_eq!(to_hex(&ours), to_hex(&real.value), "{cert}");
    }
    assert_eq!(
        ours,
        openssl_extension_hex(MEDIS_PHARMACIST, "X509v3 Subject Directory Attributes")
    );
}

#[test]
fn kanji_san_equals_real_certificates() {
    let cases = [
        (
            MEDIS_DOCTOR,
            "医療情報大学病院",
            "神楽坂\u{3000}三十四",
            "Test117120",
        ),
        (
            MEDIS_PHARMACIST,
            "医療情報大学病院",
            "神楽坂\u{3000}四十",
            "Test317044",
        ),
        (
            MEDIS_DOCTOR_EXPIRED,
            "医療情報大学",
            "推進\u{3000}六十二",
            "Test316622",
        ),
    ];
    for (cert, org, name, id) in cases {
        let ours = kanji_san_extension_value(Some(org), name, id).unwrap();
        let real = real_extension(cert, OID_SUBJECT_ALT_NAME);
        assert!(!real.critical, "{cert}");
        assert_eq!(to_hex(&ours), to_hex(&real.value), "{cert}");
    }
    assert_eq!(
        kanji_san_extension_value(
            Some("医療情報大学病院"),
            "神楽坂\u{3000}三十四",
            "Test117120"
        )
        .unwrap(),
        openssl_extension_hex(MEDIS_DOCTOR, "X509v3 Subject Alternative Name")
    );
}

#[test]
fn certificate_policies_with_cps_equal_real_certificates() {
    let cases = [
        (
            MEDIS_DOCTOR,
            "1.2.392.100495.1.5.1.1.0.1",
            "http://www.medis.or.jp/8_hpki/",
        ),
        (
            JMA_DOCTOR,
            "1.2.392.100495.1.5.1.1.0.1",
            "http://www.pki.med.or.jp/certpolicy/",
        ),
        (
            "ca/medis-auth-ca2-individual.der",
            "1.2.392.100495.1.5.1.2.3.1",
            "http://hpki.mhlw.go.jp/repository/",
        ),
        (
            "ca/medis-sign-ca2.der",
            "1.2.392.100495.1.5.1.1.3.1",
            "http://hpki.mhlw.go.jp/repository/",
        ),
    ];
    for (cert, policy, cps) in cases {
        let ours = certificate_policies_value(&[policy], Some(cps)).unwrap();
        let real = real_extension(cert, OID_CERTIFICATE_POLICIES);
        assert!(
            real.critical,
            "{cert}: HPKI marks certificatePolicies critical"
        );
        assert_eq!(to_hex(&ours), to_hex(&real.value), "{cert}");
    }
    assert_eq!(
        certificate_policies_value(
            &["1.2.392.100495.1.5.1.1.0.1"],
            Some("http://www.medis.or.jp/8_hpki/")
        )
        .unwrap(),
        openssl_extension_hex(MEDIS_DOCTOR, "X509v3 Certificate Policies")
    );
}

#[test]
fn the_real_root_has_no_certificate_policies() {
    // The generated root copies this; a gateway that required policies on anchors would
    // reject the real MHLW root.
    let root = parse_certificate(&real_cert("ca/mhlw-hpki-root-ca-v2.der")).unwrap();
    assert!(root.extension(OID_CERTIFICATE_POLICIES).is_none());
    assert!(root.extension("2.5.29.19").is_some_and(|e| e.critical));
}
