//! Robustness properties of the `pki` core: it must never panic on any input.
//!
//! * arbitrary bytes (raw, PEM-framed, random TLV trees) into the parsers;
//! * the real HPKI certificates from the shared test data with random byte mutations
//!   (flip, overwrite, insert, delete, truncate), and everything a parsed certificate is
//!   fed to afterwards: `read_identity`, `login_problems`, `classify` and `verify_path`
//!   with the mutated certificate as leaf, as presented intermediate and as trust anchor
//!   (only the anchor position gets a mutated certificate past the signature checks, into
//!   the time / basicConstraints / name-constraints / policy checks);
//! * `hc_roles` on arbitrary bytes and on mutations of a real hcRole extension value;
//! * a path-building DoS: 200 presented same-name, same-key CA variants.
//!
//! The real certificates are read at run time from `$HPKI_SHARED_DIR/hpki` (the variable
//! names the directory holding `hpki/`) or `<repo>/../shared/hpki`. CI always has them;
//! a missing directory fails the tests with a message saying so.
//!
//! Case counts are modest (256–512 per property) so the file runs in seconds in debug
//! mode; `PROPTEST_CASES=N` overrides them for a longer local run. The unbounded search
//! is the cargo-fuzz setup in `fuzz/` (see `scripts/fuzz.sh`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hpki_gateway::pki::{
    classify, default_person_policies, hc_roles, login_problems, parse_certificates, read_identity,
    subject_text, verify_path, CertificatePool, KeyPurpose, ParsedCertificate, PathOptions,
    PolicyPrefix, Reason, UnixTime, DEFAULT_MAX_INTERMEDIATES,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// 2026-01-01T00:00:00Z: inside the validity of the root, both MEDIS CAs and the
/// unexpired MEDIS test certificates (to 2027-02-07).
const VALIDATION_TIME: UnixTime = UnixTime(1_767_225_600);

/// The subjectDirectoryAttributes value of a real "Medical Doctor" certificate
/// (shared/hpki/README.md).
const HC_ROLE_DOCTOR_HEX: &str = "303430320606288185420001312831263024A0223120A00C060A2A830886910F01060101A2100C0E4D65646963616C20446F63746F72";

// ---------------------------------------------------------------------------------------
// Seeds: the real HPKI certificates.

struct Seeds {
    root: Arc<ParsedCertificate>,
    auth_ca: Arc<ParsedCertificate>,
    sign_ca: Arc<ParsedCertificate>,
    /// MEDIS signing card, valid at VALIDATION_TIME, chains sign CA → root.
    doctor: Arc<ParsedCertificate>,
    /// Every real certificate, as (file name, DER): the mutation seeds.
    all: Vec<(String, Vec<u8>)>,
    anchors: CertificatePool,
    intermediates: CertificatePool,
}

fn hpki_dir() -> PathBuf {
    let shared = std::env::var_os("HPKI_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("hpki");
    assert!(
        dir.join("ca").is_dir() && dir.join("test-certs").is_dir(),
        "real HPKI certificates not found: {} must hold ca/*.der and test-certs/*.der \
         (set HPKI_SHARED_DIR to the directory holding hpki/; CI always has it)",
        dir.display()
    );
    dir
}

fn read_der_dir(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "der"))
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

fn parse_real(all: &[(String, Vec<u8>)], name: &str) -> Arc<ParsedCertificate> {
    let (_, der) = all
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from the shared HPKI test data"));
    Arc::new(
        ParsedCertificate::from_der(der)
            .unwrap_or_else(|e| panic!("real certificate {name} does not parse: {e}")),
    )
}

fn load_seeds() -> Seeds {
    let dir = hpki_dir();
    let mut all = read_der_dir(&dir.join("ca"));
    all.extend(read_der_dir(&dir.join("test-certs")));
    let root = parse_real(&all, "mhlw-hpki-root-ca-v2.der");
    let auth_ca = parse_real(&all, "medis-auth-ca2-individual.der");
    let sign_ca = parse_real(&all, "medis-sign-ca2.der");
    let doctor = parse_real(&all, "medis-doctor-sanjushi.der");
    let anchors = CertificatePool::from_certs([root.clone()]);
    let intermediates = CertificatePool::from_certs([auth_ca.clone(), sign_ca.clone()]);
    Seeds {
        root,
        auth_ca,
        sign_ca,
        doctor,
        all,
        anchors,
        intermediates,
    }
}

