//! The support check: `hpki-card doctor` walks from pcscd to the certificates and says,
//! line by line in Japanese and English, what is fine and what to do about the rest.
//!
//! Exit 0 when every line is OK, 1 when any line is a problem. A PC/SC problem (no
//! pcscd, no reader, no card) does not stop the PKCS#11 checks: some middleware (and
//! SoftHSM2 in tests) does not go through PC/SC.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cryptoki::mechanism::MechanismType;
use hpki_gateway::pki::{name, verify_path, KeyPurpose, ParsedCertificate, PathOptions};
use hpki_gateway::trust::TrustDirectory;
use serde_json::json;

use crate::token::{self, Token, TokenOpts};

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub token: TokenOpts,
    /// A trust directory (as the gateway's `trust_dir`): check that each certificate
    /// chains to it.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// Short machine name: `pcscd`, `readers`, `card`, `module`, `token`, ...
    pub topic: &'static str,
    pub ja: String,
    pub en: String,
}

impl Check {
    fn ok(topic: &'static str, ja: impl Into<String>, en: impl Into<String>) -> Check {
        Check {
            ok: true,
            topic,
            ja: ja.into(),
            en: en.into(),
        }
    }
    fn problem(topic: &'static str, ja: impl Into<String>, en: impl Into<String>) -> Check {
        Check {
            ok: false,
            topic,
            ja: ja.into(),
            en: en.into(),
        }
    }

    /// `OK [topic] ja / en` or `問題/PROBLEM [topic] ja / en`.
    pub fn line(&self) -> String {
        format!(
            "{} [{}] {} / {}",
            if self.ok { "OK" } else { "問題/PROBLEM" },
            self.topic,
            self.ja,
            self.en
        )
    }
}

/// The PC/SC part: pcscd, readers, a card.
pub fn pcsc_checks() -> Vec<Check> {
    let mut out = Vec::new();
    let ctx = match pcsc::Context::establish(pcsc::Scope::User) {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::problem(
                "pcscd",
                format!("pcscd に接続できません（{e}）: pcscd を起動してください（sudo systemctl start pcscd.socket）"),
                format!("cannot reach pcscd ({e}): start it (sudo systemctl start pcscd.socket)"),
            ));
            return out;
        }
    };
    out.push(Check::ok(
        "pcscd",
        "pcscd に接続できました",
        "pcscd is reachable",
    ));
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => {
            out.push(Check::problem(
                "readers",
                format!("リーダー一覧を取得できません（{e}）"),
                format!("cannot list readers ({e})"),
            ));
            return out;
        }
    };
    if names.is_empty() {
        out.push(Check::problem(
            "readers",
            "カードリーダーが見つかりません: リーダーをUSBに接続し、ドライバを確認してください",
            "no card reader: plug the reader in and check its driver",
        ));
        return out;
    }
    let list = names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    out.push(Check::ok(
        "readers",
        format!("カードリーダー: {list}"),
        format!("readers: {list}"),
    ));
    let mut states: Vec<pcsc::ReaderState> = names
        .iter()
        .map(|n| pcsc::ReaderState::new(n.clone(), pcsc::State::UNAWARE))
        .collect();
    let present: Vec<String> = match ctx.get_status_change(Duration::ZERO, &mut states) {
        Ok(()) | Err(pcsc::Error::Timeout) => states
            .iter()
            .filter(|s| s.event_state().contains(pcsc::State::PRESENT))
            .map(|s| s.name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            out.push(Check::problem(
                "card",
                format!("リーダーの状態を取得できません（{e}）"),
                format!("cannot read the readers' state ({e})"),
            ));
            return out;
        }
    };
    if present.is_empty() {
        out.push(Check::problem(
            "card",
            "カードが挿されていません: HPKIカードを向きに注意してリーダーに挿してください",
            "no card in any reader: insert the HPKI card (chip first, facing up)",
        ));
    } else {
        let list = present.join(", ");
        out.push(Check::ok(
            "card",
            format!("カードがあります: {list}"),
            format!("card present in: {list}"),
        ));
    }
    out
}

