//! PKCS#11: the HPKI token, its certificates, PIN login and signing.
//!
//! The module is the card vendor's HPKI middleware (a `.so`/`.dll` the user installs with
//! the card; pass its path with `--module`). The default is SoftHSM2's module, which the
//! tests use as a stand-in card laid out like an HPKI card (token `HPKI Application`,
//! key `Private key of HPKI` and certificate `HPKI END ENTITY CERTIFICATE`, both id 0x17).
//!
//! The PIN is read from the terminal without echo, or from a file descriptor
//! (`--pin-fd N`, one line; `--pin-fd 0` is standard input). Never from argv or the
//! environment. A failed login is never retried: an HPKI card locks after 15 wrong PINs.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use hpki_gateway::pki::{
    login_problems, name, read_identity, signing_problems, CertIdentity, ParsedCertificate,
    UnixTime,
};
use serde_json::{json, Value};

/// SoftHSM2's module: the tests' card. A real card needs its vendor's HPKI middleware.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The token label of an HPKI card's application.
pub const DEFAULT_TOKEN: &str = "HPKI Application";
/// CKA_ID of the HPKI end-entity key and certificate.
pub const HPKI_KEY_ID: u8 = 0x17;
/// DER DigestInfo prefix for SHA-256 (CKM_RSA_PKCS signs DigestInfo || digest).
pub const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Where the token is: the PKCS#11 module and the token label.
#[derive(Args, Clone, Debug)]
pub struct TokenOpts {
    /// PKCS#11 module: the HPKI middleware of your card (path from its vendor).
    #[arg(long, default_value = DEFAULT_MODULE)]
    pub module: PathBuf,
    /// Token label.
    #[arg(long = "token", default_value = DEFAULT_TOKEN)]
    pub token: String,
}

#[derive(Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub token: TokenOpts,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Also list the token's mechanisms (and whether it signs RSA-PSS).
    #[arg(long)]
    pub mechanisms: bool,
    /// Print the certificates as PEM (end-entity first), to paste where a certificate is
    /// asked for (the gateway's confirmation form) or to give to OpenSSL.
    #[arg(long, conflicts_with_all = ["json", "mechanisms"])]
    pub pem: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["input", "digest"])))]
pub struct SignArgs {
    #[command(flatten)]
    pub token: TokenOpts,
    /// The file to sign (SHA-256 is computed here, the card signs the digest).
    #[arg(long = "in")]
    pub input: Option<PathBuf>,
    /// Sign this SHA-256 digest (64 hex digits) as it is, e.g. the digest of a
    /// confirmation text the gateway's page shows.
    #[arg(long, value_name = "HEX")]
    pub digest: Option<String>,
    /// Write the raw signature here (default: base64 on standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sign RSA-PSS (SHA-256, MGF1-SHA256, salt 32) instead of PKCS#1 v1.5.
    #[arg(long)]
    pub pss: bool,
    /// The private key's CKA_ID in hex (default: the only key, or 17).
    #[arg(long, conflicts_with = "label")]
    pub key_id: Option<String>,
    /// The private key's CKA_LABEL.
    #[arg(long)]
    pub label: Option<String>,
    /// Read the PIN (one line) from this file descriptor instead of the terminal
    /// (0 = standard input).
    #[arg(long)]
    pub pin_fd: Option<u32>,
}

/// How many PIN tries the token says remain (from its CKF_USER_PIN_* flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinTries {
    /// The token does not say.
    Unknown,
    /// CKF_USER_PIN_COUNT_LOW: at least one wrong PIN was entered.
    Low,
    /// CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks the card.
    FinalTry,
}

