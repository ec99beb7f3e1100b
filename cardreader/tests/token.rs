//! `hpki-card certs`, `sign` and `doctor` against a real SoftHSM2 token laid out like an
//! HPKI card: token "HPKI Application", key "Private key of HPKI" and certificate
//! "HPKI END ENTITY CERTIFICATE" (both CKA_ID 0x17), the issuing CA as "HPKI CA
//! CERTIFICATE" (0x1B).
//!
//! The key is generated on the token (pkcs11-tool); its certificate is issued by the test
//! PKI's authentication CA (`pki_tests::TestPki`) with the openssl CLI and `-force_pubkey`.
//! The HPKI extensions are added as DER built by `pki_tests::hpki_ext`: hcRole
//! ("Medical Doctor") in subjectDirectoryAttributes, the kanji directoryName in
//! subjectAltName, a critical certificatePolicies with the authentication end-entity
//! policy, keyUsage digitalSignature. So the certificate is HPKI-shaped, not just a CN.
//!
//! Every test has its own token directory and SOFTHSM2_CONF, and runs the binary as a
//! child process with that config (SoftHSM reads it once per process). The "card that
//! signs PKCS#1 v1.5 only" is the same token under a second config hiding the PSS
//! mechanisms (and raw RSA). OpenSC's pkcs11-spy sits between the binary and SoftHSM where
//! a test must count the PKCS#11 calls (no login for `certs`, exactly one for a wrong PIN).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
const TOKEN: &str = "HPKI Application";
const PIN: &str = "1234";
const BIN: &str = env!("CARGO_BIN_EXE_hpki-card");
const HIDE_PSS: &str = "slots.mechanisms = -,CKM_RSA_PKCS_PSS,CKM_SHA1_RSA_PKCS_PSS,CKM_SHA224_RSA_PKCS_PSS,CKM_SHA256_RSA_PKCS_PSS,CKM_SHA384_RSA_PKCS_PSS,CKM_SHA512_RSA_PKCS_PSS,CKM_RSA_X_509";

struct Card {
    dir: tempfile::TempDir,
    /// Unrestricted config (PSS offered).
    conf: PathBuf,
    /// PKCS#1 v1.5 only, like a real HPKI card.
    pkcs1_conf: PathBuf,
    pub_pem: PathBuf,
    /// A trust directory with the test root only (the CA certificate is on the token).
    trust: PathBuf,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tool(conf: &Path, program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("SOFTHSM2_CONF", conf);
    c
}

fn write_object(card: &Card, file: &Path, id: &str, label: &str) {
    run(tool(&card.conf, "pkcs11-tool").args([
        "--module",
        MODULE,
        "--token-label",
        TOKEN,
        "--login",
        "--pin",
        PIN,
        "--write-object",
        file.to_str().unwrap(),
        "--type",
        "cert",
        "--id",
        id,
        "--label",
        label,
    ]));
}

fn card() -> Card {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("tokens")).unwrap();
    let base = format!(
        "directories.tokendir = {}/tokens\nobjectstore.backend = file\nslots.removable = false\nlog.level = ERROR\n",
        d.display()
    );
    let conf = d.join("softhsm2.conf");
    let pkcs1_conf = d.join("softhsm2-pkcs1.conf");
    std::fs::write(&conf, &base).unwrap();
    std::fs::write(&pkcs1_conf, format!("{base}{HIDE_PSS}\n")).unwrap();

    run(tool(&conf, "softhsm2-util").args([
        "--init-token",
        "--free",
        "--label",
        TOKEN,
        "--so-pin",
        "12345678",
        "--pin",
        PIN,
    ]));
    run(tool(&conf, "pkcs11-tool").args([
        "--module",
        MODULE,
        "--token-label",
        TOKEN,
        "--login",
        "--pin",
        PIN,
        "--keypairgen",
        "--key-type",
        "rsa:2048",
        "--id",
        "17",
        "--label",
        "Private key of HPKI",
    ]));
    let pub_der = d.join("pub.der");
    run(tool(&conf, "pkcs11-tool").args([
        "--module",
        MODULE,
        "--token-label",
        TOKEN,
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        "17",
        "-o",
        pub_der.to_str().unwrap(),
    ]));
    let pub_pem = d.join("pub.pem");
    run(Command::new("openssl").args([
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        pub_der.to_str().unwrap(),
        "-out",
        pub_pem.to_str().unwrap(),
    ]));

