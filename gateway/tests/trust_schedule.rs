//! Staged trust-store rotation: `trust.toml` windows in a trust directory decide when an
//! anchor is accepted. Time is a parameter of `TrustStore::authenticate`, so every case
//! is judged at chosen instants, never by sleeping.
//!
//! "Old" and "new" hierarchy: the test PKI has two independent roots, `root` (whose
//! `auth-ca` issues `doctor`) and `untrusted-root` (which issues `untrusted-doctor`
//! directly). `untrusted-doctor` carries the HPKI authentication end-entity policy,
//! clientAuth and digitalSignature like `doctor`, so with `untrusted-root` among the
//! anchors it validates under the hpki-auth requirements (policy prefix
//! 1.2.392.100495.1.5.1.2, no intermediate needed): it stands for a card of the new root.
//! The two roots even share their CN, which is what a real root renewal looks like.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpki_gateway::config::TrustKind;
use hpki_gateway::pki::{parse_certificates, ParsedCertificate, PolicyPrefix, Reason, UnixTime};
use hpki_gateway::trust::{TrustDirectory, TrustProfile, TrustStore, WindowState};

const AUTH_PREFIX: &str = "1.2.392.100495.1.5.1.2";

fn cert(name: &str) -> Arc<ParsedCertificate> {
    let c = support::pki()
        .generated
        .get(name)
        .unwrap_or_else(|| panic!("test PKI has {name}"));
    Arc::new(ParsedCertificate::from_der(&c.der).unwrap())
}

fn sha_hex(name: &str) -> String {
    hpki_gateway::pki::name::hex(cert(name).sha256())
}

/// A reference instant inside the validity of every current test certificate.
fn t0() -> i64 {
    support::pki().generated.now.unix_timestamp() + 3600
}

fn rfc3339_jst(t: i64) -> String {
    hpki_gateway::store::format_time(t)
}

fn at(t: i64) -> UnixTime {
    UnixTime(u64::try_from(t).unwrap())
}

/// A fresh trust directory under a tempdir with these anchors and intermediates (by
/// test-PKI name) and, when given, this trust.toml.
fn trust_dir(
    tmp: &tempfile::TempDir,
    anchors: &[&str],
    intermediates: &[&str],
    schedule: Option<&str>,
) -> PathBuf {
    let dir = tmp.path().join("trust");
    for (sub, names) in [("anchors", anchors), ("intermediates", intermediates)] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for n in names {
            std::fs::write(
                dir.join(sub).join(format!("{n}.pem")),
                &support::pki().generated.get(n).unwrap().pem,
            )
            .unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("crls")).unwrap();
    if let Some(s) = schedule {
        std::fs::write(dir.join("trust.toml"), s).unwrap();
    }
    dir
}

fn store(dir: &Path) -> TrustStore {
    TrustStore {
        profiles: vec![TrustProfile {
            name: "hpki-auth".into(),
            kind: TrustKind::Person,
            required_policies: vec![PolicyPrefix::parse(AUTH_PREFIX).unwrap()],
            max_intermediates: 6,
            revocation: Default::default(),
            directory: TrustDirectory::load(dir).unwrap(),
        }],
    }
}

/// The outcome of a login with `leaf` presenting `chain` at `t`: Ok(anchor name as
/// subject display) or the refusal.
fn login(
    store: &TrustStore,
    leaf: &str,
    chain: &[&str],
    t: i64,
) -> Result<String, (Reason, String)> {
    let presented: Vec<_> = chain.iter().map(|n| cert(n)).collect();
    store
        .authenticate(&cert(leaf), &presented, at(t))
        .map(|a| hpki_gateway::pki::name::hex(a.path.anchor().sha256()))
        .map_err(|e| (e.reason, e.detail))
}

