//! `hpki-gateway trust status --config FILE`: what the trust store of a configuration
//! holds, offline (no fetching): per profile its anchors (with their trust.toml windows)
//! and intermediates with their expiry, the CRLs of its CAs as loaded from `crls/`, and
//! its revocation policy.
//!
//! `hpki-gateway trust reload|diff --config FILE`: ask the running gateway, over its
//! admin listener (`admin.listen` or `admin.socket`), to reload its trust store or to say
//! what a reload would change.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::revocation_report::{crl_number_text, crl_summary};
use super::{EXIT_NEGATIVE, EXIT_OK};
use crate::config::{Config, RevocationPolicy};
use crate::pki::revocation_check::unusable;
use crate::pki::{name, ParsedCertificate, UnixTime};
use crate::revocation::CrlSet;
use crate::trust::{TrustProfile, WindowState};

/// Certificates expiring within this many days are marked WARNING.
const WARN_DAYS: i64 = 90;

/// Said in every output: what this offline command cannot know.
const LIVE_STATE_NOTE: &str = "Distribution-point fetch state (last fetch, next fetch, errors) and the OCSP cache size are live state of the running gateway: its admin endpoint will show them (a later feature). This command reads files only and fetches nothing.";

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Anchors, intermediates and CRLs of every trust profile, with expiry and staleness,
    /// and each profile's revocation policy and trust.toml anchor windows; offline. Exit 0
    /// OK, 1 when a CRL is stale, an anchor has expired, a profile has no anchor accepted
    /// at that time (or the configuration cannot be loaded).
    Status(StatusArgs),
    /// Ask the RUNNING gateway (over its admin listener) to re-read its trust store:
    /// anchors, intermediates, CRL files, trust.toml. It swaps only a store that loads
    /// without problems. Exit 0 applied or unchanged, 1 refused (every problem printed),
    /// 2 when the gateway cannot be reached.
    Reload(ReloadArgs),
    /// What `trust reload` would change in the RUNNING gateway, without changing it. Exit
    /// 0 when it would apply (or nothing changed), 1 when it would refuse, 2 when the
    /// gateway cannot be reached.
    Diff(DiffArgs),
}