/// What went wrong, by meaning.
#[derive(Debug)]
pub enum TokenError {
    ModuleLoad { path: PathBuf, detail: String },
    TokenNotFound { label: String, present: Vec<String> },
    WrongPin { tries: PinTries },
    PinLocked,
    TokenRemoved { detail: String },
    MechanismNotOffered { mechanism: String },
    KeyNotFound { selector: String },
    AmbiguousKey { count: usize },
    PinInput { detail: String },
    Input { detail: String },
    Pkcs11 { op: &'static str, detail: String },
}

impl TokenError {
    /// Maps a PKCS#11 error of `op` to its meaning.
    pub fn from_ck(op: &'static str, e: CkError) -> TokenError {
        match e {
            CkError::Pkcs11(rv, _) => match rv {
                RvError::PinIncorrect => TokenError::WrongPin {
                    tries: PinTries::Unknown,
                },
                RvError::PinLocked => TokenError::PinLocked,
                RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed => TokenError::TokenRemoved {
                    detail: format!("{op}: {rv}"),
                },
                RvError::MechanismInvalid => TokenError::MechanismNotOffered {
                    mechanism: format!("({op})"),
                },
                other => TokenError::Pkcs11 {
                    op,
                    detail: other.to_string(),
                },
            },
            other => TokenError::Pkcs11 {
                op,
                detail: other.to_string(),
            },
        }
    }

    /// 2 for bad input (arguments, files, module path), 1 for everything the card said.
    pub fn exit_code(&self) -> i32 {
        match self {
            TokenError::ModuleLoad { .. } | TokenError::Input { .. } => crate::EXIT_BAD_INPUT,
            _ => crate::EXIT_PROBLEM,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::ModuleLoad { path, detail } => write!(
                f,
                "PKCS#11 モジュールを読み込めません / cannot load the PKCS#11 module {}: {detail}. \
                 カードのHPKIミドルウェアのパスを --module で指定してください / \
                 pass the path of your card's HPKI middleware with --module",
                path.display()
            ),
            TokenError::TokenNotFound { label, present } => write!(
                f,
                "トークン \"{label}\" が見つかりません / token \"{label}\" not found \
                 (tokens present / 見つかったトークン: {}). カードがリーダーに挿さっているか確認してください / \
                 check that the card is in the reader",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present
                        .iter()
                        .map(|l| format!("\"{l}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            TokenError::WrongPin { tries } => {
                write!(f, "PINが違います / wrong PIN (CKR_PIN_INCORRECT).")?;
                match tries {
                    PinTries::FinalTry => write!(
                        f,
                        " 次に間違えるとカードがロックされます / one more wrong PIN locks the card."
                    )?,
                    PinTries::Low => write!(
                        f,
                        " 残り回数が少なくなっています / few tries are left before the card locks."
                    )?,
                    PinTries::Unknown => write!(
                        f,
                        " 残り回数はトークンから分かりません / the token does not say how many tries are left \
                         (HPKI cards lock after 15 wrong PINs)."
                    )?,
                }
                write!(
                    f,
                    " 自動で再試行はしません / not retried automatically."
                )
            }
            TokenError::PinLocked => write!(
                f,
                "PINがロックされています / the PIN is locked (CKR_PIN_LOCKED): \
                 カードの発行元（認証局）にロック解除を依頼してください / \
                 ask the card's issuer (the CA) to unlock it"
            ),
            TokenError::TokenRemoved { detail } => write!(
                f,
                "操作中にカードが抜かれました / the card was removed during the operation ({detail}): \
                 カードを挿し直してやり直してください / reinsert the card and try again"
            ),
            TokenError::MechanismNotOffered { mechanism } => write!(
                f,
                "このカードは {mechanism} に対応していません / mechanism not offered by the token: {mechanism}. \
                 PKCS#1 v1.5 で署名してください (--pss なし) / sign PKCS#1 v1.5 (without --pss)"
            ),
            TokenError::KeyNotFound { selector } => write!(
                f,
                "秘密鍵が見つかりません / no private key matches {selector} on the token"
            ),
            TokenError::AmbiguousKey { count } => write!(
                f,
                "秘密鍵が{count}個あり選べません / {count} private keys on the token: choose one with --key-id or --label"
            ),
            TokenError::PinInput { detail } => {
                write!(f, "PINを読み取れません / cannot read the PIN: {detail}")
            }
            TokenError::Input { detail } => write!(f, "{detail}"),
            TokenError::Pkcs11 { op, detail } => {
                write!(f, "PKCS#11 エラー / PKCS#11 error in {op}: {detail}")
            }
        }
    }
}

impl std::error::Error for TokenError {}

/// A certificate object on the token.
#[derive(Debug, Clone)]
pub struct TokenCert {
    pub label: String,
    pub id: Vec<u8>,
    pub der: Vec<u8>,
}

impl TokenCert {
    pub fn parse(&self) -> Result<ParsedCertificate, String> {
        ParsedCertificate::from_der(&self.der).map_err(|e| e.detail)
    }
}

/// An opened PKCS#11 module with the token found by label.
pub struct Token {
    pkcs11: Pkcs11,
    pub slot: Slot,
    pub label: String,
}

impl Token {
    /// Loads the module, initializes it and finds the token by label.
    pub fn open(opts: &TokenOpts) -> Result<Token, TokenError> {
        let pkcs11 = load_module(&opts.module)?;
        let slots = pkcs11
            .get_slots_with_token()
            .map_err(|e| TokenError::from_ck("C_GetSlotList", e))?;
        let mut present = Vec::new();
        for slot in slots {
            let info = match pkcs11.get_token_info(slot) {
                Ok(i) => i,
                Err(_) => continue,
            };
            let label = info.label().trim_end().to_string();
            if label == opts.token {
                return Ok(Token {
                    pkcs11,
                    slot,
                    label,
                });
            }
            present.push(label);
        }
        Err(TokenError::TokenNotFound {
            label: opts.token.clone(),
            present,
        })
    }

    pub fn token_info(&self) -> Result<cryptoki::slot::TokenInfo, TokenError> {
        self.pkcs11
            .get_token_info(self.slot)
            .map_err(|e| TokenError::from_ck("C_GetTokenInfo", e))
    }

    pub fn mechanisms(&self) -> Result<Vec<MechanismType>, TokenError> {
        self.pkcs11
            .get_mechanism_list(self.slot)
            .map_err(|e| TokenError::from_ck("C_GetMechanismList", e))
    }

    /// Whether the token offers CKM_RSA_PKCS_PSS (what TLS 1.3 client auth needs).
    pub fn signs_pss(&self) -> Result<bool, TokenError> {
        Ok(self.mechanisms()?.contains(&MechanismType::RSA_PKCS_PSS))
    }

    fn session(&self) -> Result<Session, TokenError> {
        self.pkcs11
            .open_ro_session(self.slot)
            .map_err(|e| TokenError::from_ck("C_OpenSession", e))
    }

    /// The certificate objects, read without a PIN.
    pub fn certificates(&self) -> Result<Vec<TokenCert>, TokenError> {
        let session = self.session()?;
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
            .map_err(|e| TokenError::from_ck("C_FindObjects", e))?;
        let mut out = Vec::new();
        for h in handles {
            let attrs = session
                .get_attributes(
                    h,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::Value,
                    ],
                )
                .map_err(|e| TokenError::from_ck("C_GetAttributeValue", e))?;
            let mut cert = TokenCert {
                label: String::new(),
                id: Vec::new(),
                der: Vec::new(),
            };
            for a in attrs {
                match a {
                    Attribute::Label(l) => cert.label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(i) => cert.id = i,
                    Attribute::Value(v) => cert.der = v,
                    _ => {}
                }
            }
            out.push(cert);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id).then(a.label.cmp(&b.label)));
        Ok(out)
    }

