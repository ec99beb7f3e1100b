//! The reason-code table in docs/reason-codes.md lists exactly the codes of `pki::Reason`.

use hpki_gateway::pki::Reason;

#[test]
fn reason_code_table_matches_the_enum() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reason-codes.md"
    ))
    .expect("docs/reason-codes.md");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    for r in Reason::ALL {
        assert!(
            documented.contains(&r.code()),
            "{} is not documented",
            r.code()
        );
    }
    for code in &documented {
        assert!(
            Reason::from_code(code).is_some(),
            "{code} is documented but not a pki::Reason"
        );
    }
}
