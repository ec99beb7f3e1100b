//! The supervising doctor's HPKI signature on a held write's confirmation
//! (`[confirm] require_signature`), end to end with real peers only:
//!
//! - the signing CA hierarchy (root → signing CA) is run by the **openssl CLI** (`openssl
//!   ca`: issue, revoke, gencrl), its certificates HPKI-shaped (subject serialNumber = the
//!   HPKI id, keyUsage critical nonRepudiation, certificatePolicies critical
//!   1.2.392.100495.1.5.1.1.0.1, hcRole);
//! - each signing card is a **SoftHSM2** token whose key pair is generated on the token
//!   by pkcs11-tool; its certificate request is signed by the token key through OpenSSL's
//!   pkcs11 engine, and the certificate is written back onto the token;
//! - the doctor signs with the real **`hpki-card sign --digest`** binary (PIN on standard
//!   input), and pastes what **`hpki-card certs --pem`** prints;
//! - the real `hpki-gateway` binary, curl as the browsers, a recording upstream, and
//!   **`openssl dgst -verify` / `openssl verify`** to check what reached the portal and
//!   the `pending export` bundle (its VERIFY.txt commands are run as written).
//!
//! Cards of the test PKI (`pki_tests`): `org-clinic` is the assistant's organization card;
//! `doctor` (Test000001) and `dentist` (Test000003) supervise. The `hpki-card` binary is
//! the workspace's `target/<profile>/hpki-card` (build it with `cargo build -p
//! hpki-cardreader`, as `scripts/test.sh` does, or set HPKI_CARD_BIN).

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hpki_gateway::store::{PendingState, Store};
use support::workflow::{
    block_on, csrf, decide, entry, gateway_store, held_write_config, hold_form, json, seed_clinic,
};
use support::{
    curl, error_code, free_port, pkcs11_tool, run_ok, text, Gateway, Upstream, SOFTHSM_MODULE,
};

const ASSISTANT: &str = "org-clinic";
const PIN: &str = "1234";
const KEY_URI: &str = "pkcs11:token=HPKI%20Application;id=%17;type=private?pin-value=1234";

fn sha256_hex(bytes: &[u8]) -> String {
    hpki_gateway::pki::name::hex(&hpki_gateway::pki::sha256(bytes))
}

// ---------------------------------------------------------------------------------------
// The signing CA: OpenSSL's `ca` command
// ---------------------------------------------------------------------------------------

/// A root and a signing CA kept by `openssl ca`, and the gateway's trust directory for
/// them (`kind = "signing"`): anchors/, intermediates/, crls/.
struct SigningPki {
    dir: PathBuf,
    trust: PathBuf,
}

/// One `openssl ca` configuration; the extension sections are the HPKI shapes.
fn ca_config(dir: &Path) -> String {
    let role =
        pki_tests::der_writer::to_hex(&pki_tests::hc_role_extension_value(&["Medical Doctor"]));
    format!(
        "[ ca ]\ndefault_ca = this_ca\n\
         [ this_ca ]\ndir = {d}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n\
         serial = $dir/serial\ncrlnumber = $dir/crlnumber\ncertificate = $dir/ca.pem\n\
         private_key = $dir/ca.key\ndefault_md = sha256\ndefault_days = 1825\n\
         default_crl_days = 30\npolicy = hpki_policy\npreserve = yes\nunique_subject = no\n\
         copy_extensions = none\ncrl_extensions = crl_ext\n\
         [ hpki_policy ]\ncountryName = optional\norganizationName = optional\n\
         commonName = supplied\nserialNumber = optional\n\
         [ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n\
         [ root_ext ]\nbasicConstraints = critical, CA:true\n\
         keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\n\
         [ sign_ca_ext ]\nbasicConstraints = critical, CA:true, pathlen:0\n\
         keyUsage = critical, keyCertSign, cRLSign\n\
         certificatePolicies = critical, 1.2.392.100495.1.5.1.1.3.1\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n\
         [ sign_ee_ext ]\nkeyUsage = critical, nonRepudiation\n\
         certificatePolicies = critical, 1.2.392.100495.1.5.1.1.0.1\n\
         2.5.29.9 = DER:{role}\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n",
        d = dir.display()
    )
}

