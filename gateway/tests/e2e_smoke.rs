//! Smoke test of the end-to-end harness: the real binary serves a doctor.

mod support;

#[test]
fn doctor_reaches_the_upstream_with_identity_headers() {
    let (gw, upstream) = support::gateway("hpki-card", "optional");
    let r = support::curl(&gw, Some("doctor"), "/", &[]);
    assert_eq!(r.status, 200, "{} {}\n{}", r.body, r.stderr, gw.log_text());
    assert_eq!(r.body, "upstream ok");
    let seen = upstream.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-hpki-role"), Some("Medical Doctor"));
    assert_eq!(seen[0].header("x-hpki-id"), Some("Test000001"));
}