/// Old root retired at T, new root accepted from T; one written by file, one by sha256.
fn rotation_schedule(t: i64) -> String {
    format!(
        r#"# the old root: accepted until T (exclusive)
[[anchor]]
file = "anchors/root.pem"
not_after = "{t}"

# the new root, by its fingerprint with colons and capitals as some tools print it
[[anchor]]
sha256 = "{sha}"
not_before = "{t}"
"#,
        t = rfc3339_jst(t),
        sha = sha_hex("untrusted-root")
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[test]
fn anchors_change_over_at_the_scheduled_instant() {
    let tmp = tempfile::tempdir().unwrap();
    let t = t0();
    let dir = trust_dir(
        &tmp,
        &["root", "untrusted-root"],
        &["auth-ca"],
        Some(&rotation_schedule(t)),
    );
    let s = store(&dir);
    assert_eq!(s.profiles[0].directory.schedule.len(), 2);

    // Just before T: the old hierarchy only.
    assert_eq!(
        login(&s, "doctor", &["auth-ca"], t - 1),
        Ok(sha_hex("root"))
    );
    let (reason, detail) = login(&s, "untrusted-doctor", &[], t - 1).unwrap_err();
    assert_eq!(reason, Reason::UntrustedIssuer, "{detail}");
    assert!(
        detail.contains(&format!("is accepted from {}", rfc3339_jst(t)))
            && detail.contains("(trust.toml)")
            && detail.contains("Test HPKI Root CA"),
        "{detail}"
    );

    // At T (not_after is exclusive, not_before inclusive): the new hierarchy only.
    assert_eq!(
        login(&s, "untrusted-doctor", &[], t),
        Ok(sha_hex("untrusted-root"))
    );
    let (reason, detail) = login(&s, "doctor", &["auth-ca"], t).unwrap_err();
    assert_eq!(reason, Reason::UntrustedIssuer, "{detail}");
    assert!(
        detail.contains(&format!("was accepted until {}", rfc3339_jst(t)))
            && detail.contains("(trust.toml)"),
        "{detail}"
    );

    // The same question for other code (reload, status).
    let d = &s.profiles[0].directory;
    let root = *cert("root").sha256();
    let new = *cert("untrusted-root").sha256();
    assert_eq!(d.anchor_active(&root, at(t - 1)), Ok(()));
    assert!(d
        .anchor_active(&root, at(t))
        .unwrap_err()
        .contains("was accepted until"));
    assert!(d
        .anchor_active(&new, at(t - 1))
        .unwrap_err()
        .contains("is accepted from"));
    assert_eq!(d.anchor_active(&new, at(t)), Ok(()));
    assert_eq!(d.window(&root).unwrap().state(at(t)), WindowState::Retired);
    let lines = d.schedule_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l
            .starts_with("window C=JP, O=HPKI Test Authority, CN=Test HPKI Root CA ")
            && l.ends_with(&format!("accepted until {}", rfc3339_jst(t)))),
        "{lines:?}"
    );
    assert_eq!(
        d.window(&new).unwrap().state(at(t - 1)),
        WindowState::NotYetActive
    );
}

#[test]
fn without_a_schedule_both_hierarchies_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp, &["root", "untrusted-root"], &["auth-ca"], None);
    let s = store(&dir);
    assert!(s.profiles[0].directory.schedule.is_empty());
    assert!(login(&s, "doctor", &["auth-ca"], t0()).is_ok());
    assert!(login(&s, "untrusted-doctor", &[], t0()).is_ok());
}

#[test]
fn a_bare_date_is_midnight_in_japan() {
    let tmp = tempfile::tempdir().unwrap();
    // Tomorrow (JST) at midnight, written as a bare date, unquoted TOML date too.
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap();
    let now = time::OffsetDateTime::from_unix_timestamp(t0())
        .unwrap()
        .to_offset(jst);
    let day = now.date().next_day().unwrap();
    let midnight = day.midnight().assume_offset(jst).unix_timestamp();
    let schedule =
        format!("[[anchor]]\nfile = \"anchors/untrusted-root.pem\"\nnot_before = {day}\n");
    let dir = trust_dir(
        &tmp,
        &["root", "untrusted-root"],
        &["auth-ca"],
        Some(&schedule),
    );
    let s = store(&dir);
    assert!(login(&s, "untrusted-doctor", &[], midnight - 1).is_err());
    assert!(login(&s, "untrusted-doctor", &[], midnight).is_ok());
}

/// Where the old and the new root are linked by a cross-certificate, the card of the new
/// hierarchy chains to both; with the new root not yet active, path building must find
/// the old root through the cross-certificate rather than stop at the inactive anchor.
#[test]
fn a_cross_certified_card_reaches_the_active_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let t = t0();
    let schedule = format!(
        "[[anchor]]\nfile = \"anchors/root-g2.pem\"\nnot_before = \"{}\"\n",
        rfc3339_jst(t)
    );
    let dir = trust_dir(&tmp, &["root", "root-g2"], &[], Some(&schedule));
    let s = store(&dir);
    let chain = ["auth-ca-g2", "root-g2-cross"];
    // Before root-g2 is active: through root-g2-cross to root.
    assert_eq!(login(&s, "doctor-g2", &chain, t - 1), Ok(sha_hex("root")));
    // Once it is: either anchor is acceptable; the path is valid in any case.
    assert!(login(&s, "doctor-g2", &chain, t).is_ok());
    // Without the cross-certificate, before T the card has no active anchor.
    let (reason, detail) = login(&s, "doctor-g2", &["auth-ca-g2"], t - 1).unwrap_err();
    assert_eq!(reason, Reason::UntrustedIssuer);
    assert!(detail.contains("is accepted from"), "{detail}");
    assert_eq!(
        login(&s, "doctor-g2", &["auth-ca-g2"], t),
        Ok(sha_hex("root-g2"))
    );
}