/// The PKCS#11 part: module, token, mechanisms, certificates, chains.
pub fn token_checks(opts: &TokenOpts, trust: Option<&std::path::Path>) -> Vec<Check> {
    let mut out = Vec::new();
    let module = opts.module.display().to_string();
    let tok = match Token::open(opts) {
        Ok(t) => {
            out.push(Check::ok(
                "module",
                format!("PKCS#11 モジュールを読み込みました: {module}"),
                format!("PKCS#11 module loaded: {module}"),
            ));
            out.push(Check::ok(
                "token",
                format!("トークン \"{}\" が見つかりました", t.label),
                format!("token \"{}\" found", t.label),
            ));
            t
        }
        Err(token::TokenError::ModuleLoad { detail, .. }) => {
            out.push(Check::problem(
                "module",
                format!("PKCS#11 モジュール {module} を読み込めません（{detail}）: カードのHPKIミドルウェアをインストールし、そのパスを --module で指定してください"),
                format!("cannot load the PKCS#11 module {module} ({detail}): install your card's HPKI middleware and pass its path with --module"),
            ));
            return out;
        }
        Err(token::TokenError::TokenNotFound { label, present }) => {
            out.push(Check::ok(
                "module",
                format!("PKCS#11 モジュールを読み込みました: {module}"),
                format!("PKCS#11 module loaded: {module}"),
            ));
            let seen = if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            };
            out.push(Check::problem(
                "token",
                format!("トークン \"{label}\" が見つかりません（見つかったトークン: {seen}）: カードを挿し直してください"),
                format!("token \"{label}\" not found (tokens present: {seen}): reinsert the card"),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::problem(
                "token",
                format!("トークンを開けません: {e}"),
                format!("cannot open the token: {e}"),
            ));
            return out;
        }
    };

    match tok.mechanisms() {
        Ok(m) => {
            let rsa_pkcs = m.contains(&MechanismType::RSA_PKCS);
            let pss = m.contains(&MechanismType::RSA_PKCS_PSS);
            if !rsa_pkcs {
                out.push(Check::problem(
                    "mechanisms",
                    "トークンが CKM_RSA_PKCS に対応していません: HPKIカードのミドルウェアか確認してください",
                    "the token does not offer CKM_RSA_PKCS: check that this is the HPKI card's middleware",
                ));
            }
            if pss {
                out.push(Check::ok(
                    "rsa-pss",
                    "トークンは RSA-PSS で署名できます（TLS 1.3 でもログインできます）",
                    "the token signs RSA-PSS (TLS 1.3 logins work)",
                ));
            } else {
                out.push(Check::problem(
                    "rsa-pss",
                    "このカードは RSA-PSS に対応していません（PKCS#1 v1.5 のみ）: TLS 1.2 のリスナー（tls_profile = \"hpki-card\"）を使ってください",
                    "no RSA-PSS: this card signs PKCS#1 v1.5 only: use a TLS 1.2 listener, the `hpki-card` tls_profile",
                ));
            }
        }
        Err(e) => out.push(Check::problem(
            "mechanisms",
            format!("メカニズム一覧を取得できません: {e}"),
            format!("cannot list the token's mechanisms: {e}"),
        )),
    }

    let certs = match tok.certificates() {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::problem(
                "certificates",
                format!("証明書を読めません: {e}"),
                format!("cannot read the certificates: {e}"),
            ));
            return out;
        }
    };
    let parsed: Vec<(token::TokenCert, Option<Arc<ParsedCertificate>>)> = certs
        .into_iter()
        .map(|c| {
            let p = c.parse().ok().map(Arc::new);
            (c, p)
        })
        .collect();
    if parsed.is_empty() {
        out.push(Check::problem(
            "certificates",
            "トークンに証明書がありません: カードが正しく発行されているか発行元に確認してください",
            "no certificate on the token: ask the card's issuer whether the card was issued correctly",
        ));
        return out;
    }
    let trust_dir = match trust {
        None => None,
        Some(dir) => match TrustDirectory::load(dir) {
            Ok(t) => Some(t),
            Err(e) => {
                let e = e.to_string().replace('\n', " ");
                let e = e.trim();
                out.push(Check::problem(
                    "trust",
                    format!("トラストディレクトリ {} を読めません: {e}", dir.display()),
                    format!("cannot load the trust directory {}: {e}", dir.display()),
                ));
                None
            }
        },
    };
    let at = token::now();
    let others: Vec<Arc<ParsedCertificate>> =
        parsed.iter().filter_map(|(_, p)| p.clone()).collect();
    for (c, p) in &parsed {
        let what = format!("\"{}\" (id {})", c.label, token::hex(&c.id));
        let Some(p) = p else {
            out.push(Check::problem(
                "certificate",
                format!("証明書 {what} を解析できません"),
                format!("certificate {what} cannot be parsed"),
            ));
            continue;
        };
        let subject = name::display(p.subject());
        let (valid, en, ja) = token::validity_text(p, at);
        let (usage, _) = token::usage_of(p);
        let (usage_ja, usage_en) = match usage {
            "login" => ("ログイン用", "for login"),
            "signing" => (
                "署名用（ログインには使えません）",
                "signing only (not for login)",
            ),
            "ca" => ("認証局証明書", "CA certificate"),
            _ => ("用途なし", "neither login nor signing"),
        };
        if valid {
            out.push(Check::ok(
                "certificate",
                format!("証明書 {what} {subject}: {ja}、{usage_ja}"),
                format!("certificate {what} {subject}: {en}, {usage_en}"),
            ));
        } else {
            out.push(Check::problem(
                "certificate",
                format!("証明書 {what} {subject}: {ja}: カードの更新を発行元に申請してください"),
                format!(
                    "certificate {what} {subject}: {en}: apply to the issuer for a renewed card"
                ),
            ));
        }
        if let (Some(t), false) = (&trust_dir, p.is_ca()) {
            let opts = PathOptions::new(at, KeyPurpose::Any);
            match verify_path(p, &others, &t.anchors, &t.intermediates, &opts) {
                Ok(path) => out.push(Check::ok(
                    "chain",
                    format!("証明書 {what} はトラストアンカーまで検証できました（{} 段）", path.chain.len()),
                    format!("certificate {what} chains to a trust anchor ({} certificates)", path.chain.len()),
                )),
                Err(e) => out.push(Check::problem(
                    "chain",
                    format!("証明書 {what} を検証できません（{}: {}）: 発行元の認証局証明書をトラストディレクトリに追加してください", e.reason, e.detail),
                    format!("certificate {what} does not validate ({}: {}): add the issuing CA's certificates to the trust directory", e.reason, e.detail),
                )),
            }
        }
    }
    out
}

pub fn doctor(args: DoctorArgs) -> i32 {
    let mut checks = pcsc_checks();
    checks.extend(token_checks(&args.token, args.trust.as_deref()));
    let ok = checks.iter().all(|c| c.ok);
    if args.json {
        let v = json!({
            "ok": ok,
            "checks": checks.iter().map(|c| json!({
                "topic": c.topic, "ok": c.ok, "ja": c.ja, "en": c.en,
            })).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into())
        );
    } else {
        for c in &checks {
            println!("{}", c.line());
        }
        let n = checks.iter().filter(|c| !c.ok).count();
        if ok {
            println!("OK: 問題は見つかりませんでした / no problem found");
        } else {
            println!("問題/PROBLEM: {n} 件の問題があります / {n} problem(s) found");
        }
    }
    if ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_PROBLEM
    }
}