impl SigningPki {
    fn create(base: &Path) -> SigningPki {
        let dir = base.join("signing-ca");
        for ca in ["root", "sign"] {
            let d = dir.join(ca);
            std::fs::create_dir_all(d.join("newcerts")).unwrap();
            std::fs::write(d.join("index.txt"), "").unwrap();
            std::fs::write(d.join("serial"), "1000\n").unwrap();
            std::fs::write(d.join("crlnumber"), "1000\n").unwrap();
            std::fs::write(d.join("ca.cnf"), ca_config(&d)).unwrap();
        }
        let pki = SigningPki {
            trust: base.join("trust-hpki-sign"),
            dir,
        };
        for (ca, subject) in [
            ("root", "/C=JP/O=Test HPKI/CN=Test HPKI Root CA"),
            (
                "sign",
                "/C=JP/O=Test HPKI/CN=Test HPKI Signing CA forNonRepudiation",
            ),
        ] {
            let d = pki.dir.join(ca);
            run_ok(
                Command::new("openssl")
                    .args([
                        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                    ])
                    .arg("-keyout")
                    .arg(d.join("ca.key"))
                    .arg("-out")
                    .arg(d.join("ca.csr")),
                "openssl req (CA key and request)",
            );
        }
        let root = pki.dir.join("root");
        run_ok(
            Command::new("openssl")
                .args([
                    "ca",
                    "-batch",
                    "-notext",
                    "-selfsign",
                    "-extensions",
                    "root_ext",
                ])
                .arg("-config")
                .arg(root.join("ca.cnf"))
                .arg("-keyfile")
                .arg(root.join("ca.key"))
                .arg("-in")
                .arg(root.join("ca.csr"))
                .arg("-out")
                .arg(root.join("ca.pem")),
            "openssl ca -selfsign (root)",
        );
        let sign = pki.dir.join("sign");
        run_ok(
            Command::new("openssl")
                .args(["ca", "-batch", "-notext", "-extensions", "sign_ca_ext"])
                .arg("-config")
                .arg(root.join("ca.cnf"))
                .arg("-in")
                .arg(sign.join("ca.csr"))
                .arg("-out")
                .arg(sign.join("ca.pem")),
            "openssl ca (signing CA)",
        );
        for sub in ["anchors", "intermediates", "crls"] {
            std::fs::create_dir_all(pki.trust.join(sub)).unwrap();
        }
        std::fs::copy(root.join("ca.pem"), pki.trust.join("anchors/root.pem")).unwrap();
        std::fs::copy(
            sign.join("ca.pem"),
            pki.trust.join("intermediates/sign-ca.pem"),
        )
        .unwrap();
        pki.publish_crls();
        pki
    }

    fn ca_pem(&self, ca: &str) -> PathBuf {
        self.dir.join(ca).join("ca.pem")
    }

    /// `openssl ca` issues a signing (nonRepudiation) certificate for a request.
    fn issue(&self, csr: &Path, out: &Path) {
        run_ok(
            Command::new("openssl")
                .args(["ca", "-batch", "-notext", "-extensions", "sign_ee_ext"])
                .arg("-config")
                .arg(self.dir.join("sign/ca.cnf"))
                .arg("-in")
                .arg(csr)
                .arg("-out")
                .arg(out),
            "openssl ca (signing certificate)",
        );
    }

    fn revoke(&self, cert: &Path) {
        run_ok(
            Command::new("openssl")
                .args(["ca", "-crl_reason", "keyCompromise"])
                .arg("-config")
                .arg(self.dir.join("sign/ca.cnf"))
                .arg("-revoke")
                .arg(cert),
            "openssl ca -revoke",
        );
        self.publish_crls();
    }