/// Each broken trust.toml is refused with a problem naming trust.toml and what is wrong.
#[test]
fn bad_schedules_are_refused_naming_the_file_and_key() {
    let root_sha = sha_hex("root");
    let auth_ca_sha = sha_hex("auth-ca");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("syntax", "[[anchor]\nfile = \"anchors/root.pem\"\n".into(), vec!["TOML"]),
        (
            "unknown key in an anchor",
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_afterr = \"2027-03-31\"\n".into(),
            vec!["unknown key", "not_afterr"],
        ),
        (
            "unknown top-level key",
            "[[anchors]]\nfile = \"anchors/root.pem\"\n".into(),
            vec!["unknown key", "anchors"],
        ),
        (
            "bad date",
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_after = \"2027-13-45\"\n".into(),
            vec!["not_after", "2027-13-45", "is not a date"],
        ),
        (
            "date-time without offset",
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_before = 2027-01-01T00:00:00\n".into(),
            vec!["not_before", "is not a date"],
        ),
        (
            "file that is not an anchor",
            "[[anchor]]\nfile = \"intermediates/auth-ca.pem\"\nnot_after = \"2027-03-31\"\n".into(),
            vec!["file", "intermediates/auth-ca.pem", "not one of the anchors"],
        ),
        (
            "missing file",
            "[[anchor]]\nfile = \"anchors/root-2027.pem\"\n".into(),
            vec!["file", "anchors/root-2027.pem", "cannot be read"],
        ),
        (
            "sha256 of no anchor",
            format!("[[anchor]]\nsha256 = \"{auth_ca_sha}\"\n"),
            vec!["sha256", &auth_ca_sha, "no certificate in anchors/"],
        ),
        (
            "sha256 not hex",
            "[[anchor]]\nsha256 = \"ab12\"\n".into(),
            vec!["sha256", "not a SHA-256"],
        ),
        (
            "both file and sha256",
            format!("[[anchor]]\nfile = \"anchors/root.pem\"\nsha256 = \"{root_sha}\"\n"),
            vec!["file", "sha256", "not both"],
        ),
        (
            "neither file nor sha256",
            "[[anchor]]\nnot_after = \"2027-03-31\"\n".into(),
            vec!["names no anchor", "file", "sha256"],
        ),
        (
            "not_before after not_after",
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_before = \"2027-04-01\"\nnot_after = \"2027-03-31\"\n".into(),
            vec!["not_before", "not_after", "must be before"],
        ),
        (
            "not_before equal to not_after",
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_before = \"2027-04-01\"\nnot_after = \"2027-04-01T00:00:00+09:00\"\n".into(),
            vec!["not_before", "not_after", "must be before"],
        ),
        (
            "one anchor twice",
            format!("[[anchor]]\nfile = \"anchors/root.pem\"\n[[anchor]]\nsha256 = \"{root_sha}\"\n"),
            vec!["[[anchor]] #2", "same anchor as [[anchor]] #1"],
        ),
        (
            "wrong type",
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_after = 20270331\n".into(),
            vec!["not_after", "must be a string"],
        ),
    ];
    for (what, text, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = trust_dir(&tmp, &["root"], &["auth-ca"], Some(&text));
        let err = TrustDirectory::load(&dir).expect_err(what);
        assert_eq!(err.problems.len(), 1, "{what}: {err}");
        let p = &err.problems[0];
        assert_eq!(p.path, dir.join("trust.toml"), "{what}: {err}");
        let shown = p.to_string();
        assert!(shown.contains("trust.toml"), "{what}: {shown}");
        for e in &expect {
            assert!(shown.contains(e), "{what}: expected {e:?} in {shown}");
        }
    }
}

#[test]
fn a_bundle_file_must_be_named_by_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp, &["root", "untrusted-root"], &[], None);
    let p = support::pki();
    let bundle = format!(
        "{}{}",
        p.generated.get("root").unwrap().pem,
        p.generated.get("untrusted-root").unwrap().pem
    );
    std::fs::write(dir.join("anchors/bundle.pem"), &bundle).unwrap();
    assert_eq!(parse_certificates(bundle.as_bytes()).unwrap().len(), 2);
    std::fs::write(
        dir.join("trust.toml"),
        "[[anchor]]\nfile = \"anchors/bundle.pem\"\nnot_after = \"2030-01-01\"\n",
    )
    .unwrap();
    let err = TrustDirectory::load(&dir).unwrap_err();
    assert!(err.to_string().contains("holds 2 certificates"), "{err}");
}