#[derive(Args)]
pub struct ReloadArgs {
    /// The TOML configuration of the running gateway (its [admin] section says where
    /// to reach it).
    #[arg(long)]
    config: PathBuf,
    /// Who asks for the reload, recorded by the gateway. Default: $SUDO_USER, else
    /// $USER, else the numeric uid.
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
    /// Print the gateway's JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The TOML configuration of the running gateway (its [admin] section says where
    /// to reach it).
    #[arg(long)]
    config: PathBuf,
    /// Print the gateway's JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The TOML configuration (docs/config.md).
    #[arg(long)]
    config: PathBuf,
    /// Judge expiry, staleness and trust.toml windows at this time (RFC 3339, or a date
    /// meaning midnight Japan time) instead of now.
    #[arg(long)]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: TrustCommand) -> i32 {
    match cmd {
        TrustCommand::Status(a) => status(a),
        TrustCommand::Reload(a) => reload(a),
        TrustCommand::Diff(a) => diff(a),
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn fmt_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Whole days from `now` to `t` (negative when past), rounded towards minus infinity.
fn days_until(t: UnixTime, now: UnixTime) -> i64 {
    let secs = i128::from(t.0) - i128::from(now.0);
    i64::try_from(secs.div_euclid(86_400)).unwrap_or(i64::MIN)
}

fn policy_json(p: &RevocationPolicy) -> Value {
    json!({
        "sources": p.sources.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "depth": p.depth.as_str(),
        "on_unavailable": p.on_unavailable.as_str(),
        "stale_crl": p.stale_crl.as_str(),
        "stale_grace": fmt_duration(p.stale_grace),
        "ocsp_responder": p.ocsp_responder,
        "crl_refresh": fmt_duration(p.crl_refresh),
        "recheck": fmt_duration(p.recheck),
    })
}

fn policy_text(p: &RevocationPolicy) -> String {
    if p.sources.is_empty() {
        return "none (revocation.sources = [])".into();
    }
    let sources: Vec<&str> = p.sources.iter().map(|s| s.as_str()).collect();
    format!(
        "sources {}, depth {}, on_unavailable {}, stale_crl {} (grace {}), OCSP responder {}, crl_refresh {}, recheck {}",
        sources.join(" then "),
        p.depth.as_str(),
        p.on_unavailable.as_str(),
        p.stale_crl.as_str(),
        fmt_duration(p.stale_grace),
        p.ocsp_responder.as_deref().unwrap_or("from each certificate's AIA"),
        fmt_duration(p.crl_refresh),
        if p.recheck.is_zero() { "off".to_owned() } else { fmt_duration(p.recheck) },
    )
}

struct CertLine {
    json: Value,
    text: String,
    expired: bool,
}

fn cert_line(c: &ParsedCertificate, now: UnixTime) -> CertLine {
    let days = days_until(c.not_after(), now);
    let expired = now > c.not_after();
    let marker = if expired {
        "  EXPIRED".to_owned()
    } else if days < WARN_DAYS {
        format!("  WARNING: expires in {days} days")
    } else {
        String::new()
    };
    CertLine {
        json: json!({
            "subject": name::display(c.subject()),
            "sha256": name::hex(c.sha256()),
            "not_after": c.not_after().to_rfc3339(),
            "days_left": days,
            "expired": expired,
            "warning": expired || days < WARN_DAYS,
        }),
        text: format!(
            "{}\n        sha256 {}  notAfter {} ({days} days left){marker}",
            name::display(c.subject()),
            name::hex(c.sha256()),
            c.not_after().to_rfc3339(),
        ),
        expired,
    }
}

struct ProfileReport {
    json: Value,
    text: Vec<String>,
    problems: Vec<String>,
}

fn profile_report(p: &TrustProfile, crls: &CrlSet, now: UnixTime) -> ProfileReport {
    let mut text = Vec::new();
    let mut problems = Vec::new();
    text.push(format!("profile {} ({})", p.name, p.kind.as_str()));
    text.push(format!("  revocation: {}", policy_text(&p.revocation)));

    let mut anchors_json = Vec::new();
    text.push(format!("  anchors ({}):", p.directory.anchors.len()));
    let mut active = 0usize;
    for c in p.directory.anchors.iter() {
        let mut line = cert_line(c, now);
        let window = p.directory.window(c.sha256());
        if window.is_none_or(|w| w.is_active(now)) && !line.expired {
            active += 1;
        }
        if let Some(w) = window {
            let (state, marker) = match w.state(now) {
                WindowState::Active => ("active", String::new()),
                WindowState::NotYetActive => (
                    "not_yet_active",
                    format!(
                        "  NOT YET ACTIVE (in {} days)",
                        days_until(UnixTime(w.not_before.unwrap_or(0).max(0) as u64), now)
                    ),
                ),
                WindowState::Retired => ("retired", "  RETIRED".to_owned()),
            };
            let soon = match (w.state(now), w.not_after) {
                (WindowState::Active, Some(na)) => {
                    let d = days_until(UnixTime(na.max(0) as u64), now);
                    if d < WARN_DAYS {
                        format!("  (retires in {d} days)")
                    } else {
                        String::new()
                    }
                }
                _ => String::new(),
            };
            line.text.push_str(&format!(
                "\n        {}: {}{marker}{soon}",
                crate::trust::SCHEDULE_FILE,
                w.describe()
            ));
            if let Some(obj) = line.json.as_object_mut() {
                obj.insert(
                    "window".into(),
                    json!({
                        "not_before": w.not_before.map(crate::store::format_time),
                        "not_after": w.not_after.map(crate::store::format_time),
                        "state": state,
                    }),
                );
            }
        } else if let Some(obj) = line.json.as_object_mut() {
            obj.insert("window".into(), Value::Null);
        }
        if line.expired {
            problems.push(format!(
                "{}: anchor \"{}\" expired on {}",
                p.name,
                name::display(c.subject()),
                c.not_after().to_rfc3339()
            ));
        }
        text.push(format!("    {}", line.text));
        anchors_json.push(line.json);
    }
    if active == 0 && !p.directory.anchors.is_empty() {
        problems.push(format!(
            "{}: no anchor is accepted at {} (every anchor has expired or is outside its {} window)",
            p.name,
            now.to_rfc3339(),
            crate::trust::SCHEDULE_FILE
        ));
    }
    let mut inter_json = Vec::new();
    text.push(format!(
        "  intermediates ({}):",
        p.directory.intermediates.len()
    ));
    for c in p.directory.intermediates.iter() {
        let line = cert_line(c, now);
        text.push(format!("    {}", line.text));
        inter_json.push(line.json);
    }

    // The CRL in use for each CA of the profile (a CRL may come from another profile's
    // crls/ when both hold the same CA).
    let cas: Vec<&Arc<ParsedCertificate>> = p
        .directory
        .anchors
        .iter()
        .chain(p.directory.intermediates.iter())
        .collect();
    let mut crls_json = Vec::new();
    let mut without = Vec::new();
    text.push("  CRLs:".to_owned());
    for ca in &cas {
        let Some(rec) = crls.get(ca) else {
            without.push(name::display(ca.subject()));
            continue;
        };
        let crl = &rec.crl;
        let stale = crl.next_update().is_none_or(|nu| now > nu);
        let not_yet = crl.this_update() > now;
        let refused = unusable(crl);
        let mut markers = Vec::new();
        if stale {
            markers.push(match crl.next_update() {
                Some(nu) => format!("STALE: nextUpdate passed {} days ago", -days_until(nu, now)),
                None => "STALE: no nextUpdate".to_owned(),
            });
            problems.push(format!(
                "{}: the CRL of \"{}\" ({}) is stale",
                p.name,
                crl.issuer_display(),
                rec.source
            ));
        }
        if not_yet {
            markers.push("NOT YET VALID: thisUpdate is in the future".to_owned());
        }
        if let Some(why) = refused {
            markers.push(format!("NOT USED: {why}"));
            problems.push(format!(
                "{}: the CRL of \"{}\" ({}) is not used: {why}",
                p.name,
                crl.issuer_display(),
                rec.source
            ));
        }
        let mut v = crl_summary(crl);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("issuer".into(), json!(crl.issuer_display()));
            obj.insert("file".into(), json!(rec.source));
            obj.insert("approx_bytes".into(), json!(crl.approx_heap_bytes()));
            obj.insert("stale".into(), json!(stale));
            obj.insert("not_yet_valid".into(), json!(not_yet));
            obj.insert("usable".into(), json!(refused.is_none()));
        }
        crls_json.push(v);
        let next = match crl.next_update() {
            Some(nu) if !stale => format!("{} (in {} days)", nu.to_rfc3339(), days_until(nu, now)),
            Some(nu) => nu.to_rfc3339(),
            None => "none".to_owned(),
        };
        text.push(format!(
            "    {}  CRL number {}\n        thisUpdate {}  nextUpdate {next}\n        {} entries, ~{} in memory, file {}{}",
            crl.issuer_display(),
            crl.crl_number()
                .map(crl_number_text)
                .unwrap_or_else(|| "none".into()),
            crl.this_update().to_rfc3339(),
            crl.len(),
            fmt_bytes(crl.approx_heap_bytes()),
            rec.source,
            markers
                .iter()
                .map(|m| format!("\n        {m}"))
                .collect::<String>()
        ));
    }
    for ca in &without {
        text.push(format!(
            "    {ca}: no CRL file (the running gateway fetches it from the distribution point named in the certificates this CA issued)"
        ));
    }
    ProfileReport {
        json: json!({
            "name": p.name,
            "kind": p.kind.as_str(),
            "revocation": policy_json(&p.revocation),
            "anchors": anchors_json,
            "intermediates": inter_json,
            "crls": crls_json,
            "cas_without_crl_file": without,
        }),
        text,
        problems,
    }
}

fn status(args: StatusArgs) -> i32 {
    let now = match &args.at {
        Some(s) => match UnixTime::parse_rfc3339(s).or_else(|| {
            // A bare date (midnight Japan time), as trust.toml accepts.
            crate::store::parse_time(s)
                .ok()
                .and_then(|t| u64::try_from(t).ok())
                .map(UnixTime)
        }) {
            Some(t) => t,
            None => {
                eprintln!(
                    "error: --at \"{s}\" is not an RFC 3339 time (example: 2026-04-01T09:00:00+09:00)"
                );
                return super::EXIT_BAD_INPUT;
            }
        },
        None => crate::proxy::now(),
    };
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_NEGATIVE;
        }
    };
    let refused = |problems: Vec<String>, what: &str| {
        eprintln!("{}: {what}:", args.config.display());
        for p in problems {
            eprintln!("  - {p}");
        }
        EXIT_NEGATIVE
    };
    let store = match crate::proxy::build_trust_store(&config) {
        Ok(s) => s,
        Err(p) => return refused(p, "the trust store cannot be loaded"),
    };
    let crls = match crate::revocation::load_crl_files(&store, now) {
        Ok(c) => c,
        Err(p) => return refused(p, "the CRL files cannot be used"),
    };
    let reports: Vec<ProfileReport> = store
        .profiles
        .iter()
        .map(|p| profile_report(p, &crls, now))
        .collect();
    let used: HashSet<&str> = crls.iter().map(|r| r.source.as_str()).collect();
    let superseded: Vec<String> = store
        .profiles
        .iter()
        .flat_map(|p| p.directory.crl_files.iter())
        .map(|f| f.display().to_string())
        .filter(|f| !used.contains(f.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let problems: Vec<&String> = reports.iter().flat_map(|r| r.problems.iter()).collect();
    let total: usize = crls.iter().map(|r| r.crl.approx_heap_bytes()).sum();
    if args.json {
        let out = json!({
            "config": args.config.display().to_string(),
            "at": now.to_rfc3339(),
            "ok": problems.is_empty(),
            "problems": problems,
            "profiles": reports.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            "crl_files_not_in_use": superseded,
            "crl_memory_bytes": total,
            "live_state": LIVE_STATE_NOTE,
        });
        match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_NEGATIVE;
            }
        }
    } else {
        println!(
            "trust status of {} at {}",
            args.config.display(),
            now.to_rfc3339()
        );
        for r in &reports {
            println!();
            for line in &r.text {
                println!("{line}");
            }
        }
        println!();
        for f in &superseded {
            println!(
                "CRL file not in use (another file holds the same or a newer CRL of that CA): {f}"
            );
        }
        println!("CRLs in memory: {} ({} CRLs)", fmt_bytes(total), crls.len());
        println!("note: {LIVE_STATE_NOTE}");
        if problems.is_empty() {
            println!("status: OK");
        } else {
            println!("status: {} problem(s)", problems.len());
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    }
}

