//! In a real browser: Debian's headless Chromium with its NSS database, driven by
//! Playwright (`browser-tests/drive.mjs`, which only looks and reports; the checks are
//! here). The doctor's card is a SoftHSM2 token that signs PKCS#1 v1.5 only, registered
//! in NSS as a PKCS#11 module, its certificate issued with the openssl CLI; other cards
//! are software keys imported from PKCS#12. Chromium picks the certificate by the
//! `AutoSelectCertificateForUrls` policy (headless Chromium has no certificate dialog).
//!
//! Needs (deploy/setup.sh, scripts/test.sh): chromium, libnss3-tools, node + `npm ci` in
//! browser-tests/, softhsm2, opensc, openssl; root, to write the policy file under
//! /etc/chromium/policies/managed. Screenshots go to `$HPKI_ARTIFACTS_DIR/browser/`
//! (default `artifacts/` in the repository).

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{listen_addr, run_ok, HPKI_TOKEN_LABEL, SOFTHSM_MODULE};

const USER_PIN: &str = "1234";
const POLICY_DIR: &str = "/etc/chromium/policies/managed";
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where this test's screenshots are kept (CI keeps the directory as artifacts).
fn artifacts(test: &str) -> PathBuf {
    let base = std::env::var_os("HPKI_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("artifacts"));
    let dir = base.join("browser").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `AutoSelectCertificateForUrls` policy for every loopback port, removed on drop.
/// Chromium does not merge a list policy across files (one file wins), so there is one
/// file for all browser tests, and they run one at a time (nextest group `browser`).
struct AutoSelect(PathBuf);

impl AutoSelect {
    fn loopback() -> AutoSelect {
        std::fs::create_dir_all(POLICY_DIR).unwrap_or_else(|e| {
            panic!("cannot create {POLICY_DIR} ({e}): the browser tests run as root")
        });
        let path = Path::new(POLICY_DIR).join("hpki-gateway-tests.json");
        // Every profile holds one client certificate, so an empty filter selects it.
        let rule = json!({"pattern": "https://127.0.0.1:*", "filter": {}}).to_string();
        std::fs::write(
            &path,
            json!({ "AutoSelectCertificateForUrls": [rule] }).to_string(),
        )
        .unwrap();
        AutoSelect(path)
    }
}

impl Drop for AutoSelect {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One browser identity: a HOME with its NSS database (trusting the gateway's server CA)
/// and a Chromium profile directory.
struct Profile {
    home: PathBuf,
    user_data: PathBuf,
    env: Vec<(String, String)>,
}

impl Profile {
    fn new(root: &Path, name: &str, server_ca: &Path) -> Profile {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian's chromium (deploy/setup.sh)"
        );
        let home = root.join(name).join("home");
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        run_ok(
            Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]),
            "certutil -N (libnss3-tools)",
        );
        run_ok(
            Command::new("certutil")
                .args([
                    "-A",
                    "-d",
                    &db,
                    "-n",
                    "gateway-server-ca",
                    "-t",
                    "C,,",
                    "-i",
                ])
                .arg(server_ca),
            "certutil -A (the gateway's server CA)",
        );
        Profile {
            home,
            user_data: root.join(name).join("chromium"),
            env: Vec::new(),
        }
    }

    fn db(&self) -> String {
        format!("sql:{}", self.home.join(".pki/nssdb").display())
    }

    /// A software card: certificate and key from PKCS#12 (made with the openssl CLI).
    fn with_pkcs12(self, p12: &Path, password: &str) -> Profile {
        run_ok(
            Command::new("pk12util")
                .args(["-i"])
                .arg(p12)
                .args(["-d", &self.db(), "-W", password]),
            "pk12util -i",
        );
        // The card is really there, key and all: a page without it is the browser's choice.
        let keys = run_ok(
            Command::new("certutil").args(["-K", "-d", &self.db()]),
            "certutil -K",
        );
        assert!(
            String::from_utf8_lossy(&keys.stdout).contains("rsa"),
            "no private key in the NSS database after importing {}",
            p12.display()
        );
        self
    }

    /// The card behind PKCS#11: NSS loads SoftHSM2 with the token's PKCS#1-only config.
    fn with_token(mut self, token: &Token) -> Profile {
        run_ok(
            Command::new("modutil")
                .args(["-dbdir", &self.db(), "-add", "softhsm2", "-libfile"])
                .arg(SOFTHSM_MODULE)
                .args(["-mechanisms", "FRIENDLY", "-force"])
                .env("SOFTHSM2_CONF", &token.pkcs1_only),
            "modutil -add softhsm2",
        );
        self.env.push((
            "SOFTHSM2_CONF".into(),
            token.pkcs1_only.display().to_string(),
        ));
        self
    }

    /// Runs the steps in Chromium and returns what each showed.
    fn drive(&self, artifacts: &Path, steps: Value) -> Vec<Value> {
        let driver = repo().join("browser-tests");
        assert!(
            driver.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: run `npm ci --prefix browser-tests` (scripts/test.sh does)"
        );
        let mut env = json!({ "HOME": self.home });
        for (k, v) in &self.env {
            env[k] = json!(v);
        }
        let plan = self.home.parent().unwrap().join("plan.json");
        std::fs::write(
            &plan,
            json!({
                "userDataDir": self.user_data,
                "env": env,
                "artifacts": artifacts,
                "steps": steps,
            })
            .to_string(),
        )
        .unwrap();
        let out = Command::new("timeout")
            .args(["-k", "5", "150", "node"])
            .arg(driver.join("drive.mjs"))
            .arg(&plan)
            .current_dir(&driver)
            .stderr(Stdio::piped())
            .output()
            .expect("node (deploy/setup.sh installs nodejs)");
        assert!(
            out.status.success(),
            "browser driver failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "driver output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// The text of a page step, asserting the navigation itself worked.
fn page<'a>(result: &'a Value, what: &str) -> &'a str {
    assert!(
        result["error"].is_null(),
        "{what}: the browser reported {} at {}",
        result["error"],
        result["url"]
    );
    result["text"].as_str().unwrap_or_default()
}

fn assert_shows(text: &str, what: &str, expected: &[&str]) {
    for e in expected {
        assert!(
            text.contains(e),
            "{what}: page lacks {e:?}; it shows:\n{text}"
        );
    }
}

fn assert_screenshot(result: &Value) {
    let path = PathBuf::from(result["path"].as_str().expect("screenshot path"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 2000 && bytes.starts_with(b"\x89PNG"),
        "{} is not a real screenshot ({} bytes)",
        path.display(),
        bytes.len()
    );
}

/// A SoftHSM2 token laid out like an HPKI card whose key Chromium can use headless:
/// headless Chromium has no PIN prompt, so the key is created with CKA_PRIVATE=false
/// (cryptoki can do that; pkcs11-tool cannot). The token still signs PKCS#1 v1.5 only.
struct Token {
    _dir: tempfile::TempDir,
    pkcs1_only: PathBuf,
}

impl Token {
    /// Token with a fresh RSA 2048 key; `issue` gets the public key (PEM) and returns the
    /// certificate (PEM) to write onto the token.
    fn create(issue: impl FnOnce(&Path) -> PathBuf) -> Token {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::mechanism::Mechanism;
        use cryptoki::object::Attribute;
        use cryptoki::session::UserType;
        use cryptoki::types::AuthPin;

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let support::SoftToken {
            all_mechanisms: all,
            pkcs1_only,
        } = support::softhsm_token(d, USER_PIN);
        // SoftHSM reads SOFTHSM2_CONF at C_Initialize; this test process has no other
        // PKCS#11 user and no other thread yet.
        std::env::set_var("SOFTHSM2_CONF", &all);
        let id = vec![0x17u8];
        {
            let p11 = Pkcs11::new(SOFTHSM_MODULE).expect("load SoftHSM2");
            p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                .expect("C_Initialize");
            let slot = p11
                .get_slots_with_token()
                .unwrap()
                .into_iter()
                .find(|s| {
                    p11.get_token_info(*s)
                        .is_ok_and(|t| t.label().trim() == HPKI_TOKEN_LABEL)
                })
                .expect("the token just initialised");
            let session = p11.open_rw_session(slot).unwrap();
            session
                .login(UserType::User, Some(&AuthPin::new(USER_PIN.into())))
                .unwrap();
            session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(false),
                        Attribute::Verify(true),
                        Attribute::ModulusBits(2048.into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                        Attribute::Id(id.clone()),
                        Attribute::Label(b"Private key of HPKI".to_vec()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(false),
                        Attribute::Sensitive(true),
                        Attribute::Sign(true),
                        Attribute::Id(id),
                        Attribute::Label(b"Private key of HPKI".to_vec()),
                    ],
                )
                .expect("C_GenerateKeyPair");
        }
        let pub_pem = support::token_public_key_pem(&all, d);
        let cert = issue(&pub_pem);
        support::write_token_certificate(&all, USER_PIN, &cert);
        // The card the browser sees cannot sign RSA-PSS.
        let mechs = run_ok(
            Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", &pkcs1_only)
                .args(["--module", SOFTHSM_MODULE, "-M"]),
            "pkcs11-tool -M",
        );
        let mechs = String::from_utf8_lossy(&mechs.stdout);
        assert!(
            mechs.contains("RSA-PKCS") && !mechs.contains("PSS"),
            "token should offer PKCS#1 only: {mechs}"
        );
        Token {
            _dir: dir,
            pkcs1_only,
        }
    }
}

/// Issues, with the openssl CLI, an HPKI-shaped authentication certificate for the
/// demo/test doctor (same subject and HPKI id, kanji name in subjectAltName, hcRole
/// "Medical Doctor") for the token's public key, from the PKI's auth-ca.
fn issue_doctor_card(pki_dir: &Path, pub_pem: &Path) -> PathBuf {
    let manifest = pki_tests::Manifest::load(&pki_dir.join("manifest.json")).unwrap();
    let doctor = manifest.leaf("doctor").expect("doctor in manifest").clone();
    let san = pki_tests::der_writer::to_hex(
        &pki_tests::kanji_san_extension_value(
            doctor.org_kanji.as_deref(),
            &doctor.name_kanji,
            &doctor.hpki_id,
        )
        .unwrap(),
    );
    let subject = format!(
        "/C=JP/O={}/CN={}/serialNumber={}",
        doctor.org.as_deref().unwrap_or_default(),
        doctor.name_romaji,
        doctor.hpki_id
    );
    let cert = pub_pem.parent().unwrap().join("card.pem");
    support::AuthCardIssue {
        ca_pem: &pki_dir.join("certs/auth-ca.pem"),
        ca_key: &pki_dir.join("certs/auth-ca.key"),
        subject: &subject,
        serial: "0x4850b1c4a2d1",
        days: 365,
        extra_extensions: &format!(
            "crlDistributionPoints = URI:{}\n2.5.29.17 = DER:{san}\n",
            doctor.crl_distribution_point
        ),
    }
    .issue(pub_pem, &cert);
    cert
}

/// A PKCS#12 file of a test card, made with the openssl CLI.
fn pkcs12(pki_dir: &Path, card: &str, out_dir: &Path) -> PathBuf {
    let out = out_dir.join(format!("{card}.p12"));
    run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-export", "-passout", "pass:test", "-name", card])
            .arg("-in")
            .arg(pki_dir.join(format!("certs/{card}.pem")))
            .arg("-inkey")
            .arg(pki_dir.join(format!("certs/{card}.key")))
            .arg("-out")
            .arg(&out),
        "openssl pkcs12 -export",
    );
    out
}

fn gateway_config(listen: SocketAddr, tls_profile: &str, extra: &str) -> String {
    // The upstream is never reached by these pages; routes need one all the same.
    let upstream: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    support::config(listen, upstream, tls_profile, "optional", extra)
}

#[test]
fn doctor_card_logs_in_over_tls12_and_tls13_finds_no_common_algorithm() {
    let pki = support::pki();
    let pki_dir = pki.dir.join("pki");
    let token = Token::create(|pub_pem| issue_doctor_card(&pki_dir, pub_pem));
    let tmp = tempfile::tempdir().unwrap();
    let shots = artifacts("doctor_card");

    let tls12 = listen_addr();
    let _gw12 = support::Gateway::start(&gateway_config(tls12, "hpki-card", ""), tls12);
    let tls13 = listen_addr();
    let _gw13 = support::Gateway::start(&gateway_config(tls13, "cryptrec-high", ""), tls13);
    let origin12 = format!("https://{tls12}");
    let origin13 = format!("https://{tls13}");
    let _policy = AutoSelect::loopback();

    let doctor = Profile::new(tmp.path(), "doctor", &pki.server_ca()).with_token(&token);
    let r = doctor.drive(
        &shots,
        json!([
            {"goto": format!("{origin12}/_hpki/whoami")},
            {"screenshot": "1-whoami-tls12"},
            {"goto": format!("{origin13}/_hpki/whoami")},
        ]),
    );
    let whoami = page(&r[0], "whoami over TLS 1.2 with the PKCS#1-only card");
    assert_eq!(r[0]["status"], 200, "{whoami}");
    assert_shows(
        whoami,
        "whoami over TLS 1.2",
        &["Medical Doctor", "神楽坂\u{3000}一郎", "Test000001"],
    );
    assert_screenshot(&r[1]);
    let refused = r[2]["error"].as_str().unwrap_or_default();
    assert!(
        refused.contains("ERR_SSL_CLIENT_AUTH_NO_COMMON_ALGORITHMS"),
        "TLS 1.3 with a PKCS#1-only card must fail for want of RSA-PSS, got {:?} ({})",
        r[2]["error"],
        r[2]["text"]
    );
}

#[test]
fn refused_cards_get_the_explanation_page_in_the_browser() {
    let pki = support::pki();
    let pki_dir = pki.dir.join("pki");
    // The dentist's card is revoked on the auth CA's CRL (read at start).
    let now = time::OffsetDateTime::now_utc();
    let crl = pki
        .generated
        .crl(
            "auth-ca",
            &[pki_tests::Revoked {
                cert: "dentist",
                at: now - time::Duration::hours(1),
                reason: Some(rcgen::RevocationReason::KeyCompromise),
            }],
            7,
            now - time::Duration::minutes(5),
            now + time::Duration::days(1),
        )
        .unwrap();
    std::fs::write(pki.trust("hpki-auth").join("crls/auth-ca.crl"), &crl.der).unwrap();
    std::fs::write(pki.served_crl("auth-ca"), &crl.der).unwrap();

    let listen = listen_addr();
    let _gw = support::Gateway::start(
        &gateway_config(
            listen,
            "hpki-card",
            "[[route]]\npath = \"/doctors\"\nupstream = \"http://127.0.0.1:9\"\nallow_roles = [\"Medical Doctor\"]\n",
        ),
        listen,
    );
    let origin = format!("https://{listen}");
    let _policy = AutoSelect::loopback();
    let tmp = tempfile::tempdir().unwrap();
    let shots = artifacts("refused_cards");

    // (card, path, status, code, Japanese title, English title). Chromium filters client
    // certificates before the policy picks one: it never offers an expired certificate
    // or one without digitalSignature, so for those the gateway sees no certificate and
    // the user gets the "insert your card" page, whose advice names both causes (the
    // cert_expired and signing_cert_not_for_login pages are what a client that does
    // present them gets: e2e_tls_identity).
    let cases = [
        (
            "signing-card",
            "/",
            403,
            "client_certificate_required",
            "署名用の証明書しか選べない",
            "only a signing certificate is available",
        ),
        (
            "expired",
            "/",
            403,
            "client_certificate_required",
            "有効期限が切れている",
            "its authentication certificate has expired",
        ),
        (
            "dentist",
            "/",
            403,
            "cert_revoked",
            "このカードの証明書は失効しています",
            "This card's certificate has been revoked",
        ),
        (
            "pharmacist",
            "/doctors/",
            403,
            "role_not_allowed",
            "このページはあなたの資格では利用できません",
            "This page is not available to your profession",
        ),
    ];
    for (card, path, status, code, ja, en) in cases {
        let p12 = pkcs12(&pki_dir, card, tmp.path());
        let profile = Profile::new(tmp.path(), card, &pki.server_ca()).with_pkcs12(&p12, "test");
        let r = profile.drive(
            &shots,
            json!([
                {"goto": format!("{origin}{path}")},
                {"screenshot": card},
            ]),
        );
        let text = page(&r[0], card);
        assert_eq!(r[0]["status"], status, "{card}: {text}");
        assert_shows(text, card, &[ja, en, code]);
        assert_screenshot(&r[1]);
    }
}

/// `hpki-gateway demo`, started from a prepared directory; killed on drop.
struct Demo {
    child: Child,
    port: u16,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(dir: &Path, log: &Path) -> Demo {
        let (port, portal) = (support::free_port(), support::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
            .args(["demo", "--dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--portal-listen", &format!("127.0.0.1:{portal}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "demo did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Demo { child, port }
    }
}

#[test]
fn assistant_entry_waits_for_the_doctor_then_reaches_the_portal_in_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let log = tmp.path().join("demo.log");
    // The first start generates the demo PKI; the doctor's card is issued from it.
    drop(Demo::start(&dir, &log));
    let pki_dir = dir.join("pki");
    let token = Token::create(|pub_pem| issue_doctor_card(&pki_dir, pub_pem));
    let demo = Demo::start(&dir, &log);
    let origin = format!("https://127.0.0.1:{}", demo.port);
    let _policy = AutoSelect::loopback();
    let shots = artifacts("confirmation_flow");
    let server_ca = dir.join("server/server-ca.pem");

    let assistant = Profile::new(tmp.path(), "assistant", &server_ca)
        .with_pkcs12(&pki_dir.join("certs/org-clinic.p12"), "demo");
    let note = "血圧 128/82 再検 / BP 128/82 recheck";
    let r = assistant.drive(
        &shots,
        json!([
            {"goto": format!("{origin}/records")},
            {"screenshot": "1-assistant-form"},
            {"fill": ["input[name=patient]", "P-0042"]},
            {"fill": ["textarea[name=note]", note]},
            {"click": "button[type=submit]"},
            {"screenshot": "2-assistant-held"},
        ]),
    );
    let form = page(&r[0], "the portal's records page for the assistant");
    assert_eq!(r[0]["status"], 200, "{form}");
    assert_shows(form, "records form", &["Patient", "Note"]);
    assert_screenshot(&r[1]);
    let held = page(&r[4], "after submitting the form");
    assert_eq!(r[4]["status"], 202, "{held}");
    assert_shows(
        held,
        "held page",
        &[
            "入力は監督医師の確定待ちです",
            "awaiting a supervising doctor's confirmation",
            "p-",
        ],
    );
    assert_screenshot(&r[5]);

    let doctor = Profile::new(tmp.path(), "doctor", &server_ca).with_token(&token);
    let r = doctor.drive(
        &shots,
        json!([
            {"goto": format!("{origin}/_hpki/pending")},
            {"screenshot": "3-doctor-pending-list"},
            {"click": "a[href^='/_hpki/pending/']"},
            {"screenshot": "4-doctor-reads-entry"},
            {"click": "form[action$='/confirm'] button"},
            {"screenshot": "5-doctor-confirmed"},
            {"goto": format!("{origin}/records")},
            {"screenshot": "6-portal-record"},
        ]),
    );
    let list = page(&r[0], "the doctor's pending list");
    assert_eq!(r[0]["status"], 200, "{list}");
    assert_shows(list, "pending list", &["a-001", "POST", "/records"]);
    let entry = page(&r[2], "the pending entry");
    assert_shows(
        entry,
        "pending entry",
        &["P-0042", "BP 128/82 recheck", "a-001"],
    );
    let confirmed = page(&r[4], "after confirming");
    assert_eq!(r[4]["status"], 200, "{confirmed}");
    assert_shows(
        confirmed,
        "after confirming",
        &[
            "確定済み",
            "confirmed and delivered",
            "神楽坂\u{3000}一郎",
            "201",
        ],
    );
    let records = page(&r[6], "the portal's records after confirmation");
    assert_eq!(r[6]["status"], 200, "{records}");
    assert_shows(
        records,
        "portal records",
        &["P-0042", "BP 128/82 recheck", "a-001", "Test000001"],
    );
    for i in [1, 3, 5, 7] {
        assert_screenshot(&r[i]);
    }
}