    /// Both CAs' CRLs (`openssl ca -gencrl`) into the profile's crls/.
    fn publish_crls(&self) {
        for ca in ["root", "sign"] {
            run_ok(
                Command::new("openssl")
                    .args(["ca", "-gencrl"])
                    .arg("-config")
                    .arg(self.dir.join(ca).join("ca.cnf"))
                    .arg("-out")
                    .arg(self.trust.join("crls").join(format!("{ca}.crl.pem"))),
                "openssl ca -gencrl",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A signing card: a SoftHSM2 token
// ---------------------------------------------------------------------------------------

/// A signing card: its own SoftHSM2 token directory and config, key id 0x17 generated on
/// the token, its certificate (and the signing CA's) on the token.
struct SigningCard {
    dir: PathBuf,
    softhsm_conf: PathBuf,
    openssl_conf: PathBuf,
    /// The certificate on the token.
    cert: PathBuf,
}

impl SigningCard {
    /// A token for the card holder `hpki_id`, a key pair generated on it, and a signing
    /// certificate for that key from the signing CA (written back onto the token).
    fn create(base: &Path, name: &str, pki: &SigningPki, hpki_id: &str, cn: &str) -> SigningCard {
        let dir = base.join(name);
        let softhsm_conf = support::softhsm_token(&dir, PIN).all_mechanisms;
        run_ok(
            pkcs11_tool(&softhsm_conf)
                .args([
                    "--login",
                    "--pin",
                    PIN,
                    "--keypairgen",
                    "--key-type",
                    "rsa:2048",
                ])
                .args(["--id", "17", "--label", "Private key of HPKI"]),
            "pkcs11-tool --keypairgen",
        );
        let openssl_conf = support::openssl_pkcs11_conf(&dir);
        let card = SigningCard {
            cert: dir.join("signing-cert.pem"),
            dir,
            softhsm_conf,
            openssl_conf,
        };
        card.certify(pki, hpki_id, cn, &card.cert);
        support::write_token_certificate(&card.softhsm_conf, PIN, &card.cert);
        run_ok(
            pkcs11_tool(&card.softhsm_conf)
                .args(["--login", "--pin", PIN, "--write-object"])
                .arg(pki.ca_pem("sign"))
                .args([
                    "--type",
                    "cert",
                    "--id",
                    "1b",
                    "--label",
                    "HPKI CA CERTIFICATE",
                ]),
            "pkcs11-tool --write-object (CA certificate)",
        );
        card
    }

    /// Another signing certificate for the token's key: a request signed by the token
    /// key through OpenSSL's pkcs11 engine, issued by `openssl ca`.
    fn certify(&self, pki: &SigningPki, hpki_id: &str, cn: &str, out: &Path) {
        let csr = self.dir.join(format!(
            "{}.csr",
            out.file_stem().unwrap().to_string_lossy()
        ));
        run_ok(
            Command::new("openssl")
                .env("OPENSSL_CONF", &self.openssl_conf)
                .env("SOFTHSM2_CONF", &self.softhsm_conf)
                .args(["req", "-new", "-engine", "pkcs11", "-keyform", "engine"])
                .args(["-key", KEY_URI])
                .args([
                    "-subj",
                    &format!("/C=JP/O=Test Clinic/CN={cn}/serialNumber={hpki_id}"),
                ])
                .arg("-out")
                .arg(&csr),
            "openssl req -engine pkcs11 (request signed by the token key)",
        );
        pki.issue(&csr, out);
    }

    /// `hpki-card sign --digest HEX --pin-fd 0`: the signature, base64, as printed.
    fn sign_digest(&self, digest_hex: &str) -> String {
        let mut child = Command::new(hpki_card_bin())
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .args(["sign", "--module", SOFTHSM_MODULE, "--digest", digest_hex])
            .args(["--pin-fd", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run hpki-card");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PIN}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "hpki-card sign --digest failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    }

    /// `hpki-card certs --pem`: what the doctor pastes as the signing certificate.
    fn certs_pem(&self) -> String {
        let out = run_ok(
            Command::new(hpki_card_bin())
                .env("SOFTHSM2_CONF", &self.softhsm_conf)
                .args(["certs", "--pem", "--module", SOFTHSM_MODULE]),
            "hpki-card certs --pem",
        );
        text(&out.stdout)
    }
}

fn hpki_card_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HPKI_CARD_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test>-<hash> → target/<profile>/hpki-card
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("hpki-card"))
        .unwrap();
    assert!(
        bin.exists(),
        "the hpki-card binary is not at {} (build it: `cargo build -p hpki-cardreader`, or \
         set HPKI_CARD_BIN)",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------------------------------
// The gateway with signatures required
// ---------------------------------------------------------------------------------------

struct World {
    base: PathBuf,
    pki: SigningPki,
    /// The doctor's (Test000001) signing card.
    doctor: SigningCard,
}

impl World {
    fn create(name: &str) -> World {
        let base = support::pki()
            .dir
            .join(format!("signed-{name}-{}", free_port()));
        std::fs::create_dir_all(&base).unwrap();
        let pki = SigningPki::create(&base);
        let doctor = SigningCard::create(
            &base,
            "card-doctor",
            &pki,
            "Test000001",
            "Ichiro Kagurazaka",
        );
        World { base, pki, doctor }
    }
}

struct Env {
    gw: Gateway,
    upstream: Upstream,
    store: Arc<dyn Store>,
}

fn start(world: &World, store_url: Option<&str>, env: &[(&str, &str)]) -> Env {
    let upstream = Upstream::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config_text = held_write_config(
        addr,
        upstream.addr,
        store_url,
        &format!(
            r#"
[[trust]]
name = "hpki-sign"
dir = "{trust}"
kind = "signing"
require_policies = ["1.2.392.100495.1.5.1.1"]

[confirm]
require_signature = true

[timeouts]
upstream_response = "2s"
"#,
            trust = world.pki.trust.display(),
        ),
    );
    let gw = Gateway::start_with_env(&config_text, addr, env);
    let store = gateway_store(&gw);
    seed_clinic(&*store, &["doctor", "dentist"]);
    Env {
        gw,
        upstream,
        store,
    }
}

/// The doctor's view of an entry: the confirmation text (also downloaded, byte for
/// byte the same) and its SHA-256.
fn confirmation_of(gw: &Gateway, id: &str) -> (String, String) {
    let r = entry(gw, "doctor", id);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    let c = &v["confirmation"];
    assert_eq!(c["signature_required"], true, "{v}");
    let text = c["text"].as_str().unwrap().to_owned();
    let digest = c["digest_sha256"].as_str().unwrap().to_owned();
    assert_eq!(digest, sha256_hex(text.as_bytes()));
    assert_eq!(
        c["sign_command"],
        format!("hpki-card sign --digest {digest}")
    );
    let url = format!("/_hpki/pending/{id}/confirmation.txt");
    assert_eq!(c["text_url"], url.as_str());
    let download = curl(gw, Some("doctor"), &url, &["-D", "/dev/stderr"]);
    assert_eq!(download.status, 200, "{}", download.body);
    assert_eq!(download.body, text, "the download is the text");
    let head = download.stderr.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    (text, digest)
}

/// A confirm post with the signature fields (urlencoded form, JSON answer).
fn confirm_signed(
    gw: &Gateway,
    id: &str,
    signature: &str,
    certificate: &str,
) -> support::CurlResult {
    let token = csrf(gw, "doctor");
    decide(
        gw,
        "doctor",
        id,
        "confirm",
        &[
            ("csrf", &token),
            ("signature", signature),
            ("certificate", certificate),
        ],
    )
}

/// A refusal: its code, the entry still pending, nothing forwarded, and a durable audit
/// record of the refusal with the code.
fn assert_refused(e: &Env, id: &str, r: &support::CurlResult, code: &str, status: u16) {
    assert_eq!(error_code(&r.body).as_deref(), Some(code), "{}", r.body);
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(
        block_on(e.store.pending(id)).unwrap().unwrap().state,
        PendingState::Pending,
        "a refused confirmation leaves the entry pending"
    );
    assert!(
        e.upstream.take().is_empty(),
        "nothing forwarded after {code}"
    );
    let record =
        e.gw.audit_record(|r| {
            r["event"] == "confirm_refused"
                && r["reason"] == code
                && r["detail"].as_str().is_some_and(|d| d.contains(id))
        })
        .unwrap_or_else(|| panic!("no confirm_refused audit record with {code} for {id}"));
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["hpki_id"], "Test000001");
    assert_eq!(record["assistant_id"], "a-001");
}

/// `X-HPKI-Confirmation-Signature: v1; digest=sha256:<hex>; sig=<b64>; cert=<b64 DER>`.
fn parse_signature_header(value: &str) -> (String, Vec<u8>, Vec<u8>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let parts: Vec<&str> = value.split("; ").collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "v1", "{value}");
    let digest = parts[1].strip_prefix("digest=sha256:").unwrap().to_owned();
    let sig = b64.decode(parts[2].strip_prefix("sig=").unwrap()).unwrap();
    let cert = b64.decode(parts[3].strip_prefix("cert=").unwrap()).unwrap();
    (digest, sig, cert)
}

/// `openssl dgst -sha256 -verify` of `sig` over `data` with the key of `cert_der`.
fn openssl_verifies(dir: &Path, cert_der: &[u8], data: &[u8], sig: &[u8]) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cert.der"), cert_der).unwrap();
    std::fs::write(dir.join("data"), data).unwrap();
    std::fs::write(dir.join("sig.bin"), sig).unwrap();
    run_ok(
        Command::new("openssl")
            .current_dir(dir)
            .args([
                "x509", "-inform", "DER", "-in", "cert.der", "-noout", "-pubkey",
            ])
            .args(["-out", "pub.pem"]),
        "openssl x509 -pubkey",
    );
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.bin",
            "data",
        ])
        .output()
        .unwrap();
    out.status.success() && text(&out.stdout).contains("Verified OK")
}

/// The signed flow that succeeds: held, signed on the card, confirmed, forwarded once
/// with the signature header, which OpenSSL verifies over the text.
fn signed_confirmation_is_forwarded(world: &World, e: &Env, as_json: bool) -> String {
    let id = hold_form(
        &e.gw,
        ASSISTANT,
        "/records?visit=7",
        "note=%E5%8F%97%E8%A8%BA&dose=2",
    );
    let (text, digest) = confirmation_of(&e.gw, &id);
    assert!(text.starts_with("HPKI-GATEWAY-CONFIRMATION-V1\n"), "{text}");
    assert!(text.contains(&format!("\nentry-id: {id}\n")), "{text}");
    assert!(text.contains("\nmethod: POST\n"), "{text}");
    assert!(text.contains("\npath: /records?visit=7\n"), "{text}");
    assert!(
        text.contains("\ncontent-type: application/x-www-form-urlencoded\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nbody-sha256: {}\n",
            sha256_hex(b"note=%E5%8F%97%E8%A8%BA&dose=2")
        )),
        "{text}"
    );
    assert!(text.contains("\nassistant: a-001\n"), "{text}");
    assert!(text.contains("\ndoctor: Test000001\n"), "{text}");
    assert!(text.ends_with("Z\n"), "{text}");