    /// Logs in once with `pin` (never retried) and signs the SHA-256 of `data`.
    pub fn sign(
        &self,
        pin: &AuthPin,
        key: &KeySelector,
        data: &[u8],
        pss: bool,
    ) -> Result<Vec<u8>, TokenError> {
        self.sign_digest(pin, key, &hpki_gateway::pki::sha256(data), pss)
    }

    /// Logs in once with `pin` (never retried) and signs a SHA-256 digest: PKCS#1 v1.5 is
    /// CKM_RSA_PKCS over the DER DigestInfo of the digest (what HPKI cards offer), PSS is
    /// CKM_RSA_PKCS_PSS over the digest.
    pub fn sign_digest(
        &self,
        pin: &AuthPin,
        key: &KeySelector,
        digest: &[u8; 32],
        pss: bool,
    ) -> Result<Vec<u8>, TokenError> {
        let session = self.session()?;
        if let Err(e) = session.login(UserType::User, Some(pin)) {
            let mut err = TokenError::from_ck("C_Login", e);
            if let TokenError::WrongPin { tries } = &mut err {
                if let Ok(info) = self.token_info() {
                    if info.user_pin_locked() {
                        return Err(TokenError::PinLocked);
                    }
                    *tries = if info.user_pin_final_try() {
                        PinTries::FinalTry
                    } else if info.user_pin_count_low() {
                        PinTries::Low
                    } else {
                        PinTries::Unknown
                    };
                }
            }
            return Err(err);
        }
        let result = self.sign_logged_in(&session, key, digest, pss);
        let _ = session.logout();
        result
    }