    // The test PKI: root -> auth-ca, written as PEM files with keys.
    let pki = pki_tests::TestPki::generate(&pki_tests::GenerateOptions::default()).unwrap();
    let pki_dir = d.join("pki");
    pki.write_to(&pki_dir).unwrap();
    let ca_pem = pki_dir.join("certs/auth-ca.pem");
    let ca_key = pki_dir.join("certs/auth-ca.key");
    let root_pem = pki_dir.join("certs/root.pem");
    let trust = d.join("trust");
    std::fs::create_dir_all(trust.join("anchors")).unwrap();
    std::fs::copy(&root_pem, trust.join("anchors/root.pem")).unwrap();

    // An HPKI-shaped authentication certificate for the token's key.
    let hex = pki_tests::der_writer::to_hex;
    let role = pki_tests::hpki_ext::hc_role_extension_value(&["Medical Doctor"]);
    let san = pki_tests::hpki_ext::kanji_san_extension_value(
        Some("医療情報大学病院"),
        "神楽坂\u{3000}三十四",
        "Test117120",
    )
    .unwrap();
    let policies = pki_tests::hpki_ext::certificate_policies_value(
        &[pki_tests::profile::policy::AUTH_END_ENTITY],
        None,
    )
    .unwrap();
    let ext = d.join("ext.cnf");
    std::fs::write(
        &ext,
        format!(
            "keyUsage = critical,digitalSignature\n\
             2.5.29.32 = critical,DER:{}\n\
             2.5.29.17 = DER:{}\n\
             2.5.29.9 = DER:{}\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n",
            hex(&policies),
            hex(&san),
            hex(&role)
        ),
    )
    .unwrap();
    let csr = d.join("ee.csr");
    run(Command::new("openssl").args([
        "req",
        "-new",
        "-key",
        ca_key.to_str().unwrap(),
        "-subj",
        "/C=JP/O=MEDIS UNIVERSITY HOSPITAL/CN=Sanjushi Kagurazaka/serialNumber=Test117120",
        "-out",
        csr.to_str().unwrap(),
    ]));
    let cert_pem = d.join("ee.pem");
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca_pem.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-force_pubkey",
        pub_pem.to_str().unwrap(),
        "-set_serial",
        "0x1234",
        "-days",
        "365",
        "-sha256",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert_pem.to_str().unwrap(),
    ]));
    let card = Card {
        dir,
        conf,
        pkcs1_conf,
        pub_pem,
        trust,
    };
    write_object(&card, &cert_pem, "17", "HPKI END ENTITY CERTIFICATE");
    write_object(&card, &ca_pem, "1b", "HPKI CA CERTIFICATE");
    card
}