    let signature = world.doctor.sign_digest(&digest);
    let certificate = world.doctor.certs_pem();
    assert!(
        certificate.matches("-----BEGIN CERTIFICATE-----").count() == 2,
        "hpki-card certs --pem prints the token's certificates: {certificate}"
    );
    let r = if as_json {
        // A program posts the same fields as a JSON object.
        let body = serde_json::json!({
            "csrf": csrf(&e.gw, "doctor"),
            "signature": signature,
            "certificate": certificate,
        });
        curl(
            &e.gw,
            Some("doctor"),
            &format!("/_hpki/pending/{id}/confirm"),
            &[
                "-H",
                "Accept: application/json",
                "-H",
                "Content-Type: application/json",
                "--data",
                &body.to_string(),
            ],
        )
    } else {
        confirm_signed(&e.gw, &id, &signature, &certificate)
    };
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["state"], "forwarded", "{v}");
    assert_eq!(
        v["confirmation_signature"]["digest"],
        format!("sha256:{digest}")
    );

    let got = e.upstream.take();
    assert_eq!(got.len(), 1, "forwarded once: {got:?}");
    let header = got[0]
        .header("x-hpki-confirmation-signature")
        .unwrap_or_else(|| panic!("no signature header in {:?}", got[0].headers));
    let (h_digest, sig, cert) = parse_signature_header(header);
    assert_eq!(h_digest, digest);
    assert_eq!(
        cert,
        hpki_gateway::pki::parse_certificates(&std::fs::read(&world.doctor.cert).unwrap()).unwrap()
            [0]
        .der(),
        "the header carries the signing certificate"
    );
    assert_eq!(got[0].header("x-hpki-confirmed-by"), Some("Test000001"));
    let check = world.base.join(format!("check-{id}"));
    assert!(
        openssl_verifies(&check, &cert, text.as_bytes(), &sig),
        "openssl does not verify the forwarded signature over the text"
    );
    // The check can fail: another text does not verify.
    assert!(!openssl_verifies(
        &check,
        &cert,
        text.replace("Test000001", "Test000002").as_bytes(),
        &sig
    ));
    let confirm =
        e.gw.audit_record(|r| {
            r["event"] == "confirm" && r["detail"].as_str().is_some_and(|d| d.contains(&id))
        })
        .expect("confirm audit record");
    let detail = confirm["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("digest sha256:{digest}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("signing certificate sha256:{}", sha256_hex(&cert))),
        "{detail}"
    );
    id
}