    fn sign_logged_in(
        &self,
        session: &Session,
        key: &KeySelector,
        digest: &[u8; 32],
        pss: bool,
    ) -> Result<Vec<u8>, TokenError> {
        let handle = find_key(session, key)?;
        let (mechanism, input) = if pss {
            (
                Mechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                }),
                digest.to_vec(),
            )
        } else {
            let mut di = SHA256_DIGEST_INFO_PREFIX.to_vec();
            di.extend_from_slice(digest);
            (Mechanism::RsaPkcs, di)
        };
        session.sign(&mechanism, handle, &input).map_err(|e| {
            match TokenError::from_ck("C_Sign", e) {
                TokenError::MechanismNotOffered { .. } => TokenError::MechanismNotOffered {
                    mechanism: mechanism.mechanism_type().to_string(),
                },
                other => other,
            }
        })
    }
}

fn load_module(path: &Path) -> Result<Pkcs11, TokenError> {
    let pkcs11 = Pkcs11::new(path).map_err(|e| TokenError::ModuleLoad {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(pkcs11),
        Err(e) => Err(TokenError::ModuleLoad {
            path: path.to_path_buf(),
            detail: format!("C_Initialize: {e}"),
        }),
    }
}

/// Which private key to sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The only private key, or the one with id 0x17 (the HPKI layout).
    Default,
    Id(Vec<u8>),
    Label(String),
}

impl fmt::Display for KeySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySelector::Default => write!(f, "(default: the only key or id 17)"),
            KeySelector::Id(id) => write!(f, "id {}", hex(id)),
            KeySelector::Label(l) => write!(f, "label \"{l}\""),
        }
    }
}

