//! The HPKI extensions rcgen cannot express, hand-encoded with [`crate::der_writer`].
//!
//! Each function returns an extension *value*: the DER that goes inside extnValue's
//! OCTET STRING. The shapes are those of real MEDIS HPKI certificates; tests compare the
//! output byte-for-byte with extensions cut out of those certificates.

use crate::der_writer::{self as w, DerError};

pub const OID_SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";
pub const OID_KEY_USAGE: &str = "2.5.29.15";
pub const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";
pub const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
pub const OID_CRL_DISTRIBUTION_POINTS: &str = "2.5.29.31";
pub const OID_CERTIFICATE_POLICIES: &str = "2.5.29.32";
pub const OID_AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
pub const OID_EXTENDED_KEY_USAGE: &str = "2.5.29.37";
/// subjectDirectoryAttributes, where ISO 17090 puts hcRole.
pub const OID_SUBJECT_DIRECTORY_ATTRIBUTES: &str = "2.5.29.9";
/// id-hcpki-at-healthcareactor (ISO 17090-2).
pub const OID_HC_ACTOR: &str = "1.0.17090.0.1";
/// The Japanese coding scheme for hcRole (MHLW's list of qualifications).
pub const OID_HC_ROLE_CODING_SCHEME: &str = "1.2.392.100495.1.6.1.1";
/// id-qt-cps: the CPS pointer qualifier (RFC 5280 4.2.1.4).
pub const OID_QT_CPS: &str = "1.3.6.1.5.5.7.2.1";
/// A private-enterprise arc no verifier knows, for the "unknown critical extension" case.
pub const OID_UNKNOWN_CRITICAL: &str = "1.3.6.1.4.1.99999.1";

pub const OID_COUNTRY_NAME: &str = "2.5.4.6";
pub const OID_ORGANIZATION_NAME: &str = "2.5.4.10";
pub const OID_COMMON_NAME: &str = "2.5.4.3";
pub const OID_SERIAL_NUMBER: &str = "2.5.4.5";

/// For OIDs written into this crate: a typo must fail the first test, not go unnoticed.
fn known_oid(dotted: &str) -> Vec<u8> {
    w::oid(dotted).unwrap_or_else(|e| panic!("built-in OID constant is invalid: {e}"))
}

/// subjectDirectoryAttributes carrying one hcRole attribute with the given roles.
///
/// ```text
/// SEQUENCE OF Attribute {
///   type   1.0.17090.0.1
///   values SET OF HCActorData          -- one value
///   HCActorData ::= SET OF HCActor     -- one HCActor per role
///   HCActor ::= SEQUENCE { codedData [0] EXPLICIT CodedData }
///   CodedData ::= SET { codingSchemeReference [0] EXPLICIT OID,
///                       codeDataFreeText      [2] EXPLICIT UTF8String } }
/// ```
///
/// Several roles go into one HCActorData because that is what `SET OF HCActor` is for;
/// real cards seen so far carry exactly one. An empty slice yields an HCActorData with
/// no actor, which is only useful as a malformed-input case: a card without a role simply
/// has no such extension.
pub fn hc_role_extension_value(roles: &[&str]) -> Vec<u8> {
    let scheme = known_oid(OID_HC_ROLE_CODING_SCHEME);
    let actors: Vec<Vec<u8>> = roles
        .iter()
        .map(|role| {
            // Both components have distinct context tags already in ascending order,
            // which is DER's canonical order for a SET.
            let coded_data = w::set(&[
                w::explicit(0, &scheme).expect("tag 0 is in range"),
                w::explicit(2, &w::utf8_string(role)).expect("tag 2 is in range"),
            ]);
            w::sequence(&[w::explicit(0, &coded_data).expect("tag 0 is in range")])
        })
        .collect();
    let hc_actor_data = w::set_of(&actors);
    let attribute = w::sequence(&[known_oid(OID_HC_ACTOR), w::set_of(&[hc_actor_data])]);
    w::sequence(&[attribute])
}

/// subjectAltName with a single directoryName holding the kanji forms, in the order and
/// string types of real MEDIS certificates:
/// `C=JP` (PrintableString), `O=<facility>` (UTF8String, left out when `None` as JMA cards
/// do), `CN=<name>` (UTF8String, the U+3000 between family and given name kept as is),
/// `serialNumber=<HPKI id>` (PrintableString).
pub fn kanji_san_extension_value(
    org_kanji: Option<&str>,
    name_kanji: &str,
    hpki_id: &str,
) -> Result<Vec<u8>, DerError> {
    let rdn = |oid: &str, value: Vec<u8>| w::set_of(&[w::sequence(&[known_oid(oid), value])]);
    let mut rdns = vec![rdn(OID_COUNTRY_NAME, w::printable_string("JP")?)];
    if let Some(org) = org_kanji {
        rdns.push(rdn(OID_ORGANIZATION_NAME, w::utf8_string(org)));
    }
    rdns.push(rdn(OID_COMMON_NAME, w::utf8_string(name_kanji)));
    rdns.push(rdn(OID_SERIAL_NUMBER, w::printable_string(hpki_id)?));
    let directory_name = w::explicit(4, &w::sequence(&rdns))?;
    Ok(w::sequence(&[directory_name]))
}