// ---------------------------------------------------------------------------------------
// `trust reload` / `trust diff`: a client of the running gateway's admin listener.

/// How long connecting to the admin listener may take.
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the gateway may take to answer (a reload reads and verifies every file).
const ADMIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the running gateway's admin listener is.
#[derive(Debug, Clone)]
enum AdminTarget {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for AdminTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminTarget::Tcp(a) => write!(f, "admin.listen = {a}"),
            AdminTarget::Unix(p) => write!(f, "admin.socket = {}", p.display()),
        }
    }
}

/// The admin listener named by the configuration. A configuration that does not
/// validate (say, a trust directory being edited) still names its admin listener: then
/// only its [admin] section is read, so that the gateway can be asked and say what is
/// wrong.
fn admin_target(config: &std::path::Path) -> Result<AdminTarget, String> {
    match Config::load(config) {
        Ok(c) => Ok(match c.admin.socket {
            Some(p) => AdminTarget::Unix(p),
            None => AdminTarget::Tcp(c.admin.listen),
        }),
        Err(e) => {
            let fallback = || -> Option<AdminTarget> {
                let file = std::path::absolute(config).ok()?;
                let text = std::fs::read_to_string(&file).ok()?;
                let table = text.parse::<toml::Table>().ok()?;
                let admin = match table.get("admin") {
                    Some(v) => v.as_table()?.clone(),
                    None => toml::Table::new(),
                };
                if let Some(sock) = admin.get("socket") {
                    let sock = sock.as_str()?.trim();
                    if sock.is_empty() {
                        return None;
                    }
                    return Some(AdminTarget::Unix(file.parent()?.join(sock)));
                }
                let listen = match admin.get("listen") {
                    Some(l) => l.as_str()?.trim().parse().ok()?,
                    None => crate::config::DEFAULT_ADMIN_LISTEN.parse().ok()?,
                };
                Some(AdminTarget::Tcp(listen))
            };
            match fallback() {
                Some(t) => {
                    eprintln!(
                        "note: {} does not validate ({} problem(s), `hpki-gateway check-config` lists them); \
                         reaching the gateway at {t} from its [admin] section",
                        config.display(),
                        e.problems.len()
                    );
                    Ok(t)
                }
                None => Err(e.to_string()),
            }
        }
    }
}

