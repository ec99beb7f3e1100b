//! The reason-code tables in docs/reason-codes.md list exactly the codes of `pki::Reason`
//! and of the gateway's own denials (`pages::Denial`).

use hpki_gateway::pages::Denial;
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
    for code in Denial::GATEWAY_CODES {
        assert!(documented.contains(&code), "{code} is not documented");
    }
    for code in &documented {
        assert!(
            Reason::from_code(code).is_some() || Denial::GATEWAY_CODES.contains(code),
            "{code} is documented but is neither a pki::Reason nor a gateway denial"
        );
    }
}