fn find_key(session: &Session, key: &KeySelector) -> Result<ObjectHandle, TokenError> {
    let class = Attribute::Class(ObjectClass::PRIVATE_KEY);
    let find = |template: &[Attribute]| {
        session
            .find_objects(template)
            .map_err(|e| TokenError::from_ck("C_FindObjects", e))
    };
    let found = match key {
        KeySelector::Id(id) => find(&[class, Attribute::Id(id.clone())])?,
        KeySelector::Label(l) => find(&[class, Attribute::Label(l.as_bytes().to_vec())])?,
        KeySelector::Default => {
            let all = find(std::slice::from_ref(&class))?;
            if all.len() <= 1 {
                all
            } else {
                let hpki = find(&[class, Attribute::Id(vec![HPKI_KEY_ID])])?;
                if hpki.is_empty() {
                    return Err(TokenError::AmbiguousKey { count: all.len() });
                }
                hpki
            }
        }
    };
    match found.as_slice() {
        [] => Err(TokenError::KeyNotFound {
            selector: key.to_string(),
        }),
        [one] => Ok(*one),
        many => Err(TokenError::AmbiguousKey { count: many.len() }),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_start_matches("0x");
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Now, in the `pki` notion of time.
pub fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// Validity of a certificate at `at`, as (ok, English, Japanese).
pub fn validity_text(cert: &ParsedCertificate, at: UnixTime) -> (bool, String, String) {
    let (nb, na) = (cert.not_before(), cert.not_after());
    if at < nb {
        (
            false,
            format!("not yet valid (valid from {})", nb.to_rfc3339()),
            format!("まだ有効期間前です（{} から有効）", nb.to_rfc3339()),
        )
    } else if at > na {
        (
            false,
            format!("expired on {}", na.to_rfc3339()),
            format!("有効期限切れです（{} に失効）", na.to_rfc3339()),
        )
    } else {
        let days = (na.0 - at.0) / 86_400;
        (
            true,
            format!("valid until {} ({days} days left)", na.to_rfc3339()),
            format!("{} まで有効（残り {days} 日）", na.to_rfc3339()),
        )
    }
}

/// What a certificate may be used for, judged with the gateway's own rules.
pub fn usage_of(cert: &ParsedCertificate) -> (&'static str, Vec<String>) {
    let problems: Vec<String> = login_problems(cert)
        .iter()
        .map(|r| r.code().to_string())
        .collect();
    let usage = if cert.is_ca() {
        "ca"
    } else if problems.is_empty() {
        "login"
    } else if signing_problems(cert).is_empty() {
        "signing"
    } else {
        "none"
    };
    (usage, problems)
}

fn identity_json(id: &CertIdentity) -> Value {
    json!({
        "roles": id.roles,
        "name": id.name,
        "name_kanji": id.name_kanji,
        "org": id.org,
        "org_kanji": id.org_kanji,
        "hpki_id": id.hpki_id,
    })
}

fn cert_json(c: &TokenCert, at: UnixTime) -> Value {
    let mut v = json!({ "label": c.label, "id": hex(&c.id) });
    match c.parse() {
        Err(e) => {
            v["error"] = json!(e);
        }
        Ok(p) => {
            let (valid, validity, _) = validity_text(&p, at);
            let (usage, problems) = usage_of(&p);
            v["subject"] = json!(name::display(p.subject()));
            v["issuer"] = json!(name::display(p.issuer()));
            v["serial"] = json!(p.serial_hex());
            v["sha256"] = json!(name::hex(p.sha256()));
            v["not_before"] = json!(p.not_before().to_rfc3339());
            v["not_after"] = json!(p.not_after().to_rfc3339());
            v["valid_now"] = json!(valid);
            v["validity"] = json!(validity);
            v["usage"] = json!(usage);
            v["usable_for_login"] = json!(usage == "login");
            v["login_reasons"] = json!(problems);
            v["identity"] = match read_identity(&p) {
                Ok(id) => identity_json(&id),
                Err(r) => json!({ "error": r.code() }),
            };
        }
    }
    v
}

fn print_cert_text(c: &TokenCert, at: UnixTime) {
    println!("certificate: label \"{}\" id {}", c.label, hex(&c.id));
    let p = match c.parse() {
        Ok(p) => p,
        Err(e) => {
            println!("  unreadable certificate: {e}");
            return;
        }
    };
    println!("  subject:  {}", name::display(p.subject()));
    println!("  issuer:   {}", name::display(p.issuer()));
    match read_identity(&p) {
        Ok(id) => {
            let role = if id.roles.is_empty() {
                "(none)".to_string()
            } else {
                id.roles.join(", ")
            };
            println!("  role:     {role}");
            println!(
                "  name:     {} / {}",
                id.name.as_deref().unwrap_or("-"),
                id.name_kanji.as_deref().unwrap_or("-")
            );
            println!(
                "  org:      {} / {}",
                id.org.as_deref().unwrap_or("-"),
                id.org_kanji.as_deref().unwrap_or("-")
            );
            println!("  hpki id:  {}", id.hpki_id.as_deref().unwrap_or("-"));
        }
        Err(r) => println!("  identity: unreadable ({r})"),
    }
    let (_, validity, _) = validity_text(&p, at);
    println!("  validity: {validity}");
    let (usage, problems) = usage_of(&p);
    let usage_text = match usage {
        "login" => "login (authentication) / ログイン用".to_string(),
        "signing" => "signing only (nonRepudiation) / 署名用（ログイン不可）".to_string(),
        "ca" => "CA certificate / 認証局証明書".to_string(),
        _ => "neither login nor signing".to_string(),
    };
    println!("  usage:    {usage_text}");
    if !problems.is_empty() {
        println!("  not for login: {}", problems.join(", "));
    }
}

pub fn certs(args: CertsArgs) -> i32 {
    match certs_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hpki-card certs: {e}");
            e.exit_code()
        }
    }
}