/// Why the admin listener did not answer.
struct Unreachable(String);

/// One request to the admin listener: (status, body).
async fn admin_request(
    target: &AdminTarget,
    method: http::Method,
    path: &str,
    operator: Option<&str>,
) -> Result<(u16, bytes::Bytes), Unreachable> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::ACCEPT, "application/json");
    if let Some(op) = operator {
        let value = http::HeaderValue::from_bytes(op.as_bytes())
            .map_err(|_| Unreachable(format!("--operator {op:?} cannot be sent in a header")))?;
        req = req.header("X-HPKI-Operator", value);
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| Unreachable(format!("cannot build the request: {e}")))?;

    async fn send<S>(
        io: S,
        req: http::Request<Empty<bytes::Bytes>>,
    ) -> Result<(u16, bytes::Bytes), String>
    where
        S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    let connect_err = |e: std::io::Error| Unreachable(format!("cannot connect: {e}"));
    let exchange = async {
        match target {
            AdminTarget::Tcp(addr) => {
                let stream = tokio::time::timeout(
                    ADMIN_CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .map_err(|_| Unreachable("connecting timed out".into()))?
                .map_err(connect_err)?;
                send(TokioIo::new(stream), req).await.map_err(Unreachable)
            }
            #[cfg(unix)]
            AdminTarget::Unix(path) => {
                let stream = tokio::time::timeout(
                    ADMIN_CONNECT_TIMEOUT,
                    tokio::net::UnixStream::connect(path),
                )
                .await
                .map_err(|_| Unreachable("connecting timed out".into()))?
                .map_err(connect_err)?;
                send(TokioIo::new(stream), req).await.map_err(Unreachable)
            }
            #[cfg(not(unix))]
            AdminTarget::Unix(_) => Err(Unreachable(
                "Unix sockets are not supported on this platform".into(),
            )),
        }
    };
    tokio::time::timeout(ADMIN_ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            Unreachable(format!(
                "no answer within {}s",
                ADMIN_ANSWER_TIMEOUT.as_secs()
            ))
        })?
}