/// certificatePolicies with one PolicyInformation per OID, each with a CPS pointer when
/// `cps_uri` is given (as every real HPKI certificate has).
pub fn certificate_policies_value(
    policy_oids: &[&str],
    cps_uri: Option<&str>,
) -> Result<Vec<u8>, DerError> {
    let mut infos = Vec::with_capacity(policy_oids.len());
    for policy in policy_oids {
        let mut info = vec![w::oid(policy)?];
        if let Some(uri) = cps_uri {
            let qualifier = w::sequence(&[known_oid(OID_QT_CPS), w::ia5_string(uri)?]);
            info.push(w::sequence(&[qualifier]));
        }
        infos.push(w::sequence(&info));
    }
    Ok(w::sequence(&infos))
}

/// Value for [`OID_UNKNOWN_CRITICAL`]: content does not matter, since a verifier must
/// reject a critical extension it does not recognise before looking inside.
pub fn unknown_critical_extension_value() -> Vec<u8> {
    w::utf8_string("hpki-gateway test: unknown critical extension")
}

/// subjectKeyIdentifier: rcgen writes it only for CA certificates, but every real HPKI
/// end-entity certificate has one.
pub fn subject_key_identifier_value(key_id: &[u8]) -> Vec<u8> {
    w::octet_string(key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::der_reader;

    /// The extension value of a real "Medical Doctor" certificate, from the HPKI README.
    const README_MEDICAL_DOCTOR_HEX: &str = "303430320606288185420001312831263024A0223120A00C060A2A830886910F01060101A2100C0E4D65646963616C20446F63746F72";

    #[test]
    fn medical_doctor_matches_readme_bytes_exactly() {
        assert_eq!(
            w::to_hex(&hc_role_extension_value(&["Medical Doctor"])),
            README_MEDICAL_DOCTOR_HEX
        );
    }

    #[test]
    fn several_roles_are_actors_in_der_order() {
        let value = hc_role_extension_value(&["Pharmacist", "Dentist"]);
        let attribute = der_reader::read_single(&value).unwrap().children().unwrap()[0];
        let parts = attribute.children().unwrap();
        let hc_actor_data = parts[1].children().unwrap()[0];
        let actors = hc_actor_data.children().unwrap();
        assert_eq!(actors.len(), 2);
        // "Dentist" encodes shorter, so its HCActor sorts first under DER SET OF rules.
        assert!(actors[0].raw < actors[1].raw);
        let text = String::from_utf8_lossy(actors[0].raw);
        assert!(text.contains("Dentist"), "{text}");
    }

    #[test]
    fn kanji_san_without_org_has_no_o_attribute() {
        let with = kanji_san_extension_value(Some("医療"), "神楽坂\u{3000}一郎", "Test1").unwrap();
        let without = kanji_san_extension_value(None, "神楽坂\u{3000}一郎", "Test1").unwrap();
        let name_of = |value: &[u8]| {
            let gn = der_reader::read_single(value).unwrap().children().unwrap()[0];
            assert_eq!(gn.tag, 0xA4, "directoryName is [4] EXPLICIT");
            der_reader::name_attributes(gn.contents).unwrap()
        };
        let types = |attrs: Vec<(String, u8, Vec<u8>)>| -> Vec<String> {
            attrs.into_iter().map(|(oid, _, _)| oid).collect()
        };
        assert_eq!(
            types(name_of(&with)),
            ["2.5.4.6", "2.5.4.10", "2.5.4.3", "2.5.4.5"]
        );
        assert_eq!(types(name_of(&without)), ["2.5.4.6", "2.5.4.3", "2.5.4.5"]);
    }

    #[test]
    fn kanji_san_rejects_an_id_printable_string_cannot_hold() {
        assert!(kanji_san_extension_value(None, "名前", "Test_1").is_err());
    }

    #[test]
    fn policies_without_qualifier_are_bare_oids() {
        let value = certificate_policies_value(&["1.2.392.100495.1.5.1.2.0.1"], None).unwrap();
        assert_eq!(w::to_hex(&value), "3010300E060C2A830886910F010501020001");
        assert!(certificate_policies_value(&["not.an.oid"], None).is_err());
    }
}