/// Runs `hpki-card ARGS` with `conf`, `stdin` as standard input. With `spy_log`, the
/// module is pkcs11-spy logging every PKCS#11 call to that file.
fn hpki_card(conf: &Path, args: &[&str], stdin: &[u8], spy_log: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("SOFTHSM2_CONF", conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match spy_log {
        Some(log) => {
            cmd.args(["--module", SPY])
                .env("PKCS11SPY", MODULE)
                .env("PKCS11SPY_OUTPUT", log);
        }
        None => {
            cmd.args(["--module", MODULE]);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How many times `call` (e.g. "C_Login") appears as a call in a pkcs11-spy log.
fn spy_calls(log: &Path, call: &str) -> usize {
    let log = std::fs::read_to_string(log).unwrap();
    log.lines()
        .filter(|l| l.split_whitespace().any(|w| w == call))
        .count()
}

fn verify(card: &Card, sig: &Path, data: &Path, pss: bool) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256"]);
    if pss {
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sigopt",
            "rsa_mgf1_md:sha256",
        ]);
    }
    cmd.args([
        "-verify",
        card.pub_pem.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    let out = cmd.output().unwrap();
    out.status.success() && text(&out.stdout).contains("Verified OK")
}

#[test]
fn certs_lists_the_hpki_certificate_without_a_pin() {
    let card = card();
    let log = card.dir.path().join("spy-certs.log");
    let out = hpki_card(&card.conf, &["certs", "--json"], b"", Some(&log));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("PIN"), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token"], TOKEN);
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2, "{v:#}");
    let ee = certs
        .iter()
        .find(|c| c["label"] == "HPKI END ENTITY CERTIFICATE")
        .unwrap_or_else(|| panic!("no end-entity certificate in {v:#}"));
    assert_eq!(ee["id"], "17");
    assert_eq!(
        ee["identity"]["roles"],
        serde_json::json!(["Medical Doctor"])
    );
    assert_eq!(ee["identity"]["name"], "Sanjushi Kagurazaka");
    assert_eq!(ee["identity"]["name_kanji"], "神楽坂\u{3000}三十四");
    assert_eq!(ee["identity"]["org_kanji"], "医療情報大学病院");
    assert_eq!(ee["identity"]["hpki_id"], "Test117120");
    assert_eq!(ee["usage"], "login");
    assert_eq!(ee["usable_for_login"], true);
    assert_eq!(ee["valid_now"], true);
    let ca = certs
        .iter()
        .find(|c| c["label"] == "HPKI CA CERTIFICATE")
        .unwrap();
    assert_eq!(ca["id"], "1b");
    assert_eq!(ca["usage"], "ca");
    assert_eq!(ca["usable_for_login"], false);
    // Reading certificates needs no PIN: no login happened at all.
    assert!(
        spy_calls(&log, "C_FindObjectsInit") >= 1,
        "spy log not written"
    );
    assert_eq!(spy_calls(&log, "C_Login"), 0);

    // The text form says the same things.
    let out = hpki_card(&card.conf, &["certs"], b"", None);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    for want in [
        "label \"HPKI END ENTITY CERTIFICATE\" id 17",
        "role:     Medical Doctor",
        "Sanjushi Kagurazaka / 神楽坂\u{3000}三十四",
        "hpki id:  Test117120",
        "usage:    login (authentication)",
    ] {
        assert!(t.contains(want), "{want:?} not in\n{t}");
    }
}

#[test]
fn sign_with_pin_from_stdin_verifies_with_the_certificate_key() {
    let card = card();
    let data = card.dir.path().join("doc.txt");
    std::fs::write(&data, "処方箋 2026-11-22\n").unwrap();
    let sig = card.dir.path().join("doc.sig");
    let args = [
        "sign",
        "--in",
        data.to_str().unwrap(),
        "--out",
        sig.to_str().unwrap(),
        "--pin-fd",
        "0",
    ];
    let out = hpki_card(&card.conf, &args, b"1234\n", None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&sig).unwrap().len(), 256);
    assert!(verify(&card, &sig, &data, false));
    // The check can fail: another message does not verify.
    let other = card.dir.path().join("other.txt");
    std::fs::write(&other, "something else\n").unwrap();
    assert!(!verify(&card, &sig, &other, false));

    // Without --out: base64 on stdout, same (deterministic) PKCS#1 v1.5 signature.
    let out = hpki_card(
        &card.conf,
        &["sign", "--in", data.to_str().unwrap(), "--pin-fd", "0"],
        b"1234\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let b64 = base64::engine::general_purpose::STANDARD
        .decode(text(&out.stdout).trim())
        .unwrap();
    assert_eq!(b64, std::fs::read(&sig).unwrap());
}

#[test]
fn sign_pss_when_the_token_offers_it() {
    let card = card();
    let data = card.dir.path().join("doc.txt");
    std::fs::write(&data, "pss please\n").unwrap();
    let sig = card.dir.path().join("doc.sig");
    let args = [
        "sign",
        "--pss",
        "--key-id",
        "17",
        "--in",
        data.to_str().unwrap(),
        "--out",
        sig.to_str().unwrap(),
        "--pin-fd",
        "0",
    ];
    let out = hpki_card(&card.conf, &args, b"1234\n", None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(verify(&card, &sig, &data, true));
    assert!(!verify(&card, &sig, &data, false), "PSS, not PKCS#1 v1.5");
}

#[test]
fn wrong_pin_is_reported_and_never_retried() {
    let card = card();
    let data = card.dir.path().join("doc.txt");
    std::fs::write(&data, "x").unwrap();
    let log = card.dir.path().join("spy-login.log");
    let out = hpki_card(
        &card.conf,
        &["sign", "--in", data.to_str().unwrap(), "--pin-fd", "0"],
        b"9999\n1234\n",
        Some(&log),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("wrong PIN"), "{err}");
    assert!(err.contains("PINが違います"), "{err}");
    // SoftHSM raises CKF_USER_PIN_COUNT_LOW after a failure; the message says so.
    assert!(err.contains("few tries"), "{err}");
    assert!(out.stdout.is_empty());
    // Exactly one login attempt, even though a correct PIN followed on the pipe.
    assert_eq!(spy_calls(&log, "C_Login"), 1);
    assert_eq!(spy_calls(&log, "C_Sign"), 0);

    // The token is not locked: the next, correct, login works.
    let out = hpki_card(
        &card.conf,
        &["sign", "--in", data.to_str().unwrap(), "--pin-fd", "0"],
        b"1234\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn doctor_on_a_pkcs1_only_card_advises_tls12() {
    let card = card();
    let trust = card.trust.to_str().unwrap();
    let out = hpki_card(&card.pkcs1_conf, &["doctor", "--trust", trust], b"", None);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{t}\n{}", text(&out.stderr));
    let line = |topic: &str| {
        t.lines()
            .find(|l| l.contains(&format!("[{topic}]")))
            .unwrap_or_else(|| panic!("no [{topic}] line in\n{t}"))
            .to_string()
    };
    let pss = line("rsa-pss");
    assert!(pss.starts_with("問題/PROBLEM"), "{pss}");
    assert!(pss.contains("no RSA-PSS"), "{pss}");
    assert!(pss.contains("PKCS#1 v1.5 only"), "{pss}");
    assert!(pss.contains("use a TLS 1.2 listener"), "{pss}");
    assert!(pss.contains("`hpki-card` tls_profile"), "{pss}");
    assert!(pss.contains("RSA-PSS に対応していません"), "{pss}");
    assert!(pss.contains("TLS 1.2 のリスナー"), "{pss}");
    // The PKCS#11 checks ran whatever pcscd said.
    assert!(line("module").starts_with("OK"));
    assert!(line("token").starts_with("OK"));
    let cert = t
        .lines()
        .find(|l| l.contains("[certificate]") && l.contains("HPKI END ENTITY CERTIFICATE"))
        .unwrap();
    assert!(
        cert.starts_with("OK") && cert.contains("days left"),
        "{cert}"
    );
    let chain = line("chain");
    assert!(chain.starts_with("OK"), "{chain}");
    // Whatever pcscd says, it is a line of its own.
    assert!(line("pcscd").starts_with("OK") || line("pcscd").starts_with("問題/PROBLEM"));

    // The same token with PSS offered: that line is OK.
    let out = hpki_card(
        &card.conf,
        &["doctor", "--trust", trust, "--json"],
        b"",
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let pss = checks.iter().find(|c| c["topic"] == "rsa-pss").unwrap();
    assert_eq!(pss["ok"], true, "{v:#}");

    // A trust directory without the test root: the chain line is a problem.
    let other = card.dir.path().join("other-trust/anchors");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(
        card.dir.path().join("pki/certs/root-g2.pem"),
        other.join("root-g2.pem"),
    )
    .unwrap();
    let other = card.dir.path().join("other-trust");
    let out = hpki_card(
        &card.conf,
        &["doctor", "--trust", other.to_str().unwrap()],
        b"",
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    let chain = t.lines().find(|l| l.contains("[chain]")).unwrap();
    assert!(chain.starts_with("問題/PROBLEM"), "{chain}");
}

#[test]
fn sign_pss_on_a_pkcs1_only_card_says_mechanism_not_offered() {
    let card = card();
    let data = card.dir.path().join("doc.txt");
    std::fs::write(&data, "x").unwrap();
    let log = card.dir.path().join("spy-pss.log");
    let out = hpki_card(
        &card.pkcs1_conf,
        &[
            "sign",
            "--pss",
            "--in",
            data.to_str().unwrap(),
            "--pin-fd",
            "0",
        ],
        b"1234\n",
        Some(&log),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("mechanism not offered"), "{err}");
    assert!(err.contains("CKM_RSA_PKCS_PSS"), "{err}");
    assert!(out.stdout.is_empty());
    // Refused before the PIN is used.
    assert_eq!(spy_calls(&log, "C_Login"), 0);

    // The mechanism list says why; PKCS#1 v1.5 still signs.
    let out = hpki_card(
        &card.pkcs1_conf,
        &["certs", "--mechanisms", "--json"],
        b"",
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mechs: Vec<&str> = v["mechanisms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(mechs.contains(&"CKM_RSA_PKCS"), "{mechs:?}");
    assert!(!mechs.contains(&"CKM_RSA_PKCS_PSS"), "{mechs:?}");
    assert_eq!(v["rsa_pss"], false);
    let sig = card.dir.path().join("doc.sig");
    let out = hpki_card(
        &card.pkcs1_conf,
        &[
            "sign",
            "--in",
            data.to_str().unwrap(),
            "--out",
            sig.to_str().unwrap(),
            "--pin-fd",
            "0",
        ],
        b"1234\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(verify(&card, &sig, &data, false));
}

#[test]
fn sign_digest_signs_the_given_sha256_on_a_pkcs1_only_card() {
    let card = card();
    let data = card.dir.path().join("confirmation.txt");
    std::fs::write(&data, "HPKI-GATEWAY-CONFIRMATION-V1\nentry-id: p-1\n").unwrap();
    // The digest as another program computes it (what the gateway's page shows).
    let sum = run(Command::new("sha256sum").arg(&data));
    let digest = text(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let sig = card.dir.path().join("digest.sig");
    let out = hpki_card(
        &card.pkcs1_conf,
        &[
            "sign",
            "--digest",
            &digest,
            "--out",
            sig.to_str().unwrap(),
            "--pin-fd",
            "0",
        ],
        b"1234\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A PKCS#1 v1.5 signature over the file, as `openssl dgst -sha256 -verify` sees it.
    assert!(verify(&card, &sig, &data, false));
    // The same signature as signing the file itself; uppercase hex is the same digest.
    let out = hpki_card(
        &card.pkcs1_conf,
        &["sign", "--digest", &digest.to_uppercase(), "--pin-fd", "0"],
        b"1234\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let b64 = base64::engine::general_purpose::STANDARD
        .decode(text(&out.stdout).trim())
        .unwrap();
    assert_eq!(b64, std::fs::read(&sig).unwrap());

    // Bad input: not a SHA-256, both or neither of --in / --digest (exit 2, before any PIN).
    let out = hpki_card(
        &card.conf,
        &["sign", "--digest", "abc123", "--pin-fd", "0"],
        b"",
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is not a SHA-256"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        &["sign", "--digest", &digest, "--in", data.to_str().unwrap()][..],
        &["sign", "--pin-fd", "0"][..],
    ] {
        let out = hpki_card(&card.conf, args, b"", None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn certs_pem_prints_the_token_certificates_end_entity_first() {
    let card = card();
    let out = hpki_card(&card.conf, &["certs", "--pem"], b"", None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pem = text(&out.stdout);
    assert_eq!(
        pem.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{pem}"
    );
    assert!(
        pem.starts_with(
            "# label \"HPKI END ENTITY CERTIFICATE\" id 17\n-----BEGIN CERTIFICATE-----\n"
        ),
        "{pem}"
    );
    // OpenSSL reads the first block (the end entity) through the comment line.
    let file = card.dir.path().join("certs.pem");
    std::fs::write(&file, &pem).unwrap();
    let subject = run(Command::new("openssl").args([
        "x509",
        "-in",
        file.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]));
    assert!(
        text(&subject.stdout).contains("serialNumber=Test117120"),
        "{}",
        text(&subject.stdout)
    );
    // Its public key is the token's.
    let pubkey = run(Command::new("openssl").args([
        "x509",
        "-in",
        file.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]));
    assert_eq!(
        text(&pubkey.stdout),
        std::fs::read_to_string(&card.pub_pem).unwrap()
    );
}