/// The operator named in the request: --operator, $SUDO_USER, $USER, the uid.
fn operator_name(given: Option<&str>) -> Result<String, String> {
    if let Some(given) = given {
        let given = given.trim();
        if given.is_empty() {
            return Err(
                "--operator is empty: give the name of the person asking for the reload".into(),
            );
        }
        return Ok(given.to_owned());
    }
    for var in ["SUDO_USER", "USER"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Ok(v.trim().to_owned());
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return Ok(format!("uid {}", m.uid()));
        }
    }
    Ok("unknown".into())
}

/// The gateway's answer to /trust/reload and /trust/diff.
#[derive(Debug, Default, serde::Deserialize)]
struct ReloadAnswer {
    outcome: String,
    #[serde(default)]
    generation: Option<u64>,
    #[serde(default)]
    problems: Vec<String>,
    #[serde(default)]
    changes: Vec<String>,
}

/// Runs `/trust/reload` (POST) or `/trust/diff` (GET) and reports the answer.
fn admin_trust_call(
    config: &std::path::Path,
    reload: bool,
    operator: Option<&str>,
    json_out: bool,
) -> i32 {
    let what = if reload { "trust reload" } else { "trust diff" };
    let target = match admin_target(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return super::EXIT_BAD_INPUT;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return super::EXIT_BAD_INPUT;
        }
    };
    let (method, path) = if reload {
        (http::Method::POST, "/trust/reload")
    } else {
        (http::Method::GET, "/trust/diff")
    };
    let (status, body) = match runtime.block_on(admin_request(&target, method, path, operator)) {
        Ok(r) => r,
        Err(Unreachable(why)) => {
            eprintln!(
                "error: {what}: cannot reach the gateway's admin listener ({why}): is it running? {target} (from {})",
                config.display()
            );
            return super::EXIT_BAD_INPUT;
        }
    };
    let text = String::from_utf8_lossy(&body);
    if status == 404 || status == 405 {
        eprintln!(
            "error: {what}: the gateway at {target} does not offer {path} (HTTP {status}): is it an older version of hpki-gateway?"
        );
        return super::EXIT_BAD_INPUT;
    }
    let answer: ReloadAnswer = match serde_json::from_slice(&body) {
        Ok(a) if status == 200 || status == 422 => a,
        _ => {
            eprintln!(
                "error: {what}: unexpected answer from the gateway at {target}: HTTP {status}: {}",
                text.trim()
            );
            return EXIT_NEGATIVE;
        }
    };
    let ok = matches!(
        answer.outcome.as_str(),
        "applied" | "unchanged" | "would_apply"
    );
    if json_out {
        match serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
        {
            Some(s) => println!("{s}"),
            None => println!("{}", text.trim()),
        }
    } else {
        print!("{}", answer_text(what, &target, &answer));
    }
    if ok {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    }
}