fn certs_inner(args: &CertsArgs) -> Result<i32, TokenError> {
    let token = Token::open(&args.token)?;
    let certs = token.certificates()?;
    let mechanisms = if args.mechanisms {
        Some(token.mechanisms()?)
    } else {
        None
    };
    let at = now();
    if args.pem {
        for c in &certs {
            // A comment line before each block: OpenSSL and the gateway read around it.
            println!("# label \"{}\" id {}", c.label, hex(&c.id));
            print!("{}", hpki_gateway::pki::pem_encode("CERTIFICATE", &c.der));
        }
        return Ok(crate::EXIT_OK);
    }
    if args.json {
        let mut out = json!({
            "token": token.label,
            "certificates": certs.iter().map(|c| cert_json(c, at)).collect::<Vec<_>>(),
        });
        if let Some(m) = &mechanisms {
            out["mechanisms"] = json!(m.iter().map(|m| m.to_string()).collect::<Vec<_>>());
            out["rsa_pss"] = json!(m.contains(&MechanismType::RSA_PKCS_PSS));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_else(|_| "{}".into())
        );
    } else {
        println!("token: \"{}\" ({} certificates)", token.label, certs.len());
        for c in &certs {
            print_cert_text(c, at);
        }
        if let Some(m) = &mechanisms {
            println!("mechanisms:");
            for mech in m {
                println!("  {mech}");
            }
            println!(
                "RSA-PSS: {}",
                if m.contains(&MechanismType::RSA_PKCS_PSS) {
                    "offered"
                } else {
                    "not offered (PKCS#1 v1.5 only)"
                }
            );
        }
    }
    Ok(crate::EXIT_OK)
}

/// Reads one line from file descriptor `fd` (through /dev/fd, so no unsafe code), without
/// reading past the newline.
pub fn read_pin_fd(fd: u32) -> Result<String, TokenError> {
    let path = format!("/dev/fd/{fd}");
    let mut file = std::fs::File::open(&path).map_err(|e| TokenError::PinInput {
        detail: format!("{path}: {e}"),
    })?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match file.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(TokenError::PinInput {
                    detail: format!("{path}: {e}"),
                })
            }
        }
        if line.len() > 1024 {
            return Err(TokenError::PinInput {
                detail: "line too long".into(),
            });
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| TokenError::PinInput {
        detail: "not UTF-8".into(),
    })
}

pub fn sign(args: SignArgs) -> i32 {
    match sign_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hpki-card sign: {e}");
            e.exit_code()
        }
    }
}

fn sign_inner(args: &SignArgs) -> Result<i32, TokenError> {
    let key = match (&args.key_id, &args.label) {
        (Some(h), _) => KeySelector::Id(parse_hex(h).ok_or_else(|| TokenError::Input {
            detail: format!("--key-id \"{h}\" is not hex (e.g. 17)"),
        })?),
        (None, Some(l)) => KeySelector::Label(l.clone()),
        (None, None) => KeySelector::Default,
    };
    let digest = match (&args.input, &args.digest) {
        (Some(path), _) => {
            let data = std::fs::read(path).map_err(|e| TokenError::Input {
                detail: format!("cannot read {}: {e}", path.display()),
            })?;
            hpki_gateway::pki::sha256(&data)
        }
        (None, Some(hex)) => {
            let digits: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
            hpki_gateway::pki::name::parse_sha256_hex(&digits).ok_or_else(|| TokenError::Input {
                detail: format!(
                    "--digest \"{hex}\" is not a SHA-256: give the 64 hex digits the page shows \
                     / ページに表示された64桁の16進数を指定してください"
                ),
            })?
        }
        // clap requires one of them.
        (None, None) => {
            return Err(TokenError::Input {
                detail: "give --in FILE or --digest HEX".into(),
            })
        }
    };
    let token = Token::open(&args.token)?;
    // Ask for the PIN only when the signature can be made at all.
    if args.pss && !token.signs_pss()? {
        return Err(TokenError::MechanismNotOffered {
            mechanism: "CKM_RSA_PKCS_PSS".into(),
        });
    }
    let pin = match args.pin_fd {
        Some(fd) => read_pin_fd(fd)?,
        None => rpassword::prompt_password(format!("PIN ({}): ", token.label)).map_err(|e| {
            TokenError::PinInput {
                detail: e.to_string(),
            }
        })?,
    };
    if pin.is_empty() {
        return Err(TokenError::PinInput {
            detail: "empty PIN".into(),
        });
    }
    let pin = AuthPin::new(pin.into());
    let signature = token.sign_digest(&pin, &key, &digest, args.pss)?;
    match &args.out {
        Some(path) => std::fs::write(path, &signature).map_err(|e| TokenError::Input {
            detail: format!("cannot write {}: {e}", path.display()),
        })?,
        None => {
            let mut out = std::io::stdout();
            let _ = writeln!(
                out,
                "{}",
                base64::engine::general_purpose::STANDARD.encode(&signature)
            );
        }
    }
    Ok(crate::EXIT_OK)
}