/// The seeds, loaded once. A panic while loading leaves the cell empty (no poisoning),
/// so every test that needs the data fails with the same clear message.
fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(load_seeds)
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("valid hex"))
        .collect()
}

/// Standard base64 with padding, for PEM-framing test inputs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem(der: &[u8]) -> String {
    let body = base64(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `cases` per property, unless `PROPTEST_CASES` is set (then that, for a longer run).
fn config(cases: u32) -> ProptestConfig {
    let cfg = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        cfg
    } else {
        ProptestConfig { cases, ..cfg }
    }
}

// ---------------------------------------------------------------------------------------
// Mutations.

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: Index, bit: u8 },
    Overwrite { at: Index, byte: u8 },
    Insert { at: Index, byte: u8 },
    Delete { at: Index },
    Truncate { at: Index },
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        // DER length and tag edge values.
        prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff]),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        3 => (any::<Index>(), interesting_byte())
            .prop_map(|(at, byte)| Mutation::Overwrite { at, byte }),
        2 => (any::<Index>(), interesting_byte())
            .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        2 => any::<Index>().prop_map(|at| Mutation::Delete { at }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    // Few mutations per case: most inputs should stay close enough to a certificate to
    // parse, or the later stages are never reached.
    prop::collection::vec(mutation(), 1..=3)
}

fn apply(bytes: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        let len = bytes.len();
        match m {
            Mutation::Insert { at, byte } => {
                // Inserting at `len` (the end) is allowed.
                let pos = at.index(len + 1);
                bytes.insert(pos, *byte);
            }
            _ if len == 0 => {}
            Mutation::Flip { at, bit } => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Overwrite { at, byte } => bytes[at.index(len)] = *byte,
            Mutation::Delete { at } => {
                bytes.remove(at.index(len));
            }
            Mutation::Truncate { at } => bytes.truncate(at.index(len)),
        }
    }
}

fn options() -> impl Strategy<Value = PathOptions> {
    let time = prop_oneof![
        4 => Just(VALIDATION_TIME),
        1 => any::<u64>().prop_map(UnixTime),
    ];
    let purpose = prop_oneof![
        Just(KeyPurpose::ClientAuth),
        Just(KeyPurpose::ServerAuth),
        Just(KeyPurpose::Any),
    ];
    (time, purpose, any::<bool>(), 0usize..=8).prop_map(
        |(time, purpose, require_policy, max_intermediates)| {
            let mut opts = PathOptions::new(time, purpose);
            opts.max_intermediates = max_intermediates;
            if require_policy {
                opts.required_policies = default_person_policies();
                opts.required_policies
                    .extend(PolicyPrefix::parse("1.2.392.100495.1.5.1.2.").ok());
            }
            opts
        },
    )
}

/// Everything a parsed certificate is handed to after parsing. Must not panic; checks
/// the few invariants that hold whatever the input.
fn exercise(cert: &Arc<ParsedCertificate>, opts: &PathOptions) {
    let s = seeds();

    if let Ok(identity) = read_identity(cert) {
        let _ = classify(cert, &identity, &default_person_policies(), &[]);
        let _ = identity.role();
    }
    let _ = login_problems(cert);
    let _ = subject_text(cert);
    let _ = cert.serial_hex();
    let _ = cert.not_before().to_rfc3339();
    let _ = cert.not_after().to_rfc3339();
    let _ = cert.key_usage().map(|k| k.names());
    let _ = cert.spki_der();

    // As the leaf, against the real store.
    let empty = CertificatePool::new();
    check_path(
        verify_path(cert, &[], &s.anchors, &s.intermediates, opts),
        cert,
        opts,
    );
    // As leaf with the real CAs presented by the "client" instead of the store.
    let presented = [s.sign_ca.clone(), s.auth_ca.clone(), s.root.clone()];
    check_path(
        verify_path(cert, &presented, &s.anchors, &empty, opts),
        cert,
        opts,
    );
    // As a presented intermediate for a real leaf.
    check_path(
        verify_path(
            &s.doctor,
            std::slice::from_ref(cert),
            &s.anchors,
            &empty,
            opts,
        ),
        &s.doctor,
        opts,
    );
    // As the trust anchor: a mutated root or sign CA that kept its key gets the real
    // chain's signatures verified, so the rest of validation runs on mutated input.
    let anchor = CertificatePool::from_certs([cert.clone()]);
    check_path(
        verify_path(&s.doctor, &[], &anchor, &s.intermediates, opts),
        &s.doctor,
        opts,
    );
}