/// The text form of an answer: the outcome in words, then the changes and problems.
fn answer_text(what: &str, target: &AdminTarget, a: &ReloadAnswer) -> String {
    use std::fmt::Write;
    let generation = a
        .generation
        .map(|g| format!("generation {g}"))
        .unwrap_or_else(|| "generation unknown".into());
    let headline = match a.outcome.as_str() {
        "applied" => format!("applied: the gateway now serves trust store {generation}"),
        "unchanged" => format!("unchanged: the files are what the gateway already serves ({generation})"),
        "would_apply" => format!(
            "would apply: a reload would replace the trust store the gateway serves ({generation}) with these changes"
        ),
        "refused" => format!(
            "REFUSED: the gateway keeps serving its trust store ({generation}); fix every problem below and reload again"
        ),
        "would_refuse" => format!(
            "WOULD REFUSE: a reload would be refused and the gateway would keep its trust store ({generation}); fix every problem below"
        ),
        other => format!("{other} ({generation})"),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{what} ({target}): {headline}");
    if !a.changes.is_empty() {
        let _ = writeln!(out, "changes ({}):", a.changes.len());
        for c in &a.changes {
            let _ = writeln!(out, "  {c}");
        }
    } else if matches!(a.outcome.as_str(), "applied" | "would_apply") {
        let _ = writeln!(out, "changes: none");
    }
    if !a.problems.is_empty() {
        let _ = writeln!(out, "problems ({}):", a.problems.len());
        for p in &a.problems {
            // A problem may span lines (a trust directory and the files in it).
            let mut lines = p.lines().filter(|l| !l.trim().is_empty());
            let _ = writeln!(out, "  - {}", lines.next().unwrap_or_default().trim());
            for l in lines {
                let _ = writeln!(out, "      {}", l.trim());
            }
        }
    }
    out
}

fn reload(args: ReloadArgs) -> i32 {
    let operator = match operator_name(args.operator.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_BAD_INPUT;
        }
    };
    admin_trust_call(&args.config, true, Some(&operator), args.json)
}

fn diff(args: DiffArgs) -> i32 {
    admin_trust_call(&args.config, false, None, args.json)
}