/// `hpki-gateway pending export`, then every `openssl` command of VERIFY.txt run as
/// written in the bundle directory, each output checked against its `expected:` line.
fn export_verifies_with_openssl(gw: &Gateway, id: &str, out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(["pending", "export", id, "--out"])
        .arg(out)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    let summary = text(&run.stdout);
    assert!(summary.contains("files written"), "{summary}");
    for file in [
        "confirmation.txt",
        "signature.bin",
        "signature.b64",
        "signing-cert.pem",
        "ca-chain.pem",
        "anchor.pem",
        "intermediates.pem",
        "body.bin",
        "entry.json",
        "VERIFY.txt",
    ] {
        assert!(out.join(file).is_file(), "{file} missing: {summary}");
        assert!(summary.contains(file), "{file} not reported: {summary}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("entry.json")).unwrap()).unwrap();
    assert_eq!(meta["entry"]["id"], id);
    assert_eq!(meta["confirmation"]["doctor_hpki_id"], "Test000001");
    assert_eq!(meta["signer"]["hpki_id"], "Test000001");
    assert_eq!(meta["ca_chain"].as_array().unwrap().len(), 2);

    let verify = std::fs::read_to_string(out.join("VERIFY.txt")).unwrap();
    let lines: Vec<&str> = verify.lines().collect();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("openssl ") {
            continue;
        }
        let result = Command::new("sh")
            .current_dir(out)
            .args(["-c", line])
            .output()
            .unwrap();
        let output = format!("{}{}", text(&result.stdout), text(&result.stderr));
        assert!(result.status.success(), "{line}\n{output}");
        if let Some(expected) = lines
            .get(i + 1)
            .and_then(|l| l.trim().strip_prefix("expected: "))
        {
            assert_eq!(output.trim(), expected, "{line}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "three checks with expected output:\n{verify}");
    // The checks can fail: a body that is not the held one does not match its line.
    std::fs::write(out.join("body.bin"), b"changed").unwrap();
    let redo = Command::new("openssl")
        .current_dir(out)
        .args(["dgst", "-sha256", "-r", "body.bin"])
        .output()
        .unwrap();
    assert!(!verify.contains(text(&redo.stdout).trim()), "{verify}");
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn signed_confirmations_on_sqlite_every_refusal_and_the_export() {
    let world = World::create("sqlite");
    // The dentist (Test000003) also supervises a-001 and holds a valid signing card.
    let dentist = SigningCard::create(
        &world.base,
        "card-dentist",
        &world.pki,
        "Test000003",
        "Saburo Kagurazaka",
    );
    // A second signing certificate for the doctor's own key, revoked by the CA; the
    // gateway reads the CRL from the signing profile's crls/ at start.
    let revoked = world.base.join("card-doctor/revoked-cert.pem");
    world
        .doctor
        .certify(&world.pki, "Test000001", "Ichiro Kagurazaka", &revoked);
    world.pki.revoke(&revoked);
    let e = start(&world, None, &[]);

    let id = hold_form(&e.gw, ASSISTANT, "/records", "dose=3");
    let (confirmation_text, digest) = confirmation_of(&e.gw, &id);
    // The doctor's page shows the text, the digest, how to sign, and asks for both fields.
    let page = curl(&e.gw, Some("doctor"), &format!("/_hpki/pending/{id}"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    for want in [
        &format!("hpki-card sign --digest {digest}"),
        &format!("/_hpki/pending/{id}/confirmation.txt"),
        "HPKI-GATEWAY-CONFIRMATION-V1",
        "name=\"signature\"",
        "name=\"certificate\"",
        "name=\"csrf\"",
        "hpki-card certs --pem",
    ] {
        assert!(
            page.body.contains(want),
            "{want} not on the page:\n{}",
            page.body
        );
    }
    assert!(!page.body.contains("<script"), "{}", page.body);
    // The assistant sees the entry but gets no text to sign.
    let mine = json(&entry(&e.gw, ASSISTANT, &id));
    assert!(mine["confirmation"].is_null(), "{mine}");
    let r = curl(
        &e.gw,
        Some(ASSISTANT),
        &format!("/_hpki/pending/{id}/confirmation.txt"),
        &["-H", "Accept: application/json"],
    );
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("not_supervisor"),
        "{}",
        r.body
    );

    // 1. No signature at all: the old one-click confirm is refused.
    let token = csrf(&e.gw, "doctor");
    let r = decide(&e.gw, "doctor", &id, "confirm", &[("csrf", &token)]);
    assert_refused(&e, &id, &r, "signature_required", 400);
    let html = curl(
        &e.gw,
        Some("doctor"),
        &format!("/_hpki/pending/{id}/confirm"),
        &["--data-urlencode", &format!("csrf={token}")],
    );
    assert!(
        html.body.contains("signature_required") && html.body.contains("署名"),
        "{}",
        html.body
    );

    // 2. The doctor's authentication certificate (digitalSignature, the login card) with
    //    a valid signature by its key: not a signing certificate.
    let auth_sig_file = world.base.join("auth.sig");
    let text_file = world.base.join("text.txt");
    std::fs::write(&text_file, &confirmation_text).unwrap();
    run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(support::pki().key("doctor"))
            .arg("-out")
            .arg(&auth_sig_file)
            .arg(&text_file),
        "openssl dgst -sign (authentication key)",
    );
    let auth_sig =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&auth_sig_file).unwrap());
    let auth_cert = std::fs::read_to_string(support::pki().cert("doctor")).unwrap();
    let r = confirm_signed(&e.gw, &id, &auth_sig, &auth_cert);
    assert_refused(&e, &id, &r, "signing_cert_untrusted", 403);
    assert!(r.body.contains("key_usage_not_for_signing"), "{}", r.body);

    // 3. Another doctor's signing card (a valid signature over this text, a valid
    //    certificate, but Test000003 is not the logged-in Test000001).
    let r = confirm_signed(
        &e.gw,
        &id,
        &dentist.sign_digest(&digest),
        &dentist.certs_pem(),
    );
    assert_refused(&e, &id, &r, "signer_not_doctor", 403);
    assert!(r.body.contains("Test000003"), "{}", r.body);

    // 4. The doctor's key, but a revoked certificate for it.
    let signature = world.doctor.sign_digest(&digest);
    let r = confirm_signed(
        &e.gw,
        &id,
        &signature,
        &std::fs::read_to_string(&revoked).unwrap(),
    );
    assert_refused(&e, &id, &r, "signing_cert_revoked", 403);
    assert!(r.body.contains("keyCompromise"), "{}", r.body);

    // 5. A signature that is not base64, and a good signature under a certificate whose
    //    key did not make it.
    let r = confirm_signed(&e.gw, &id, "not base64!", &world.doctor.certs_pem());
    assert_refused(&e, &id, &r, "signature_invalid", 403);
    let r = confirm_signed(&e.gw, &id, &signature, &dentist.certs_pem());
    assert_refused(&e, &id, &r, "signature_invalid", 403);

    // 6. Signed, then the stored entry is changed behind the gateway's back: the text
    //    rebuilt from the store no longer verifies.
    let db = e.gw.config.parent().unwrap().join("var/hpki-gateway.db");
    let out = run_ok(
        Command::new("sqlite3").arg(&db).arg(format!(
            "UPDATE pending_writes SET body = CAST('dose=30' AS BLOB) WHERE id = '{id}'; \
             SELECT changes();"
        )),
        "sqlite3 UPDATE (tamper with the held body)",
    );
    assert_eq!(text(&out.stdout).trim(), "1");
    let r = confirm_signed(&e.gw, &id, &signature, &world.doctor.certs_pem());
    assert_refused(&e, &id, &r, "signature_invalid", 403);
    assert!(r.body.contains("changed after it was signed"), "{}", r.body);
    // The path too.
    run_ok(
        Command::new("sqlite3").arg(&db).arg(format!(
            "UPDATE pending_writes SET body = CAST('dose=3' AS BLOB), path_and_query = '/records/other' WHERE id = '{id}'"
        )),
        "sqlite3 UPDATE (tamper with the held path)",
    );
    let r = confirm_signed(&e.gw, &id, &signature, &world.doctor.certs_pem());
    assert_refused(&e, &id, &r, "signature_invalid", 403);
    // Put back as held: the same signature confirms it.
    run_ok(
        Command::new("sqlite3").arg(&db).arg(format!(
            "UPDATE pending_writes SET path_and_query = '/records' WHERE id = '{id}'"
        )),
        "sqlite3 UPDATE (restore)",
    );
    let r = confirm_signed(&e.gw, &id, &signature, &world.doctor.certs_pem());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["state"], "forwarded");
    let got = e.upstream.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_head, b"dose=3");

    // The whole successful flow on a fresh entry, then its evidence bundle.
    let signed = signed_confirmation_is_forwarded(&world, &e, false);
    export_verifies_with_openssl(&e.gw, &signed, &world.base.join("bundle"));

    // Export refusals: an unknown id, an entry without a signature, an entry changed in
    // the store after it was confirmed.
    let export = |id: &str, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
            .args(["pending", "export", id, "--out"])
            .arg(out)
            .arg("--config")
            .arg(&e.gw.config)
            .output()
            .unwrap()
    };
    let unknown = export("p-nope", &world.base.join("bundle-unknown"));
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("no held write \"p-nope\""),
        "{}",
        text(&unknown.stderr)
    );
    let unsigned = hold_form(&e.gw, ASSISTANT, "/records", "later=1");
    let out = export(&unsigned, &world.base.join("bundle-unsigned"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("carries no doctor's signature"),
        "{}",
        text(&out.stderr)
    );
    run_ok(
        Command::new("sqlite3").arg(&db).arg(format!(
            "UPDATE pending_writes SET body = CAST('x' AS BLOB) WHERE id = '{signed}'"
        )),
        "sqlite3 UPDATE (tamper after confirmation)",
    );
    let tampered_dir = world.base.join("bundle-tampered");
    let out = export(&signed, &tampered_dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("changed after the confirmation"),
        "{}",
        text(&out.stderr)
    );
    assert!(!tampered_dir.join("VERIFY.txt").exists(), "nothing written");
    // An existing, non-empty directory is never written into.
    let out = export(&id, &world.base.join("bundle"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn signed_confirmation_on_postgres_and_the_export() {
    let url = support::postgres::fresh_database();
    let world = World::create("postgres");
    let e = start(&world, Some(&url), &[]);
    let id = signed_confirmation_is_forwarded(&world, &e, true);
    export_verifies_with_openssl(&e.gw, &id, &world.base.join("bundle"));
}

#[test]
fn a_signed_confirmation_forwarded_after_a_crash_still_carries_its_signature() {
    let world = World::create("crash");
    let mut e = start(
        &world,
        None,
        &[("HPKI_GATEWAY_FAILPOINT", "pause-after-claim")],
    );
    let id = hold_form(&e.gw, ASSISTANT, "/records", "crash=1");
    let (_, digest) = confirmation_of(&e.gw, &id);
    let token = csrf(&e.gw, "doctor");
    // The claim (with the signature) is committed, then the gateway stops...
    let r = curl(
        &e.gw,
        Some("doctor"),
        &format!("/_hpki/pending/{id}/confirm"),
        &[
            "--max-time",
            "3",
            "--data-urlencode",
            &format!("csrf={token}"),
            "--data-urlencode",
            &format!("signature={}", world.doctor.sign_digest(&digest)),
            "--data-urlencode",
            &format!("certificate={}", world.doctor.certs_pem()),
        ],
    );
    assert_eq!(
        r.status, 0,
        "the failpoint should have stopped the answer: {}",
        r.body
    );
    let claimed = block_on(e.store.pending(&id)).unwrap().unwrap();
    assert_eq!(claimed.state, PendingState::Forwarding);
    assert!(
        claimed.signature.is_some(),
        "the signature is stored with the claim"
    );
    // ...and dies; the restarted gateway forwards it after the lease, signature and all.
    e.gw.kill9();
    let config = std::fs::read_to_string(&e.gw.config).unwrap();
    let restarted = Gateway::start(&config, e.gw.addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        got = e.upstream.take();
    }
    assert_eq!(got.len(), 1, "{}", restarted.log_text());
    let (h_digest, sig, cert) = parse_signature_header(
        got[0]
            .header("x-hpki-confirmation-signature")
            .expect("the recovered forward carries the signature"),
    );
    assert_eq!(h_digest, digest);
    let text = block_on(e.store.pending(&id))
        .unwrap()
        .unwrap()
        .confirmation_text("Test000001")
        .unwrap();
    assert!(openssl_verifies(
        &world.base.join("check-crash"),
        &cert,
        text.as_bytes(),
        &sig
    ));
}

#[test]
fn check_config_refuses_required_signatures_without_a_signing_profile() {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = support::pki()
        .dir
        .join(format!("check-config-{}", listen.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        support::config(
            listen,
            listen,
            "hpki-card",
            "required",
            "\n[confirm]\nrequire_signature = true\n",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("confirm.require_signature"), "{err}");
    assert!(err.contains("kind = \"signing\""), "{err}");
    assert!(err.contains("or set require_signature = false"), "{err}");
}