fn check_path(
    result: Result<hpki_gateway::pki::ValidatedPath, hpki_gateway::pki::PathError>,
    leaf: &Arc<ParsedCertificate>,
    opts: &PathOptions,
) {
    match result {
        Ok(path) => {
            assert!(path.chain.len() >= 2, "a path has a leaf and an anchor");
            assert!(
                path.chain.len() <= opts.max_intermediates + 2,
                "path of {} certificates exceeds max_intermediates {}",
                path.chain.len(),
                opts.max_intermediates
            );
            assert!(path.leaf().same_as(leaf), "path does not start at the leaf");
            let _ = path.anchor();
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.reason.to_string();
        }
    }
}

/// Parses mutated bytes both ways and exercises whatever parses.
fn parse_and_exercise(bytes: &[u8], opts: &PathOptions) {
    let direct = ParsedCertificate::from_der(bytes);
    let via_bundle = parse_certificates(bytes);
    if let (Ok(a), Ok(b)) = (&direct, &via_bundle) {
        assert_eq!(b.len(), 1, "DER input is one certificate");
        assert!(a.same_as(&b[0]), "both parsers read the same certificate");
    }
    if let Ok(cert) = direct {
        assert_eq!(cert.der(), bytes, "der() is exactly the input");
        exercise(&Arc::new(cert), opts);
    }
}

// ---------------------------------------------------------------------------------------
// Random DER-ish trees, for the walkers (hc_roles, der_walk).

fn tlv_tree() -> impl Strategy<Value = Vec<u8>> {
    let tags = || {
        prop_oneof![
            prop::sample::select(vec![
                0x30u8, 0x31, 0x06, 0x0c, 0x13, 0x1e, 0x04, 0x02, 0x05, 0xa0, 0xa1, 0xa2, 0x80,
            ]),
            any::<u8>(),
        ]
    };
    let leaf = (tags(), prop::collection::vec(any::<u8>(), 0..24))
        .prop_map(|(tag, value)| encode_tlv(tag, &value));
    leaf.prop_recursive(4, 48, 4, move |inner| {
        (
            tags(),
            prop::collection::vec(inner, 0..4),
            prop::sample::select(vec![0i8, 0, 0, 0, -1, 1]),
        )
            .prop_map(|(tag, children, skew)| {
                let content: Vec<u8> = children.concat();
                let mut out = encode_tlv(tag, &content);
                // Occasionally lie about the length.
                if skew != 0 && out.len() > 1 {
                    out[1] = out[1].wrapping_add_signed(skew);
                }
                out
            })
    })
}

fn encode_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
    out
}

// ---------------------------------------------------------------------------------------
// (a) arbitrary bytes into the parsers.

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_certificates(&bytes);
        let _ = ParsedCertificate::from_der(&bytes);
    }

    #[test]
    fn arbitrary_der_trees_never_panic(bytes in tlv_tree()) {
        let _ = parse_certificates(&bytes);
        let _ = ParsedCertificate::from_der(&bytes);
        let _ = hc_roles(&bytes);
    }

    #[test]
    fn arbitrary_pem_never_panics(
        label in prop::sample::select(vec!["CERTIFICATE", "X509 CERTIFICATE", "PRIVATE KEY", ""]),
        body in "[A-Za-z0-9+/=\n\r \t-]{0,300}",
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut input = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
            .into_bytes();
        input.extend_from_slice(&tail);
        let _ = parse_certificates(&input);
    }
}

// ---------------------------------------------------------------------------------------
// (b) mutated real certificates, parsed and then used.

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn mutated_real_certificates_never_panic(
        which in any::<Index>(),
        muts in mutations(),
        opts in options(),
    ) {
        let s = seeds();
        let (_, seed) = &s.all[which.index(s.all.len())];
        let mut bytes = seed.clone();
        apply(&mut bytes, &muts);
        parse_and_exercise(&bytes, &opts);
    }

    #[test]
    fn mutated_pem_bundles_never_panic(
        which in any::<Index>(),
        muts in mutations(),
        pem_muts in prop::collection::vec(mutation(), 0..=2),
        opts in options(),
    ) {
        let s = seeds();
        let (_, seed) = &s.all[which.index(s.all.len())];
        let mut der = seed.clone();
        apply(&mut der, &muts);
        // A bundle as a client or operator would hand it over: leaf, then its CAs.
        let mut text = pem(&der);
        text.push_str(&pem(s.sign_ca.der()));
        text.push_str(&pem(s.root.der()));
        let mut input = text.into_bytes();
        apply(&mut input, &pem_muts);
        if let Ok(certs) = parse_certificates(&input) {
            let certs: Vec<Arc<ParsedCertificate>> = certs.into_iter().map(Arc::new).collect();
            for (i, leaf) in certs.iter().enumerate() {
                let _ = read_identity(leaf);
                let _ = login_problems(leaf);
                let presented: Vec<_> = certs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| c.clone())
                    .collect();
                check_path(
                    verify_path(leaf, &presented, &s.anchors, &s.intermediates, &opts),
                    leaf,
                    &opts,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (c) hc_roles.

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn hc_roles_on_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = hc_roles(&bytes);
    }

    #[test]
    fn hc_roles_on_mutated_real_value_never_panics(muts in prop::collection::vec(mutation(), 1..=6)) {
        let mut bytes = hex_decode(HC_ROLE_DOCTOR_HEX);
        apply(&mut bytes, &muts);
        if let Some(roles) = hc_roles(&bytes) {
            // Whatever is read must be bounded by the input.
            let text: usize = roles.iter().map(String::len).sum();
            prop_assert!(text <= bytes.len() * 4, "{} role bytes from {} input bytes", text, bytes.len());
        }
    }
}

#[test]
fn hc_roles_reads_the_real_value_exactly() {
    let value = hex_decode(HC_ROLE_DOCTOR_HEX);
    assert_eq!(
        hc_roles(&value),
        Some(vec!["Medical Doctor".to_owned()]),
        "the real hcRole value of a Medical Doctor certificate"
    );
}

// ---------------------------------------------------------------------------------------
// Seeds are what the mutation properties assume (otherwise they test little).

#[test]
fn seeds_parse_and_the_medis_doctor_validates() {
    let s = seeds();
    assert!(s.all.len() >= 8, "expected 3 CA + 5 test certificates");
    for (name, der) in &s.all {
        let parsed = parse_certificates(der)
            .unwrap_or_else(|e| panic!("real certificate {name} does not parse: {e}"));
        assert_eq!(parsed.len(), 1, "{name}");
        let as_pem = parse_certificates(pem(der).as_bytes())
            .unwrap_or_else(|e| panic!("PEM of {name} does not parse: {e}"));
        assert!(as_pem[0].same_as(&parsed[0]), "{name}: PEM and DER differ");
    }
    let identity = read_identity(&s.doctor).expect("identity of the MEDIS doctor");
    assert_eq!(identity.roles, vec!["Medical Doctor".to_owned()]);
    let opts = PathOptions::new(VALIDATION_TIME, KeyPurpose::Any);
    let path = verify_path(&s.doctor, &[], &s.anchors, &s.intermediates, &opts)
        .expect("the MEDIS doctor certificate chains to the MHLW root");
    assert_eq!(path.chain.len(), 3);
    assert!(path.anchor().same_as(&s.root));
    assert!(
        !login_problems(&s.doctor).is_empty(),
        "a signing card is never usable for login"
    );
}

// ---------------------------------------------------------------------------------------
// Path-building DoS: many presented certificates with the issuer's name and key.

/// `base` with the last two signature bytes changed: same subject, issuer, key ids and
/// key, different bytes (so the pool keeps each one), signature no longer valid.
fn signature_variant(base: &ParsedCertificate, i: u16) -> Arc<ParsedCertificate> {
    let mut der = base.der().to_vec();
    let n = der.len();
    let [hi, lo] = i.to_be_bytes();
    der[n - 2] ^= hi;
    der[n - 1] ^= lo;
    Arc::new(
        ParsedCertificate::from_der(&der)
            .unwrap_or_else(|e| panic!("signature variant {i} does not parse: {e}")),
    )
}

#[test]
fn two_hundred_identical_presented_cas_are_deduplicated() {
    let s = seeds();
    let presented: Vec<_> = (0..200)
        .map(|i| [&s.sign_ca, &s.auth_ca, &s.root][i % 3].clone())
        .collect();
    let opts = PathOptions::new(VALIDATION_TIME, KeyPurpose::Any);
    let empty = CertificatePool::new();
    let path = verify_path(&s.doctor, &presented, &s.anchors, &empty, &opts)
        .expect("copies of the real CAs still make the real path");
    assert_eq!(path.chain.len(), 3);
}

#[test]
fn two_hundred_presented_ca_variants_are_bounded() {
    let s = seeds();
    // Variants of every real CA, the doctor's issuer (sign CA) most often. Each one is
    // a candidate issuer whose key verifies the certificate below it, so without the
    // search bounds every one of them would be explored.
    let presented: Vec<_> = (1..=200u16)
        .map(|i| {
            let base = match i % 4 {
                0 => &s.root,
                1 => &s.auth_ca,
                _ => &s.sign_ca,
            };
            signature_variant(base, i)
        })
        .collect();
    for opts in [
        PathOptions::new(VALIDATION_TIME, KeyPurpose::Any),
        PathOptions::new(VALIDATION_TIME, KeyPurpose::ClientAuth),
    ] {
        // The variants come before the store's real intermediates.
        let result = verify_path(&s.doctor, &presented, &s.anchors, &s.intermediates, &opts);
        match &result {
            Ok(path) => {
                assert!(path.chain.len() <= DEFAULT_MAX_INTERMEDIATES + 2);
                assert!(path.leaf().same_as(&s.doctor));
            }
            Err(e) => {
                // A variant's own signature is broken, so a failing search must say
                // so or say it gave up; never that the chain is untrusted or expired.
                assert!(
                    matches!(e.reason, Reason::BadSignature | Reason::PathTooComplex),
                    "unexpected failure for 200 presented variants: {e}"
                );
            }
        }
        // The real issuer presented after the 200 variants, and the variants as the
        // store's intermediates too: still returns.
        let mut with_real = presented.clone();
        with_real.push(s.sign_ca.clone());
        let pool = CertificatePool::from_certs(presented.iter().cloned());
        assert_eq!(pool.len(), 200, "every variant is a distinct certificate");
        let _ = verify_path(&s.doctor, &with_real, &s.anchors, &pool, &opts);
        // A variant as the leaf, with all the others around.
        let _ = verify_path(&presented[0], &presented[1..], &s.anchors, &pool, &opts);
    }

    // The bound is not so tight that a few stale copies of the issuer sent by a client
    // keep the store's real intermediate from being found.
    let few: Vec<_> = (1..=3u16)
        .map(|i| signature_variant(&s.sign_ca, i))
        .collect();
    let opts = PathOptions::new(VALIDATION_TIME, KeyPurpose::Any);
    let path = verify_path(&s.doctor, &few, &s.anchors, &s.intermediates, &opts)
        .expect("3 broken presented copies of the issuer, real one in the store");
    assert_eq!(path.chain.len(), 3);
    assert!(path.chain[1].same_as(&s.sign_ca));
}
