//! The TOML configuration: parsed with serde into permissive raw structs, then validated
//! into typed sections. Validation collects every problem instead of stopping at the first,
//! because an operator fixing a config one error per `check-config` run gives up.
//! Every problem names its key (`route[1].upstream`) and says how to fix it.
//!
//! Reference: docs/config.md. Uses only std, serde and toml, and never the network: a
//! config check must give the same answer on an offline machine.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

/// Where the admin API listens when `[admin]` does not say.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9900";
pub const DEFAULT_ASSERTION_ISSUER: &str = "hpki-gateway";
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_INTERMEDIATES: usize = 6;
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;

/// Path prefixes the gateway answers itself; a route there could never be reached.
const RESERVED_PATH_PREFIXES: [&str; 2] = ["/_hpki", "/.well-known/hpki-gateway"];

/// Top-level sections, in the order the reference documents them.
const SECTIONS: [&str; 14] = [
    "server",
    "admin",
    "assertion",
    "trust",
    "route",
    "limits",
    "timeouts",
    "revocation",
    "store",
    "confirm",
    "emergency",
    "audit",
    "log",
    "reload",
];

pub const DEFAULT_STORE_URL: &str = "sqlite://var/hpki-gateway.db";

// ---------------------------------------------------------------------------------------
// The validated configuration
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Directory of the config file; every relative path in the file resolves against it.
    pub base_dir: PathBuf,
    pub server: ServerSection,
    pub admin: AdminSection,
    pub assertion: AssertionSection,
    /// `[[trust]]`, at least one.
    pub trust: Vec<TrustSection>,
    /// `[[route]]`, at least one, in file order.
    pub routes: Vec<RouteSection>,
    pub limits: LimitsSection,
    pub timeouts: TimeoutsSection,
    /// `[revocation]`: CRL and OCSP fetching for every profile.
    pub revocation: RevocationFetch,
    /// `[store]`: where the ledger, held writes and emergency grants live.
    pub store: StoreSection,
    /// `[confirm]`: held writes awaiting a supervising doctor.
    pub confirm: ConfirmSection,
    /// `[emergency]`: break-glass access.
    pub emergency: EmergencySection,
    /// `[audit]`: the tamper-evident audit log.
    pub audit: AuditSection,
    /// `[log]`: operational logs (tracing).
    pub log: LogSection,
    /// `[reload]`: trust-store rotation without a restart.
    pub reload: ReloadSection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSection {
    /// Watch the trust directories and the server certificate and key, and reload when
    /// they change (then hold still for one interval).
    pub watch: bool,
    pub watch_interval: Duration,
    /// How long a connection whose certificate no longer validates after a reload (its
    /// CA removed, its certificate revoked) may live on before it is closed.
    pub grace: Duration,
}

impl Default for ReloadSection {
    fn default() -> Self {
        ReloadSection {
            watch: true,
            watch_interval: Duration::from_secs(2),
            grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOnFailure {
    /// Answer 503 `audit_unavailable` rather than serve what cannot be recorded.
    Refuse,
    /// Serve anyway (the failure is logged and counted).
    Serve,
}

impl AuditOnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOnFailure::Refuse => "refuse",
            AuditOnFailure::Serve => "serve",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSection {
    pub dir: PathBuf,
    /// This gateway's name in every record and its directory under `dir`.
    pub node: String,
    pub segment_max_bytes: u64,
    pub fsync_interval: Duration,
    pub fsync_records: usize,
    /// File holding the HMAC key that makes a rewrite of the whole chain detectable.
    pub hmac_key: Option<PathBuf>,
    pub retention_days: u32,
    pub on_failure: AuditOnFailure,
}

pub const DEFAULT_RETENTION_DAYS: u32 = 1827;

impl AuditSection {
    fn defaults(base: &Path) -> AuditSection {
        AuditSection {
            dir: base.join("var/audit"),
            node: default_node(),
            segment_max_bytes: 64 * 1024 * 1024,
            fsync_interval: Duration::from_secs(1),
            fsync_records: 1000,
            hmac_key: None,
            retention_days: DEFAULT_RETENTION_DAYS,
            on_failure: AuditOnFailure::Refuse,
        }
    }
}

/// The host name, as the node id when none is configured.
fn default_node() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "node".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSection {
    /// A tracing filter (`info`, `hpki_gateway=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSection {
    /// `sqlite://FILE` (relative to the config file's directory) or `postgres://...`.
    pub url: String,
    /// How long a ledger or emergency-grant lookup is reused; 0 = every request asks
    /// the store. Changes made on another gateway are seen after at most this long.
    pub cache_ttl: Duration,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: DEFAULT_STORE_URL.into(),
            cache_ttl: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmSection {
    /// Largest body a held write may carry (bigger → 413).
    pub max_body: u64,
    /// A held write not decided within this time expires.
    pub expire_after: Duration,
    /// Confirming needs the doctor's signature over the confirmation text, made with an
    /// HPKI signing certificate (docs/confirmation-signature.md).
    pub require_signature: bool,
    /// The `kind = "signing"` trust profile that validates signing certificates: the one
    /// named, else the only signing profile; `None` when there is none.
    pub signing_profile: Option<String>,
}

impl Default for ConfirmSection {
    fn default() -> Self {
        ConfirmSection {
            max_body: 1024 * 1024,
            expire_after: Duration::from_secs(7 * 24 * 3600),
            require_signature: false,
            signing_profile: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencySection {
    /// hcRole strings that may open a grant.
    pub allow_roles: Vec<String>,
    pub duration: Duration,
}

impl Default for EmergencySection {
    fn default() -> Self {
        EmergencySection {
            allow_roles: vec!["Medical Doctor".into(), "Dentist".into()],
            duration: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSection {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub tls_profile: TlsProfile,
    pub client_auth: ClientAuth,
    /// Offer h2 in ALPN (default true).
    pub http2: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsProfile {
    /// `"hpki-card"`: TLS 1.2 only, ECDHE + AES-GCM, no RSA-PSS in CertificateRequest.
    #[default]
    HpkiCard,
    /// `"cryptrec-high"`: TLS 1.2 and 1.3, AES-GCM only.
    CryptrecHigh,
}

impl TlsProfile {
    pub const ALL: [TlsProfile; 2] = [TlsProfile::HpkiCard, TlsProfile::CryptrecHigh];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsProfile::HpkiCard => "hpki-card",
            TlsProfile::CryptrecHigh => "cryptrec-high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientAuth {
    #[default]
    Required,
    /// Lets users without a card reach `allow_anonymous` routes.
    Optional,
}

impl ClientAuth {
    pub const ALL: [ClientAuth; 2] = [ClientAuth::Required, ClientAuth::Optional];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSection {
    pub listen: SocketAddr,
    /// A Unix socket to serve on instead of `listen`.
    pub socket: Option<PathBuf>,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("DEFAULT_ADMIN_LISTEN is a socket address"),
            socket: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSection {
    /// ES256 signing key, PKCS#8 PEM.
    pub key: PathBuf,
    pub issuer: String,
    pub lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSection {
    pub name: String,
    pub dir: PathBuf,
    pub kind: TrustKind,
    /// Dotted OIDs, validated and without a trailing dot.
    pub require_policies: Vec<String>,
    pub max_intermediates: usize,
    pub revocation: RevocationPolicy,
}

/// Where revocation status comes from, in the order tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationSource {
    Crl,
    Ocsp,
}

impl RevocationSource {
    pub const ALL: [RevocationSource; 2] = [RevocationSource::Crl, RevocationSource::Ocsp];
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationSource::Crl => "crl",
            RevocationSource::Ocsp => "ocsp",
        }
    }
}

/// Which certificates of a path are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationDepth {
    /// Only the end-entity certificate.
    Leaf,
    /// Every certificate below the anchor (CAs against the root's ARL).
    Chain,
}

impl RevocationDepth {
    pub const ALL: [RevocationDepth; 2] = [RevocationDepth::Leaf, RevocationDepth::Chain];
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationDepth::Leaf => "leaf",
            RevocationDepth::Chain => "chain",
        }
    }
}

/// What happens when revocation status cannot be established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    Deny,
    Allow,
}

impl FailMode {
    pub const ALL: [FailMode; 2] = [FailMode::Deny, FailMode::Allow];
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Deny => "deny",
            FailMode::Allow => "allow",
        }
    }
}

/// `[[trust]] revocation.*`: the profile's revocation policy. Closed by default: a status
/// that cannot be established denies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationPolicy {
    /// Empty = no revocation checking for this profile.
    pub sources: Vec<RevocationSource>,
    pub depth: RevocationDepth,
    pub on_unavailable: FailMode,
    pub stale_crl: FailMode,
    pub stale_grace: Duration,
    pub ocsp_responder: Option<String>,
    pub crl_refresh: Duration,
    pub recheck: Duration,
}

impl Default for RevocationPolicy {
    fn default() -> Self {
        RevocationPolicy {
            sources: vec![RevocationSource::Crl, RevocationSource::Ocsp],
            depth: RevocationDepth::Chain,
            on_unavailable: FailMode::Deny,
            stale_crl: FailMode::Deny,
            stale_grace: Duration::from_secs(3600),
            ocsp_responder: None,
            crl_refresh: Duration::from_secs(15 * 60),
            recheck: Duration::from_secs(5 * 60),
        }
    }
}

/// Which hosts CRL and OCSP fetches may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchHosts {
    Any,
    Loopback,
}

impl FetchHosts {
    pub const ALL: [FetchHosts; 2] = [FetchHosts::Any, FetchHosts::Loopback];
    pub fn as_str(self) -> &'static str {
        match self {
            FetchHosts::Any => "any",
            FetchHosts::Loopback => "loopback",
        }
    }
}

/// `[revocation]`: how the gateway fetches CRLs and OCSP responses (all profiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationFetch {
    pub fetch_timeout: Duration,
    pub max_crl_size: u64,
    pub hosts: FetchHosts,
    pub ocsp_cache_entries: u64,
    pub ocsp_negative_ttl: Duration,
    pub clock_skew: Duration,
    pub ocsp_nonce: bool,
}

impl Default for RevocationFetch {
    fn default() -> Self {
        RevocationFetch {
            fetch_timeout: Duration::from_secs(10),
            max_crl_size: 128 * 1024 * 1024,
            hosts: FetchHosts::Any,
            ocsp_cache_entries: 100_000,
            ocsp_negative_ttl: Duration::from_secs(30),
            clock_skew: Duration::from_secs(300),
            ocsp_nonce: false,
        }
    }
}

/// What a trust profile validates: login certificates of a person or an organization, or
/// signing certificates (a doctor's signature on a confirmation), never used for login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustKind {
    Person,
    Organization,
    Signing,
}

impl TrustKind {
    pub const ALL: [TrustKind; 3] = [
        TrustKind::Person,
        TrustKind::Organization,
        TrustKind::Signing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrustKind::Person => "person",
            TrustKind::Organization => "organization",
            TrustKind::Signing => "signing",
        }
    }

    /// The kind of holder a login through this profile identifies; `None` for a signing
    /// profile, which no login goes through.
    pub fn login_kind(self) -> Option<crate::pki::CertKind> {
        match self {
            TrustKind::Person => Some(crate::pki::CertKind::Person),
            TrustKind::Organization => Some(crate::pki::CertKind::Organization),
            TrustKind::Signing => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKindConfig {
    Person,
    Organization,
}

impl CertKindConfig {
    pub const ALL: [CertKindConfig; 2] = [CertKindConfig::Person, CertKindConfig::Organization];

    pub fn as_str(self) -> &'static str {
        match self {
            CertKindConfig::Person => "person",
            CertKindConfig::Organization => "organization",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSection {
    /// `None` = any host. Otherwise an exact host name, lowercased, without a port.
    pub host: Option<String>,
    /// Starts with '/'; no trailing '/' except for the root path itself.
    pub path: String,
    pub upstream: Upstream,
    /// PEM CA bundle; present exactly when the upstream is https.
    pub upstream_ca: Option<PathBuf>,
    /// hcRole strings, matched exactly; empty = no role requirement.
    pub allow_roles: Vec<String>,
    /// Never empty; default `[Person]`.
    pub allow_kinds: Vec<CertKindConfig>,
    pub allow_anonymous: bool,
    /// Validated (only "assistant") for the write-confirmation feature.
    pub hold_writes_from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: UpstreamScheme,
    /// Lowercased host name or IP address; an IPv6 address is stored without brackets.
    pub host: String,
    pub port: u16,
    /// `""` or `"/base"` without a trailing slash.
    pub base_path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamScheme {
    Http,
    Https,
}

impl UpstreamScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamScheme::Http => "http",
            UpstreamScheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            UpstreamScheme::Http => 80,
            UpstreamScheme::Https => 443,
        }
    }
}

impl Upstream {
    /// `host:port`, with an IPv6 address in brackets: what goes in a Host header or a
    /// connect call.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.base_path
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSection {
    /// Bytes.
    pub max_request_body: u64,
    pub max_request_headers: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutsSection {
    pub header_read: Duration,
    pub idle: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub shutdown_grace: Duration,
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        TimeoutsSection {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a config cannot be used: every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (for `from_toml_str`, the base directory it was given).
    pub file: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `server.listen`, `route[2].upstream`, `trust[0].require_policies[1]`,
    /// `(syntax)` for TOML syntax, `(file)` when the file cannot be read.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", self.file.display(), problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

impl Config {
    /// Reads, parses and validates. On failure lists every problem found.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // Absolute so that resolved paths stay right if the process later changes its
        // working directory; not canonicalized, so symlinked config dirs keep their names.
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        match std::fs::read_to_string(&file) {
            Ok(text) => parse_and_validate(&text, &base_dir, file),
            Err(e) => Err(ConfigError {
                problems: vec![ConfigProblem {
                    key: "(file)".into(),
                    message: format!(
                        "cannot read the config file: {e}: check the --config path and its permissions"
                    ),
                }],
                file,
            }),
        }
    }

    /// Parses and validates `text` as if it were a file in `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        parse_and_validate(text, base_dir, base_dir.to_path_buf())
    }
}

fn parse_and_validate(text: &str, base_dir: &Path, file: PathBuf) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let config = match text.parse::<toml::Table>() {
        Ok(table) => validate(&table, base_dir, &mut problems),
        Err(e) => {
            // toml's Display is a multi-line snippet; keep its first line (the position)
            // so the error stays one line per problem.
            let rendered = e.to_string();
            let position = rendered.lines().next().unwrap_or("TOML parse error");
            problems.push(
                "(syntax)",
                format!(
                    "{position}: {}: fix the TOML syntax there (strings need quotes, \
                     each key once per table)",
                    e.message()
                ),
            );
            None
        }
    };
    match config {
        Some(config) if problems.0.is_empty() => Ok(config),
        _ => {
            if problems.0.is_empty() {
                // Every validator that returns None pushes a problem first; this guards
                // against a future one that forgets.
                problems.push(
                    "(internal)",
                    "config rejected without a reason: report this bug",
                );
            }
            Err(ConfigError {
                file,
                problems: problems.0,
            })
        }
    }
}

fn validate(table: &toml::Table, base: &Path, problems: &mut Problems) -> Option<Config> {
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            problems.push(key.clone(), unknown_section_message(key));
        }
    }

    let server = match table.get("server") {
        Some(v) => section::<RawServer>(v, "server", problems)
            .and_then(|raw| validate_server(raw, base, problems)),
        None => {
            problems.push(
                "server",
                "missing: add a [server] section with listen, cert and key, like \
                 [server] listen = \"127.0.0.1:8443\" cert = \"server.pem\" key = \"server.key\"",
            );
            None
        }
    };
    let admin = match table.get("admin") {
        Some(v) => section::<RawAdmin>(v, "admin", problems)
            .and_then(|raw| validate_admin(raw, base, problems)),
        None => Some(AdminSection::default()),
    };
    let assertion = match table.get("assertion") {
        Some(v) => section::<RawAssertion>(v, "assertion", problems)
            .and_then(|raw| validate_assertion(raw, base, problems)),
        None => {
            problems.push(
                "assertion",
                "missing: add an [assertion] section naming the ES256 signing key, like \
                 [assertion] key = \"assertion-es256.pem\"",
            );
            None
        }
    };
    let trust =
        array_of_sections::<RawTrust>(table.get("trust"), "trust", problems).and_then(|raws| {
            let mut names = HashSet::new();
            let validated: Vec<Option<TrustSection>> = raws
                .into_iter()
                .enumerate()
                .map(|(i, raw)| validate_trust(i, raw, base, &mut names, problems))
                .collect();
            validated.into_iter().collect::<Option<Vec<_>>>()
        });
    let routes =
        array_of_sections::<RawRoute>(table.get("route"), "route", problems).and_then(|raws| {
            let validated: Vec<Option<RouteSection>> = raws
                .into_iter()
                .enumerate()
                .map(|(i, raw)| validate_route(i, raw, base, problems))
                .collect();
            check_duplicate_routes(&validated, problems);
            validated.into_iter().collect::<Option<Vec<_>>>()
        });
    let limits = match table.get("limits") {
        Some(v) => section::<RawLimits>(v, "limits", problems)
            .and_then(|raw| validate_limits(raw, problems)),
        None => Some(LimitsSection::default()),
    };
    let timeouts = match table.get("timeouts") {
        Some(v) => section::<RawTimeouts>(v, "timeouts", problems)
            .and_then(|raw| validate_timeouts(raw, problems)),
        None => Some(TimeoutsSection::default()),
    };
    let revocation = match table.get("revocation") {
        Some(v) => section::<RawRevocationFetch>(v, "revocation", problems)
            .and_then(|raw| validate_revocation_fetch(raw, problems)),
        None => Some(RevocationFetch::default()),
    };

    let store = match table.get("store") {
        Some(v) => {
            section::<RawStore>(v, "store", problems).and_then(|raw| validate_store(raw, problems))
        }
        None => Some(StoreSection::default()),
    };
    let mut confirm = match table.get("confirm") {
        Some(v) => section::<RawConfirm>(v, "confirm", problems)
            .and_then(|raw| validate_confirm(raw, problems)),
        None => Some(ConfirmSection::default()),
    };
    let audit = match table.get("audit") {
        Some(v) => section::<RawAudit>(v, "audit", problems)
            .and_then(|raw| validate_audit(raw, base, problems)),
        None => Some(AuditSection::defaults(base)),
    };
    let log = match table.get("log") {
        Some(v) => {
            section::<RawLog>(v, "log", problems).and_then(|raw| validate_log(raw, problems))
        }
        None => Some(LogSection::default()),
    };
    let reload = match table.get("reload") {
        Some(v) => section::<RawReload>(v, "reload", problems).and_then(|raw| {
            let d = ReloadSection::default();
            let watch_interval = match raw.watch_interval {
                None => Some(d.watch_interval),
                Some(s) => positive_duration(&s, "reload.watch_interval", problems),
            };
            let grace = match raw.grace {
                None => Some(d.grace),
                Some(s) => match parse_duration(&s.0) {
                    Ok(g) => Some(g),
                    Err(why) => {
                        problems.push("reload.grace", why);
                        None
                    }
                },
            };
            Some(ReloadSection {
                watch: raw.watch.unwrap_or(d.watch),
                watch_interval: watch_interval?,
                grace: grace?,
            })
        }),
        None => Some(ReloadSection::default()),
    };
    let emergency = match table.get("emergency") {
        Some(v) => section::<RawEmergency>(v, "emergency", problems)
            .and_then(|raw| validate_emergency(raw, problems)),
        None => Some(EmergencySection::default()),
    };

    // Cross-section: the signing profile `[confirm]` names is a `[[trust]]` profile.
    let confirm_resolved = match (&mut confirm, &trust) {
        (Some(confirm), Some(trust)) => resolve_signing_profile(confirm, trust, problems),
        _ => Some(()),
    };
    if let Some(trust) = &trust {
        if trust.iter().all(|t| t.kind == TrustKind::Signing) {
            problems.push(
                "trust",
                "every profile has kind = \"signing\", so nobody can log in: add a login \
                 profile with kind = \"person\" or \"organization\", like [[trust]] \
                 name = \"hpki-auth\" dir = \"trust/hpki-auth\" kind = \"person\"",
            );
        }
    }

    if let (Some(server), Some(admin)) = (&server, &admin) {
        if listeners_overlap(server.listen, admin.listen) {
            problems.push(
                "admin.listen",
                format!(
                    "{} overlaps server.listen {}: give the admin API its own port, \
                     like listen = \"{DEFAULT_ADMIN_LISTEN}\"",
                    admin.listen, server.listen
                ),
            );
        }
    }

    Some(Config {
        base_dir: base.to_path_buf(),
        server: server?,
        admin: admin?,
        assertion: assertion?,
        trust: trust?,
        routes: routes?,
        limits: limits?,
        timeouts: timeouts?,
        revocation: revocation?,
        store: store?,
        confirm: confirm_resolved.and(confirm)?,
        emergency: emergency?,
        audit: audit?,
        log: log?,
        reload: reload?,
    })
}

fn unknown_section_message(key: &str) -> String {
    let later = String::new();
    let hint = closest(key, &SECTIONS)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!(
        "unknown section{later}{hint}: the allowed sections are {}",
        SECTIONS.join(", ")
    )
}

/// The candidate within edit distance 2 of `word`, for "did you mean".
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

// ---------------------------------------------------------------------------------------
// Raw structs: every field optional so that serde only judges names and types; whether a
// key is required, and whether its value makes sense, is decided in validation where the
// message can name the key and the fix.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    tls_profile: Option<String>,
    client_auth: Option<String>,
    http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: Option<String>,
    socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAssertion {
    key: Option<String>,
    issuer: Option<String>,
    lifetime: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTrust {
    name: Option<String>,
    dir: Option<String>,
    kind: Option<String>,
    require_policies: Option<Vec<String>>,
    max_intermediates: Option<usize>,
    revocation: Option<RawRevocationPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRevocationPolicy {
    sources: Option<Vec<String>>,
    depth: Option<String>,
    on_unavailable: Option<String>,
    stale_crl: Option<String>,
    stale_grace: Option<Scalar>,
    ocsp_responder: Option<String>,
    crl_refresh: Option<Scalar>,
    recheck: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRevocationFetch {
    fetch_timeout: Option<Scalar>,
    max_crl_size: Option<Scalar>,
    hosts: Option<String>,
    ocsp_cache_entries: Option<u64>,
    ocsp_negative_ttl: Option<Scalar>,
    clock_skew: Option<Scalar>,
    ocsp_nonce: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRoute {
    host: Option<String>,
    path: Option<String>,
    upstream: Option<String>,
    upstream_ca: Option<String>,
    allow_roles: Option<Vec<String>>,
    allow_kinds: Option<Vec<String>>,
    allow_anonymous: Option<bool>,
    hold_writes_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    url: Option<String>,
    cache_ttl: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfirm {
    max_body: Option<Scalar>,
    expire_after: Option<Scalar>,
    require_signature: Option<bool>,
    signing_profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    dir: Option<String>,
    node: Option<String>,
    segment_max_bytes: Option<Scalar>,
    fsync_interval: Option<Scalar>,
    fsync_records: Option<usize>,
    hmac_key: Option<String>,
    retention_days: Option<u32>,
    on_failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReload {
    watch: Option<bool>,
    watch_interval: Option<Scalar>,
    grace: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEmergency {
    allow_roles: Option<Vec<String>>,
    duration: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_request_body: Option<Scalar>,
    max_request_headers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimeouts {
    header_read: Option<Scalar>,
    idle: Option<Scalar>,
    upstream_connect: Option<Scalar>,
    upstream_response: Option<Scalar>,
    shutdown_grace: Option<Scalar>,
}

/// A duration or size as written: `"10s"` / `"64MiB"` or a bare integer (seconds / bytes).
/// Kept as text so that parsing happens in validation, where the message names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string like \"10s\" or \"64MiB\", or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Deserializes one `[section]` table. Serde stops at the first bad field, so on failure
/// each key is retried on its own to report every bad key by name, and the section is
/// built from the good keys so that validation can still report problems in those.
fn section<T: DeserializeOwned + Default>(
    value: &toml::Value,
    prefix: &str,
    problems: &mut Problems,
) -> Option<T> {
    let Some(table) = value.as_table() else {
        problems.push(
            prefix,
            format!(
                "must be a table, not a {}: write it as a [{}] section",
                value.type_str(),
                section_name(prefix)
            ),
        );
        return None;
    };
    if let Ok(parsed) = toml::Value::Table(table.clone()).try_into::<T>() {
        return Some(parsed);
    }
    let mut good = toml::Table::new();
    for (key, v) in table {
        let mut single = toml::Table::new();
        single.insert(key.clone(), v.clone());
        match toml::Value::Table(single).try_into::<T>() {
            Ok(_) => {
                good.insert(key.clone(), v.clone());
            }
            Err(e) => {
                let path = format!("{prefix}.{key}");
                let message = field_error_message(&path, e.message());
                problems.push(path, message);
            }
        }
    }
    match toml::Value::Table(good).try_into::<T>() {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            problems.push(prefix, e.message().to_string());
            None
        }
    }
}

/// `[[name]]`: an array of tables, at least one.
fn array_of_sections<T: DeserializeOwned + Default>(
    value: Option<&toml::Value>,
    name: &str,
    problems: &mut Problems,
) -> Option<Vec<T>> {
    let what = if name == "trust" {
        "trust profile"
    } else {
        "route"
    };
    let Some(value) = value else {
        problems.push(
            name,
            format!(
                "missing: add at least one [[{name}]] section (one per {what}), like {}",
                section_example(name)
            ),
        );
        return None;
    };
    let Some(items) = value.as_array() else {
        problems.push(
            name,
            format!(
                "must be an array of tables, not a {}: write each {what} as [[{name}]] \
                 (double brackets)",
                value.type_str()
            ),
        );
        return None;
    };
    if items.is_empty() {
        problems.push(
            name,
            format!(
                "is empty: add at least one [[{name}]] section, like {}",
                section_example(name)
            ),
        );
        return None;
    }
    let parsed: Vec<Option<T>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| section::<T>(item, &format!("{name}[{i}]"), problems))
        .collect();
    parsed.into_iter().collect()
}

/// `route[3]` → `route`, for messages that show the section header.
fn section_name(prefix: &str) -> &str {
    prefix.split(['[', '.']).next().unwrap_or(prefix)
}

fn section_example(name: &str) -> &'static str {
    match name {
        "trust" => {
            "[[trust]] name = \"hpki-auth\" dir = \"trust/hpki-auth\" kind = \"person\" \
             require_policies = [\"1.2.392.100495.1.5.1.2\"]"
        }
        _ => "[[route]] path = \"/\" upstream = \"http://127.0.0.1:9000\"",
    }
}

fn field_error_message(path: &str, serde_message: &str) -> String {
    if serde_message.starts_with("unknown field") {
        format!("{serde_message}: fix the spelling or remove the key")
    } else {
        match example(path) {
            Some(example) => format!("{serde_message}: write it like {example}"),
            None => serde_message.to_string(),
        }
    }
}

/// An example line for a key, used in "missing" and wrong-type messages.
fn example(path: &str) -> Option<&'static str> {
    // route[3].path → route.path
    let mut generic = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => generic.push(c),
            _ => {}
        }
    }
    Some(match generic.as_str() {
        "server.listen" => "listen = \"127.0.0.1:8443\"",
        "server.cert" => "cert = \"server.pem\"",
        "server.key" => "key = \"server.key\"",
        "server.tls_profile" => "tls_profile = \"hpki-card\"",
        "server.client_auth" => "client_auth = \"required\"",
        "server.http2" => "http2 = true",
        "admin.listen" => "listen = \"127.0.0.1:9900\"",
        "assertion.key" => "key = \"assertion-es256.pem\"",
        "assertion.issuer" => "issuer = \"hpki-gateway\"",
        "assertion.lifetime" => "lifetime = \"60s\"",
        "trust.name" => "name = \"hpki-auth\"",
        "trust.dir" => "dir = \"trust/hpki-auth\"",
        "trust.kind" => "kind = \"person\"",
        "trust.require_policies" => "require_policies = [\"1.2.392.100495.1.5.1.2\"]",
        "trust.max_intermediates" => "max_intermediates = 6",
        "route.host" => "host = \"portal.example.jp\"",
        "route.path" => "path = \"/\"",
        "route.upstream" => "upstream = \"http://127.0.0.1:9000\"",
        "route.upstream_ca" => "upstream_ca = \"upstream-ca.pem\"",
        "route.allow_roles" => "allow_roles = [\"Medical Doctor\", \"Pharmacist\"]",
        "route.allow_kinds" => "allow_kinds = [\"person\", \"organization\"]",
        "route.allow_anonymous" => "allow_anonymous = false",
        "route.hold_writes_from" => "hold_writes_from = [\"assistant\"]",
        "limits.max_request_body" => "max_request_body = \"64MiB\"",
        "confirm.expire_after" => "expire_after = \"7d\"",
        "confirm.require_signature" => "require_signature = true",
        "confirm.signing_profile" => "signing_profile = \"hpki-sign\"",
        "emergency.duration" => "duration = \"30m\"",
        "reload.watch_interval" => "watch_interval = \"2s\"",
        "limits.max_request_headers" => "max_request_headers = 100",
        "timeouts.header_read" => "header_read = \"10s\"",
        "timeouts.idle" => "idle = \"60s\"",
        "timeouts.upstream_connect" => "upstream_connect = \"5s\"",
        "timeouts.upstream_response" => "upstream_response = \"60s\"",
        "timeouts.shutdown_grace" => "shutdown_grace = \"30s\"",
        _ => return None,
    })
}

fn missing(path: &str, problems: &mut Problems) {
    // A key whose value had the wrong type was dropped before validation and has its
    // problem already; "missing" on top would be wrong.
    if problems.0.iter().any(|p| p.key == path) {
        return;
    }
    let fix = example(path)
        .map(|e| format!(": add {e}"))
        .unwrap_or_default();
    problems.push(path, format!("missing{fix}"));
}

// ---------------------------------------------------------------------------------------
// Section validators. Each returns None only after pushing at least one problem.
// ---------------------------------------------------------------------------------------

fn validate_server(raw: RawServer, base: &Path, problems: &mut Problems) -> Option<ServerSection> {
    let listen = required(raw.listen, "server.listen", problems)
        .and_then(|s| listen_address(&s, "server.listen", "127.0.0.1:8443", problems));
    let cert = required(raw.cert, "server.cert", problems)
        .and_then(|s| existing_file(&s, "server.cert", base, problems));
    let key = required(raw.key, "server.key", problems)
        .and_then(|s| existing_file(&s, "server.key", base, problems));
    let tls_profile = match raw.tls_profile {
        None => Some(TlsProfile::default()),
        Some(s) => one_of(
            &s,
            "server.tls_profile",
            &TlsProfile::ALL,
            |p| p.as_str(),
            problems,
        ),
    };
    let client_auth = match raw.client_auth {
        None => Some(ClientAuth::default()),
        Some(s) => one_of(
            &s,
            "server.client_auth",
            &ClientAuth::ALL,
            |c| c.as_str(),
            problems,
        ),
    };
    Some(ServerSection {
        listen: listen?,
        cert: cert?,
        key: key?,
        tls_profile: tls_profile?,
        client_auth: client_auth?,
        http2: raw.http2.unwrap_or(true),
    })
}

fn validate_admin(raw: RawAdmin, base: &Path, problems: &mut Problems) -> Option<AdminSection> {
    let listen = match raw.listen {
        None => Some(AdminSection::default().listen),
        Some(s) => listen_address(&s, "admin.listen", DEFAULT_ADMIN_LISTEN, problems),
    };
    let socket = match raw.socket {
        None => None,
        Some(s) if s.trim().is_empty() => {
            problems.push(
                "admin.socket",
                "is empty: give a path like socket = \"/run/hpki-gateway/admin.sock\" or remove it",
            );
            return None;
        }
        Some(s) => Some(base.join(s)),
    };
    Some(AdminSection {
        listen: listen?,
        socket,
    })
}

fn validate_assertion(
    raw: RawAssertion,
    base: &Path,
    problems: &mut Problems,
) -> Option<AssertionSection> {
    let key = required(raw.key, "assertion.key", problems)
        .and_then(|s| existing_file(&s, "assertion.key", base, problems));
    let issuer = match raw.issuer {
        None => Some(DEFAULT_ASSERTION_ISSUER.to_string()),
        Some(s) if s.trim().is_empty() => {
            problems.push(
                "assertion.issuer",
                "is empty: downstream verifiers check the iss claim against it; write it like \
                 issuer = \"hpki-gateway\" or remove the key for that default",
            );
            None
        }
        Some(s) => Some(s),
    };
    let lifetime = match raw.lifetime {
        None => Some(DEFAULT_ASSERTION_LIFETIME),
        Some(s) => positive_duration(&s, "assertion.lifetime", problems),
    };
    Some(AssertionSection {
        key: key?,
        issuer: issuer?,
        lifetime: lifetime?,
    })
}

fn validate_trust(
    index: usize,
    raw: RawTrust,
    base: &Path,
    names: &mut HashSet<String>,
    problems: &mut Problems,
) -> Option<TrustSection> {
    let prefix = format!("trust[{index}]");
    let name = required(raw.name, &format!("{prefix}.name"), problems)
        .and_then(|s| trust_name(s, &format!("{prefix}.name"), names, problems));
    let dir = required(raw.dir, &format!("{prefix}.dir"), problems)
        .and_then(|s| trust_dir(&s, &format!("{prefix}.dir"), base, problems));
    let kind = required(raw.kind, &format!("{prefix}.kind"), problems).and_then(|s| {
        one_of(
            &s,
            &format!("{prefix}.kind"),
            &TrustKind::ALL,
            |k| k.as_str(),
            problems,
        )
    });
    let mut policies_ok = true;
    let mut require_policies = Vec::new();
    for (i, oid) in raw.require_policies.unwrap_or_default().iter().enumerate() {
        match normalize_oid(oid) {
            Ok(oid) => require_policies.push(oid),
            Err(why) => {
                policies_ok = false;
                problems.push(
                    format!("{prefix}.require_policies[{i}]"),
                    format!(
                        "\"{oid}\" is not a dotted OID ({why}): write it like \
                         \"1.2.392.100495.1.5.1.2\""
                    ),
                );
            }
        }
    }
    let revocation = validate_revocation_policy(
        raw.revocation.unwrap_or_default(),
        &format!("{prefix}.revocation"),
        problems,
    );
    Some(TrustSection {
        name: name?,
        dir: dir?,
        kind: kind?,
        require_policies: policies_ok.then_some(require_policies)?,
        max_intermediates: raw.max_intermediates.unwrap_or(DEFAULT_MAX_INTERMEDIATES),
        revocation: revocation?,
    })
}

fn validate_revocation_policy(
    raw: RawRevocationPolicy,
    prefix: &str,
    problems: &mut Problems,
) -> Option<RevocationPolicy> {
    let d = RevocationPolicy::default();
    let mut ok = true;
    let mut sources = Vec::new();
    if let Some(list) = raw.sources {
        for (i, s) in list.iter().enumerate() {
            match one_of(
                s,
                &format!("{prefix}.sources[{i}]"),
                &RevocationSource::ALL,
                |v| v.as_str(),
                problems,
            ) {
                Some(src) if sources.contains(&src) => {
                    problems.push(
                        format!("{prefix}.sources[{i}]"),
                        format!(
                            "\"{s}\" is listed twice: list each source once, in the order to try"
                        ),
                    );
                    ok = false;
                }
                Some(src) => sources.push(src),
                None => ok = false,
            }
        }
    } else {
        sources = d.sources.clone();
    }
    let pick = |v: Option<String>, key: &str| v.map(|v| (v, format!("{prefix}.{key}")));
    let depth = match pick(raw.depth, "depth") {
        None => Some(d.depth),
        Some((v, k)) => one_of(&v, &k, &RevocationDepth::ALL, |x| x.as_str(), problems),
    };
    let on_unavailable = match pick(raw.on_unavailable, "on_unavailable") {
        None => Some(d.on_unavailable),
        Some((v, k)) => one_of(&v, &k, &FailMode::ALL, |x| x.as_str(), problems),
    };
    let stale_crl = match pick(raw.stale_crl, "stale_crl") {
        None => Some(d.stale_crl),
        Some((v, k)) => one_of(&v, &k, &FailMode::ALL, |x| x.as_str(), problems),
    };
    let mut duration = |v: Option<Scalar>, key: &str, default: Duration, zero_ok: bool| match v {
        None => Some(default),
        Some(s) if zero_ok => match parse_duration(&s.0) {
            Ok(d) => Some(d),
            Err(why) => {
                problems.push(format!("{prefix}.{key}"), why);
                None
            }
        },
        Some(s) => positive_duration(&s, &format!("{prefix}.{key}"), problems),
    };
    let stale_grace = duration(raw.stale_grace, "stale_grace", d.stale_grace, true);
    let crl_refresh = duration(raw.crl_refresh, "crl_refresh", d.crl_refresh, false);
    let recheck = duration(raw.recheck, "recheck", d.recheck, true);
    let ocsp_responder = match raw.ocsp_responder {
        None => Some(None),
        Some(url) if url.starts_with("http://") && url.len() > "http://".len() => Some(Some(url)),
        Some(url) => {
            problems.push(
                format!("{prefix}.ocsp_responder"),
                format!("\"{url}\" is not an http:// URL: OCSP is plain HTTP, write it like \"http://ocsp.example.jp/\""),
            );
            None
        }
    };
    if !ok {
        return None;
    }
    Some(RevocationPolicy {
        sources,
        depth: depth?,
        on_unavailable: on_unavailable?,
        stale_crl: stale_crl?,
        stale_grace: stale_grace?,
        ocsp_responder: ocsp_responder?,
        crl_refresh: crl_refresh?,
        recheck: recheck?,
    })
}

fn validate_revocation_fetch(
    raw: RawRevocationFetch,
    problems: &mut Problems,
) -> Option<RevocationFetch> {
    let d = RevocationFetch::default();
    let mut dur = |v: Option<Scalar>, key: &str, default: Duration| match v {
        None => Some(default),
        Some(s) => positive_duration(&s, &format!("revocation.{key}"), problems),
    };
    let fetch_timeout = dur(raw.fetch_timeout, "fetch_timeout", d.fetch_timeout);
    let ocsp_negative_ttl = dur(
        raw.ocsp_negative_ttl,
        "ocsp_negative_ttl",
        d.ocsp_negative_ttl,
    );
    let clock_skew = dur(raw.clock_skew, "clock_skew", d.clock_skew);
    let max_crl_size = match raw.max_crl_size {
        None => Some(d.max_crl_size),
        Some(Scalar(s)) => match parse_size(&s) {
            Ok(n) if n > 0 => Some(n),
            Ok(_) => {
                problems.push(
                    "revocation.max_crl_size",
                    "must be more than 0: write it like max_crl_size = \"128MiB\"",
                );
                None
            }
            Err(why) => {
                problems.push("revocation.max_crl_size", why);
                None
            }
        },
    };
    let hosts = match raw.hosts {
        None => Some(d.hosts),
        Some(v) => one_of(
            &v,
            "revocation.hosts",
            &FetchHosts::ALL,
            |x| x.as_str(),
            problems,
        ),
    };
    Some(RevocationFetch {
        fetch_timeout: fetch_timeout?,
        max_crl_size: max_crl_size?,
        hosts: hosts?,
        ocsp_cache_entries: raw
            .ocsp_cache_entries
            .unwrap_or(d.ocsp_cache_entries)
            .max(1),
        ocsp_negative_ttl: ocsp_negative_ttl?,
        clock_skew: clock_skew?,
        ocsp_nonce: raw.ocsp_nonce.unwrap_or(d.ocsp_nonce),
    })
}

fn trust_name(
    name: String,
    key: &str,
    seen: &mut HashSet<String>,
    problems: &mut Problems,
) -> Option<String> {
    // The name appears in logs, metrics labels and the audit log, so keep it plain.
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() {
        problems.push(
            key,
            "is empty: name the profile with lowercase letters, digits and '-', like \"hpki-auth\"",
        );
        return None;
    }
    if !name.chars().all(plain) {
        problems.push(
            key,
            format!(
                "\"{name}\" may contain only lowercase letters, digits and '-': \
                 write it like \"hpki-auth\""
            ),
        );
        return None;
    }
    if !seen.insert(name.clone()) {
        problems.push(
            key,
            format!("\"{name}\" is used by an earlier [[trust]]: give each profile its own name"),
        );
        return None;
    }
    Some(name)
}

fn trust_dir(s: &str, key: &str, base: &Path, problems: &mut Problems) -> Option<PathBuf> {
    let dir = resolve(s, key, base, problems)?;
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        problems.push(
            key,
            format!(
                "{} {why}{}: point it at a trust directory holding anchors/ \
                 (and optionally intermediates/, crls/)",
                dir.display(),
                relative_note(s, base)
            ),
        );
        return None;
    }
    if !dir.join("anchors").is_dir() {
        problems.push(
            key,
            format!(
                "{} has no anchors/ directory: put the trust anchor certificates in {}",
                dir.display(),
                dir.join("anchors").display()
            ),
        );
        return None;
    }
    Some(dir)
}

fn validate_route(
    index: usize,
    raw: RawRoute,
    base: &Path,
    problems: &mut Problems,
) -> Option<RouteSection> {
    let prefix = format!("route[{index}]");
    let key = |field: &str| format!("{prefix}.{field}");

    let host = match raw.host {
        None => Some(None),
        Some(h) => route_host(&h, &key("host"), problems),
    };
    let path = required(raw.path, &key("path"), problems)
        .and_then(|p| route_path(&p, &key("path"), problems));
    let upstream =
        required(raw.upstream, &key("upstream"), problems).and_then(|u| match parse_upstream(&u) {
            Ok(u) => Some(u),
            Err(why) => {
                problems.push(key("upstream"), why);
                None
            }
        });

    let (upstream_ca, upstream_ca_ok) = match (&upstream, raw.upstream_ca) {
        (Some(u), None) if u.scheme == UpstreamScheme::Https => {
            problems.push(
                key("upstream_ca"),
                "missing: an https upstream needs the PEM CA bundle that issued its \
                 certificate (there is no insecure mode): add upstream_ca = \"upstream-ca.pem\"",
            );
            (None, false)
        }
        (Some(u), Some(_)) if u.scheme == UpstreamScheme::Http => {
            // Almost always a half-finished switch to https; say so instead of ignoring it.
            problems.push(
                key("upstream_ca"),
                "is only used with an https:// upstream: remove it, or write the upstream \
                 as https://",
            );
            (None, false)
        }
        (_, Some(ca)) => {
            let ca = existing_file(&ca, &key("upstream_ca"), base, problems);
            let ok = ca.is_some();
            (ca, ok)
        }
        (_, None) => (None, true),
    };

    let mut roles_ok = true;
    let allow_roles = raw.allow_roles.unwrap_or_default();
    for (i, role) in allow_roles.iter().enumerate() {
        if role.trim().is_empty() {
            roles_ok = false;
            problems.push(
                format!("{prefix}.allow_roles[{i}]"),
                "is empty: write an hcRole like \"Medical Doctor\", or remove the entry",
            );
        } else if role.trim() != role {
            // Roles match exactly; a stray space would make the route refuse everyone.
            roles_ok = false;
            problems.push(
                format!("{prefix}.allow_roles[{i}]"),
                format!(
                    "\"{role}\" has leading or trailing spaces and would never match: \
                     write \"{}\"",
                    role.trim()
                ),
            );
        }
    }

    let allow_kinds = match raw.allow_kinds {
        None => Some(vec![CertKindConfig::Person]),
        Some(kinds) if kinds.is_empty() => {
            problems.push(
                key("allow_kinds"),
                "is empty, so no certificate could use the route: list \"person\" and/or \
                 \"organization\", or remove the key for the default [\"person\"]",
            );
            None
        }
        Some(kinds) => {
            let mut parsed = Vec::new();
            let mut ok = true;
            for (i, kind) in kinds.iter().enumerate() {
                match one_of(
                    kind,
                    &format!("{prefix}.allow_kinds[{i}]"),
                    &CertKindConfig::ALL,
                    |k| k.as_str(),
                    problems,
                ) {
                    Some(k) if !parsed.contains(&k) => parsed.push(k),
                    Some(_) => {}
                    None => ok = false,
                }
            }
            ok.then_some(parsed)
        }
    };

    let allow_anonymous = raw.allow_anonymous.unwrap_or(false);
    let anonymous_ok = !allow_anonymous || allow_roles.is_empty();
    if !anonymous_ok {
        problems.push(
            key("allow_anonymous"),
            "contradicts allow_roles (an anonymous user has no role): remove allow_roles, \
             or set allow_anonymous = false",
        );
    }

    let mut holds_ok = true;
    let hold_writes_from = raw.hold_writes_from.unwrap_or_default();
    for (i, who) in hold_writes_from.iter().enumerate() {
        if who != "assistant" {
            holds_ok = false;
            problems.push(
                format!("{prefix}.hold_writes_from[{i}]"),
                format!("\"{who}\" is not supported: the only allowed value is \"assistant\""),
            );
        }
    }
    // Assistants come with organization cards, which carry no hcRole: a route that holds
    // their writes must let them in, or the holding could never happen.
    if holds_ok && !hold_writes_from.is_empty() {
        if !allow_roles.is_empty() {
            holds_ok = false;
            problems.push(
                format!("{prefix}.hold_writes_from"),
                "assistants use organization cards, which carry no hcRole, so allow_roles \
                 would refuse them: remove allow_roles from this route (put doctors-only \
                 paths in a route of their own)",
            );
        }
        if allow_kinds
            .as_ref()
            .is_some_and(|k| !k.contains(&CertKindConfig::Organization))
        {
            holds_ok = false;
            problems.push(
                format!("{prefix}.hold_writes_from"),
                "assistants use organization cards: add \"organization\" to allow_kinds, \
                 like allow_kinds = [\"person\", \"organization\"]",
            );
        }
    }

    if !(upstream_ca_ok && roles_ok && anonymous_ok && holds_ok) {
        return None;
    }
    Some(RouteSection {
        host: host?,
        path: path?,
        upstream: upstream?,
        upstream_ca,
        allow_roles,
        allow_kinds: allow_kinds?,
        allow_anonymous,
        hold_writes_from,
    })
}

/// Host names match case-insensitively and without the port, so store them lowercased.
/// `Some(None)` is any host; `None` means a problem was reported.
fn route_host(host: &str, key: &str, problems: &mut Problems) -> Option<Option<String>> {
    if host == "*" {
        return Some(None);
    }
    let lower = host.to_ascii_lowercase();
    if lower.starts_with('[') && lower.ends_with(']') {
        if lower[1..lower.len() - 1].parse::<Ipv6Addr>().is_ok() {
            return Some(Some(lower));
        }
    } else if lower.starts_with("*.") {
        problems.push(
            key,
            format!(
                "\"{host}\": wildcard host names are not supported: write one [[route]] per \
                 host name, or host = \"*\" for any host"
            ),
        );
        return None;
    } else if lower.contains(':') && !lower.contains("::") && lower.matches(':').count() == 1 {
        let bare = lower.split(':').next().unwrap_or_default();
        problems.push(
            key,
            format!("\"{host}\" has a port: write the host name alone, like host = \"{bare}\""),
        );
        return None;
    } else if is_dns_name(&lower) {
        return Some(Some(lower));
    }
    problems.push(
        key,
        format!(
            "\"{host}\" is not a host name: write it like host = \"portal.example.jp\", \
             or \"*\" for any host"
        ),
    );
    None
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn route_path(path: &str, key: &str, problems: &mut Problems) -> Option<String> {
    if !path.starts_with('/') {
        problems.push(
            key,
            format!("\"{path}\" must start with '/': write it like path = \"/{path}\""),
        );
        return None;
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
    {
        problems.push(
            key,
            format!(
                "\"{path}\" contains {c:?}: a route path is a plain path prefix, without \
                 spaces, query or fragment"
            ),
        );
        return None;
    }
    if path
        .split('/')
        .skip(1)
        .any(|segment| segment == "." || segment == "..")
    {
        problems.push(
            key,
            format!("\"{path}\" contains a '.' or '..' segment: write the path without them"),
        );
        return None;
    }
    // "/api/" and "/api" would otherwise be two routes that look the same to a reader.
    let normalized = match path.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    };
    if RESERVED_PATH_PREFIXES
        .iter()
        .any(|r| normalized == *r || normalized.starts_with(&format!("{r}/")))
    {
        problems.push(
            key,
            format!(
                "\"{path}\" is served by the gateway itself ({} are reserved): choose \
                 another path",
                RESERVED_PATH_PREFIXES.join(" and ")
            ),
        );
        return None;
    }
    Some(normalized)
}

fn check_duplicate_routes(routes: &[Option<RouteSection>], problems: &mut Problems) {
    for (j, later) in routes.iter().enumerate() {
        let Some(later) = later else { continue };
        let earlier = routes[..j].iter().position(|r| {
            r.as_ref()
                .is_some_and(|r| r.host == later.host && r.path == later.path)
        });
        if let Some(i) = earlier {
            problems.push(
                format!("route[{j}]"),
                format!(
                    "has the same host ({}) and path (\"{}\") as route[{i}], so it could never be \
                     chosen: merge the two routes or change one",
                    later.host.as_deref().unwrap_or("any"),
                    later.path
                ),
            );
        }
    }
}

fn validate_store(raw: RawStore, problems: &mut Problems) -> Option<StoreSection> {
    let defaults = StoreSection::default();
    let url = match raw.url {
        None => Some(defaults.url),
        Some(u) if u.starts_with("sqlite://") && u.len() > "sqlite://".len() => Some(u),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Some(u),
        Some(u) => {
            problems.push(
                "store.url",
                format!(
                    "{:?} is neither sqlite://FILE nor postgres://USER@HOST/DB: write it like {}",
                    crate::store::redact_url(&u),
                    "url = \"sqlite://var/hpki-gateway.db\""
                ),
            );
            None
        }
    };
    let cache_ttl = match raw.cache_ttl {
        None => Some(defaults.cache_ttl),
        Some(s) => match parse_duration(&s.0) {
            Ok(d) => Some(d),
            Err(why) => {
                problems.push("store.cache_ttl", why);
                None
            }
        },
    };
    Some(StoreSection {
        url: url?,
        cache_ttl: cache_ttl?,
    })
}

fn validate_confirm(raw: RawConfirm, problems: &mut Problems) -> Option<ConfirmSection> {
    let defaults = ConfirmSection::default();
    let max_body = match raw.max_body {
        None => Some(defaults.max_body),
        Some(Scalar(s)) => match parse_size(&s) {
            Ok(0) => {
                problems.push(
                    "confirm.max_body",
                    "must be more than 0: write it like max_body = \"1MiB\"",
                );
                None
            }
            Ok(n) => Some(n),
            Err(why) => {
                problems.push("confirm.max_body", why);
                None
            }
        },
    };
    let expire_after = match raw.expire_after {
        None => Some(defaults.expire_after),
        Some(s) => positive_duration(&s, "confirm.expire_after", problems),
    };
    Some(ConfirmSection {
        max_body: max_body?,
        expire_after: expire_after?,
        require_signature: raw.require_signature.unwrap_or(defaults.require_signature),
        signing_profile: raw.signing_profile,
    })
}

/// Resolves `confirm.signing_profile` against the trust profiles: the one named must be a
/// `kind = "signing"` profile; unnamed, the only signing profile is used. Signatures
/// required with no signing profile to check them is refused.
fn resolve_signing_profile(
    confirm: &mut ConfirmSection,
    trust: &[TrustSection],
    problems: &mut Problems,
) -> Option<()> {
    let signing: Vec<&str> = trust
        .iter()
        .filter(|t| t.kind == TrustKind::Signing)
        .map(|t| t.name.as_str())
        .collect();
    match confirm.signing_profile.as_deref() {
        Some(name) => match trust.iter().find(|t| t.name == name) {
            Some(t) if t.kind == TrustKind::Signing => Some(()),
            Some(t) => {
                problems.push(
                    "confirm.signing_profile",
                    format!(
                        "\"{name}\" is a kind = \"{}\" profile, which validates login \
                         certificates: name a [[trust]] profile with kind = \"signing\"{}",
                        t.kind.as_str(),
                        one_of_these(&signing)
                    ),
                );
                None
            }
            None => {
                problems.push(
                    "confirm.signing_profile",
                    format!(
                        "\"{name}\" is not the name of a [[trust]] profile: name a profile with \
                         kind = \"signing\"{}",
                        one_of_these(&signing)
                    ),
                );
                None
            }
        },
        None => match signing.as_slice() {
            [] if confirm.require_signature => {
                problems.push(
                    "confirm.require_signature",
                    "is true but no [[trust]] profile has kind = \"signing\" to validate the \
                     doctors' signing certificates: add one (its anchors and intermediates are \
                     the HPKI signing CA, like [[trust]] name = \"hpki-sign\" \
                     dir = \"trust/hpki-sign\" kind = \"signing\" \
                     require_policies = [\"1.2.392.100495.1.5.1.1\"]), or set \
                     require_signature = false",
                );
                None
            }
            [] => Some(()),
            [only] => {
                confirm.signing_profile = Some((*only).to_owned());
                Some(())
            }
            several => {
                if confirm.require_signature {
                    problems.push(
                        "confirm.signing_profile",
                        format!(
                            "missing: {} profiles have kind = \"signing\" ({}): name the one \
                             that validates confirmations, like signing_profile = \"{}\"",
                            several.len(),
                            several.join(", "),
                            several[0]
                        ),
                    );
                    None
                } else {
                    Some(())
                }
            }
        },
    }
}

/// ` (one of: a, b)` for a message, or ` (there is none yet)`.
fn one_of_these(names: &[&str]) -> String {
    if names.is_empty() {
        " (there is none yet)".into()
    } else {
        format!(" (one of: {})", names.join(", "))
    }
}

fn validate_audit(raw: RawAudit, base: &Path, problems: &mut Problems) -> Option<AuditSection> {
    let d = AuditSection::defaults(base);
    let mut ok = true;
    let node = match raw.node {
        None => d.node,
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !n.starts_with('.') =>
        {
            n
        }
        Some(n) => {
            ok = false;
            problems.push(
                "audit.node",
                format!(
                    "{n:?} is not a node id: use 1 to 64 letters, digits, '-', '_' or '.', like node = \"gw-1\""
                ),
            );
            String::new()
        }
    };
    let segment_max_bytes = match raw.segment_max_bytes {
        None => d.segment_max_bytes,
        Some(Scalar(s)) => match parse_size(&s) {
            Ok(n) if n >= 4096 => n,
            Ok(_) => {
                ok = false;
                problems.push(
                    "audit.segment_max_bytes",
                    "must be at least 4KiB: write it like segment_max_bytes = \"64MiB\"",
                );
                0
            }
            Err(why) => {
                ok = false;
                problems.push("audit.segment_max_bytes", why);
                0
            }
        },
    };
    let fsync_interval = match raw.fsync_interval {
        None => Some(d.fsync_interval),
        Some(s) => positive_duration(&s, "audit.fsync_interval", problems),
    };
    let fsync_records = match raw.fsync_records {
        None | Some(1..) => raw.fsync_records.unwrap_or(d.fsync_records),
        Some(0) => {
            ok = false;
            problems.push(
                "audit.fsync_records",
                "must be more than 0: write it like fsync_records = 1000",
            );
            0
        }
    };
    let retention_days = match raw.retention_days {
        None => d.retention_days,
        Some(n) if n >= DEFAULT_RETENTION_DAYS => n,
        Some(n) => {
            ok = false;
            problems.push(
                "audit.retention_days",
                format!(
                    "{n} is less than the five years ({DEFAULT_RETENTION_DAYS} days) the regional \
                     networks require: remove the key or write a larger number"
                ),
            );
            0
        }
    };
    let on_failure = match raw.on_failure.as_deref() {
        None | Some("refuse") => AuditOnFailure::Refuse,
        Some("serve") => AuditOnFailure::Serve,
        Some(other) => {
            ok = false;
            problems.push(
                "audit.on_failure",
                format!("{other:?} is not \"refuse\" or \"serve\""),
            );
            AuditOnFailure::Refuse
        }
    };
    let hmac_key = raw.hmac_key.map(|k| base.join(k));
    let dir = raw.dir.map(|p| base.join(p)).unwrap_or(d.dir);
    (ok && fsync_interval.is_some()).then(|| AuditSection {
        dir,
        node,
        segment_max_bytes,
        fsync_interval: fsync_interval.unwrap_or_default(),
        fsync_records,
        hmac_key,
        retention_days,
        on_failure,
    })
}

fn validate_log(raw: RawLog, problems: &mut Problems) -> Option<LogSection> {
    let d = LogSection::default();
    let format = match raw.format.as_deref() {
        None | Some("pretty") => Some(LogFormat::Pretty),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            problems.push(
                "log.format",
                format!("{other:?} is not \"pretty\" or \"json\""),
            );
            None
        }
    };
    let level = match raw.level {
        None => Some(d.level),
        Some(l) => match tracing_subscriber::EnvFilter::try_new(&l) {
            Ok(_) => Some(l),
            Err(e) => {
                problems.push(
                    "log.level",
                    format!("{l:?} is not a log filter ({e}): write it like level = \"info\" or \"hpki_gateway=debug,info\""),
                );
                None
            }
        },
    };
    Some(LogSection {
        level: level?,
        format: format?,
    })
}

fn validate_emergency(raw: RawEmergency, problems: &mut Problems) -> Option<EmergencySection> {
    let defaults = EmergencySection::default();
    let allow_roles = raw.allow_roles.unwrap_or(defaults.allow_roles);
    let duration = match raw.duration {
        None => Some(defaults.duration),
        Some(s) => positive_duration(&s, "emergency.duration", problems),
    };
    Some(EmergencySection {
        allow_roles,
        duration: duration?,
    })
}

fn validate_limits(raw: RawLimits, problems: &mut Problems) -> Option<LimitsSection> {
    let max_request_body = match raw.max_request_body {
        None => Some(DEFAULT_MAX_REQUEST_BODY),
        Some(Scalar(s)) => match parse_size(&s) {
            Ok(0) => {
                problems.push(
                    "limits.max_request_body",
                    "must be more than 0: write it like max_request_body = \"64MiB\"",
                );
                None
            }
            Ok(n) => Some(n),
            Err(why) => {
                problems.push("limits.max_request_body", why);
                None
            }
        },
    };
    let max_request_headers = match raw.max_request_headers {
        None => Some(DEFAULT_MAX_REQUEST_HEADERS),
        Some(0) => {
            problems.push(
                "limits.max_request_headers",
                "must be more than 0: write it like max_request_headers = 100",
            );
            None
        }
        Some(n) => Some(n),
    };
    Some(LimitsSection {
        max_request_body: max_request_body?,
        max_request_headers: max_request_headers?,
    })
}

fn validate_timeouts(raw: RawTimeouts, problems: &mut Problems) -> Option<TimeoutsSection> {
    let defaults = TimeoutsSection::default();
    let mut one = |value: Option<Scalar>, key: &str, default: Duration| match value {
        None => Some(default),
        Some(s) => positive_duration(&s, key, problems),
    };
    let header_read = one(
        raw.header_read,
        "timeouts.header_read",
        defaults.header_read,
    );
    let idle = one(raw.idle, "timeouts.idle", defaults.idle);
    let upstream_connect = one(
        raw.upstream_connect,
        "timeouts.upstream_connect",
        defaults.upstream_connect,
    );
    let upstream_response = one(
        raw.upstream_response,
        "timeouts.upstream_response",
        defaults.upstream_response,
    );
    let shutdown_grace = one(
        raw.shutdown_grace,
        "timeouts.shutdown_grace",
        defaults.shutdown_grace,
    );
    Some(TimeoutsSection {
        header_read: header_read?,
        idle: idle?,
        upstream_connect: upstream_connect?,
        upstream_response: upstream_response?,
        shutdown_grace: shutdown_grace?,
    })
}

// ---------------------------------------------------------------------------------------
// Value checks
// ---------------------------------------------------------------------------------------

fn required(value: Option<String>, key: &str, problems: &mut Problems) -> Option<String> {
    if value.is_none() {
        missing(key, problems);
    }
    value
}

fn one_of<T: Copy>(
    value: &str,
    key: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    problems: &mut Problems,
) -> Option<T> {
    if let Some(found) = all.iter().copied().find(|v| name(*v) == value) {
        return Some(found);
    }
    let allowed: Vec<String> = all.iter().map(|v| format!("\"{}\"", name(*v))).collect();
    problems.push(
        key,
        format!(
            "\"{value}\" is not one of the allowed values: write one of {}",
            allowed.join(", ")
        ),
    );
    None
}

fn listen_address(s: &str, key: &str, like: &str, problems: &mut Problems) -> Option<SocketAddr> {
    match s.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(
                key,
                format!(
                    "\"{s}\" is not an IP address and port: write it like {like} \
                     (or [::]:{} for every interface; host names are not accepted)",
                    like.rsplit(':').next().unwrap_or("8443")
                ),
            );
            None
        }
    }
}

/// Whether two listeners would fight over the same port.
fn listeners_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn resolve(s: &str, key: &str, base: &Path, problems: &mut Problems) -> Option<PathBuf> {
    if s.trim().is_empty() {
        let fix = example(key)
            .map(|e| format!(": write it like {e}"))
            .unwrap_or_default();
        problems.push(key, format!("is empty{fix}"));
        return None;
    }
    Some(base.join(s))
}

fn relative_note(s: &str, base: &Path) -> String {
    if Path::new(s).is_relative() {
        format!(
            " (relative paths resolve against the config file's directory, {})",
            base.display()
        )
    } else {
        String::new()
    }
}

fn existing_file(s: &str, key: &str, base: &Path, problems: &mut Problems) -> Option<PathBuf> {
    let path = resolve(s, key, base, problems)?;
    let why = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be inspected ({e})"),
        Ok(meta) if meta.is_dir() => "is a directory, not a file".to_string(),
        Ok(_) => match std::fs::File::open(&path) {
            Ok(_) => return Some(path),
            Err(e) => format!("cannot be read ({e}): check its permissions"),
        },
    };
    problems.push(
        key,
        format!(
            "{} {why}{}: fix the path",
            path.display(),
            relative_note(s, base)
        ),
    );
    None
}

fn positive_duration(value: &Scalar, key: &str, problems: &mut Problems) -> Option<Duration> {
    match parse_duration(&value.0) {
        Ok(d) if d.is_zero() => {
            let fix = example(key)
                .map(|e| format!(": write it like {e}"))
                .unwrap_or_default();
            problems.push(key, format!("must be more than 0{fix}"));
            None
        }
        Ok(d) => Some(d),
        Err(why) => {
            problems.push(key, why);
            None
        }
    }
}

/// A dotted OID with at least two numeric arcs, each fitting 32 bits like the PKI code
/// that matches them. A trailing dot is tolerated because HPKI documents write arcs so;
/// it is removed from the result.
fn normalize_oid(s: &str) -> Result<String, &'static str> {
    let trimmed = s.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    let arcs: Vec<&str> = trimmed.split('.').collect();
    if arcs.len() < 2 {
        return Err("it needs at least two arcs");
    }
    for arc in &arcs {
        if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
            return Err("arcs are numbers separated by single dots");
        }
        if arc.len() > 1 && arc.starts_with('0') {
            return Err("an arc has a leading zero");
        }
        if arc.parse::<u32>().is_err() {
            return Err("an arc is too large");
        }
    }
    // X.660: the first arc is 0, 1 or 2, and under 0 or 1 the second is below 40.
    let first: u32 = arcs[0].parse().unwrap_or(u32::MAX);
    let second: u32 = arcs[1].parse().unwrap_or(u32::MAX);
    if first > 2 {
        return Err("the first arc must be 0, 1 or 2");
    }
    if first < 2 && second >= 40 {
        return Err("under 0 and 1 the second arc must be below 40");
    }
    Ok(trimmed.to_string())
}

/// Parses `http://host[:port][/base]` or `https://...`; the port defaults to 80 / 443.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let like = "write it like http://127.0.0.1:9000";
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("http://") {
        (UpstreamScheme::Http, &s["http://".len()..])
    } else if lower.starts_with("https://") {
        (UpstreamScheme::Https, &s["https://".len()..])
    } else {
        return Err(format!("\"{s}\" is not an http:// or https:// URL: {like}"));
    };
    if rest.contains(['?', '#']) {
        return Err(format!(
            "\"{s}\" has a query or fragment: an upstream is a scheme, host, port and \
             optional base path; {like}"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "\"{s}\" contains credentials: they are not supported in an upstream URL; {like}"
        ));
    }
    let (host, port) = if let Some(after_bracket) = authority.strip_prefix('[') {
        let (inside, after) = after_bracket
            .split_once(']')
            .ok_or_else(|| format!("\"{s}\" has an unclosed '[' in its host: {like}"))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "\"{s}\": [{inside}] is not an IPv6 address: {like}"
            ));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                format!("\"{s}\": expected ':port' after the IPv6 address: {like}")
            })?),
        };
        (inside.to_ascii_lowercase(), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if !host.contains(':') && !is_dns_name(&host) {
        return Err(format!("\"{s}\" has no valid host name: {like}"));
    }
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("\"{s}\": \"{p}\" is not a port (1-65535): {like}")),
        },
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "\"{s}\" has spaces in its path: percent-encode them or remove them"
        ));
    }
    Ok(Upstream {
        scheme,
        host,
        port,
        base_path: path.trim_end_matches('/').to_string(),
    })
}

/// `"500ms"`, `"5s"`, `"15m"`, `"1h"`, `"2d"`; a bare integer is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let reject = || {
        format!(
            "\"{s}\" is not a duration: write a whole number followed by ms, s, m, h or d, \
             like \"10s\", \"500ms\" or \"15m\""
        )
    };
    let (number, unit) = split_number(s).ok_or_else(reject)?;
    let millis_per_unit: u64 = match unit {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(reject()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("\"{s}\" is too long a duration: write a smaller one"))
}

/// `"1024"` (bytes), `"10kB"`, `"10MB"`, `"1GB"` (powers of 1000), `"64KiB"`, `"64MiB"`,
/// `"1GiB"` (powers of 1024); units are case-insensitive.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let reject = || {
        format!(
            "\"{s}\" is not a size: write a whole number of bytes, optionally followed by \
             kB, MB, GB (x1000) or KiB, MiB, GiB (x1024), like \"64MiB\""
        )
    };
    let (number, unit) = split_number(s).ok_or_else(reject)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(reject()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("\"{s}\" is too large a size: write a smaller one"))
}

/// Splits `"64 MiB"` into `(64, "MiB")`. None unless it starts with ASCII digits.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let number = s[..digits_end].parse::<u64>().ok()?;
    Some((number, s[digits_end..].trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8443"
cert = "server.pem"
key = "server.key"
tls_profile = "hpki-card"
client_auth = "required"

[assertion]
key = "assertion-es256.pem"

[[trust]]
name = "hpki-auth"
dir = "trust/hpki-auth"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2"]

[[route]]
path = "/"
upstream = "http://127.0.0.1:9000"
allow_roles = ["Medical Doctor", "Pharmacist"]
"#;

    /// A config directory holding every file the minimal config names.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            for file in [
                "server.pem",
                "server.key",
                "assertion-es256.pem",
                "upstream-ca.pem",
            ] {
                std::fs::write(dir.path().join(file), "-----BEGIN TEST-----\n").unwrap();
            }
            std::fs::create_dir_all(dir.path().join("trust/hpki-auth/anchors")).unwrap();
            std::fs::create_dir_all(dir.path().join("trust/hpki-org/anchors")).unwrap();
            Fixture { dir }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn load(&self, text: &str) -> Result<Config, ConfigError> {
            let file = self.path().join("gateway.toml");
            std::fs::write(&file, text).unwrap();
            Config::load(&file)
        }

        fn problems(&self, text: &str) -> Vec<ConfigProblem> {
            match self.load(text) {
                Ok(config) => panic!("expected problems, the config loaded: {config:#?}"),
                Err(e) => {
                    assert_eq!(e.file, self.path().join("gateway.toml"));
                    e.problems
                }
            }
        }
    }

    /// Asserts a problem at exactly `key` whose message contains every needle.
    #[track_caller]
    fn assert_problem(problems: &[ConfigProblem], key: &str, needles: &[&str]) {
        let found = problems
            .iter()
            .any(|p| p.key == key && needles.iter().all(|n| p.message.contains(n)));
        assert!(
            found,
            "no problem at {key} mentioning {needles:?}; got:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn with(replacements: &[(&str, &str)]) -> String {
        let mut text = MINIMAL.to_string();
        for (from, to) in replacements {
            assert!(text.contains(from), "MINIMAL has no {from:?}");
            text = text.replacen(from, to, 1);
        }
        text
    }

    const SECOND_ROUTE: &str =
        "\n[[route]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:9001\"\n";

    #[test]
    fn minimal_config_loads_with_defaults_and_resolved_paths() {
        let fx = Fixture::new();
        let config = fx.load(MINIMAL).unwrap();
        let base = fx.path();
        assert_eq!(config.base_dir, base);
        assert_eq!(
            config.server,
            ServerSection {
                listen: "127.0.0.1:8443".parse().unwrap(),
                cert: base.join("server.pem"),
                key: base.join("server.key"),
                tls_profile: TlsProfile::HpkiCard,
                client_auth: ClientAuth::Required,
                http2: true,
            }
        );
        assert_eq!(config.admin.listen, "127.0.0.1:9900".parse().unwrap());
        assert_eq!(
            config.assertion,
            AssertionSection {
                key: base.join("assertion-es256.pem"),
                issuer: "hpki-gateway".into(),
                lifetime: Duration::from_secs(60),
            }
        );
        assert_eq!(
            config.trust,
            vec![TrustSection {
                name: "hpki-auth".into(),
                dir: base.join("trust/hpki-auth"),
                kind: TrustKind::Person,
                require_policies: vec!["1.2.392.100495.1.5.1.2".into()],
                max_intermediates: 6,
                revocation: RevocationPolicy::default(),
            }]
        );
        assert_eq!(
            config.routes,
            vec![RouteSection {
                host: None,
                path: "/".into(),
                upstream: Upstream {
                    scheme: UpstreamScheme::Http,
                    host: "127.0.0.1".into(),
                    port: 9000,
                    base_path: String::new(),
                },
                upstream_ca: None,
                allow_roles: vec!["Medical Doctor".into(), "Pharmacist".into()],
                allow_kinds: vec![CertKindConfig::Person],
                allow_anonymous: false,
                hold_writes_from: vec![],
            }]
        );
        assert_eq!(config.limits, LimitsSection::default());
        assert_eq!(config.limits.max_request_body, 64 * 1024 * 1024);
        assert_eq!(config.limits.max_request_headers, 100);
        assert_eq!(
            config.timeouts,
            TimeoutsSection {
                header_read: Duration::from_secs(10),
                idle: Duration::from_secs(60),
                upstream_connect: Duration::from_secs(5),
                upstream_response: Duration::from_secs(60),
                shutdown_grace: Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn from_toml_str_resolves_against_the_given_directory() {
        let fx = Fixture::new();
        let config = Config::from_toml_str(MINIMAL, fx.path()).unwrap();
        assert_eq!(config.server.cert, fx.path().join("server.pem"));
        assert_eq!(config.trust[0].dir, fx.path().join("trust/hpki-auth"));

        let elsewhere = tempfile::tempdir().unwrap();
        let err = Config::from_toml_str(MINIMAL, elsewhere.path()).unwrap_err();
        assert_eq!(err.file, elsewhere.path());
        assert_problem(
            &err.problems,
            "server.cert",
            &["does not exist", "relative paths"],
        );
    }

    #[test]
    fn absolute_paths_are_kept() {
        let fx = Fixture::new();
        let other = Fixture::new();
        let cert = other.path().join("server.pem");
        let text = with(&[(
            "cert = \"server.pem\"",
            &format!("cert = {:?}", cert.display().to_string()),
        )]);
        assert_eq!(fx.load(&text).unwrap().server.cert, cert);
    }

    #[test]
    fn every_key_set_to_a_non_default() {
        let fx = Fixture::new();
        let text = r#"
[server]
listen = "[::]:443"
cert = "server.pem"
key = "server.key"
tls_profile = "cryptrec-high"
client_auth = "optional"
http2 = false

[admin]
listen = "127.0.0.1:9901"

[assertion]
key = "assertion-es256.pem"
issuer = "clinic-gw"
lifetime = "2m"

[[trust]]
name = "hpki-auth"
dir = "trust/hpki-auth"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2.", "1.2.392.100495.1.5.1.3"]
max_intermediates = 2

[[trust]]
name = "hpki-org"
dir = "trust/hpki-org"
kind = "organization"

[[route]]
host = "Portal.Example.JP"
path = "/emr/"
upstream = "HTTPS://emr.internal:8443/base/"
upstream_ca = "upstream-ca.pem"
allow_kinds = ["person", "organization"]
hold_writes_from = ["assistant"]

[[route]]
host = "*"
path = "/public"
upstream = "http://[::1]/"
allow_anonymous = true

[[route]]
path = "/rx"
upstream = "http://127.0.0.1:9000"
allow_roles = ["Medical Doctor"]

[limits]
max_request_body = "10MB"
max_request_headers = 50

[store]
url = "postgres://gw:secret@db.internal/hpki"
cache_ttl = "0s"

[confirm]
max_body = "64KiB"
expire_after = "2d"

[emergency]
allow_roles = ["Medical Doctor"]
duration = "15m"

[timeouts]
header_read = 3
idle = "90s"
upstream_connect = "500ms"
upstream_response = "1h"
shutdown_grace = "1d"
"#;
        let config = fx.load(text).unwrap();
        assert_eq!(config.server.listen, "[::]:443".parse().unwrap());
        assert_eq!(config.server.tls_profile, TlsProfile::CryptrecHigh);
        assert_eq!(config.server.client_auth, ClientAuth::Optional);
        assert!(!config.server.http2);
        assert_eq!(config.admin.listen, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(config.assertion.issuer, "clinic-gw");
        assert_eq!(config.assertion.lifetime, Duration::from_secs(120));
        assert_eq!(
            config.trust[0].require_policies,
            vec!["1.2.392.100495.1.5.1.2", "1.2.392.100495.1.5.1.3"]
        );
        assert_eq!(config.trust[0].max_intermediates, 2);
        assert_eq!(config.trust[1].kind, TrustKind::Organization);
        assert!(config.trust[1].require_policies.is_empty());

        let emr = &config.routes[0];
        assert_eq!(emr.host.as_deref(), Some("portal.example.jp"));
        assert_eq!(emr.path, "/emr");
        assert_eq!(
            emr.upstream,
            Upstream {
                scheme: UpstreamScheme::Https,
                host: "emr.internal".into(),
                port: 8443,
                base_path: "/base".into(),
            }
        );
        assert_eq!(emr.upstream_ca, Some(fx.path().join("upstream-ca.pem")));
        assert_eq!(
            emr.allow_kinds,
            vec![CertKindConfig::Person, CertKindConfig::Organization]
        );
        assert_eq!(emr.hold_writes_from, vec!["assistant"]);
        assert_eq!(config.routes[2].allow_roles, vec!["Medical Doctor"]);
        assert_eq!(config.store.url, "postgres://gw:secret@db.internal/hpki");
        assert_eq!(config.store.cache_ttl, Duration::ZERO);
        assert_eq!(config.confirm.max_body, 64 * 1024);
        assert_eq!(config.confirm.expire_after, Duration::from_secs(2 * 86400));
        assert_eq!(config.emergency.allow_roles, vec!["Medical Doctor"]);
        assert_eq!(config.emergency.duration, Duration::from_secs(900));

        let public = &config.routes[1];
        assert_eq!(public.host, None);
        assert!(public.allow_anonymous);
        assert!(public.allow_roles.is_empty());
        assert_eq!(public.upstream.authority(), "[::1]:80");
        assert_eq!(public.upstream.to_string(), "http://[::1]:80");

        assert_eq!(config.limits.max_request_body, 10_000_000);
        assert_eq!(config.limits.max_request_headers, 50);
        assert_eq!(config.timeouts.header_read, Duration::from_secs(3));
        assert_eq!(config.timeouts.idle, Duration::from_secs(90));
        assert_eq!(config.timeouts.upstream_connect, Duration::from_millis(500));
        assert_eq!(config.timeouts.upstream_response, Duration::from_secs(3600));
        assert_eq!(config.timeouts.shutdown_grace, Duration::from_secs(86400));
    }

    #[test]
    fn signatures_on_confirmations_need_a_signing_profile() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.path().join("trust/hpki-sign/anchors")).unwrap();
        let sign = |name: &str| {
            format!(
                "\n[[trust]]\nname = \"{name}\"\ndir = \"trust/hpki-sign\"\nkind = \"signing\"\n\
                 require_policies = [\"1.2.392.100495.1.5.1.1\"]\n"
            )
        };
        // Off by default, and no signing profile needed then.
        let config = fx.load(&with(&[])).unwrap();
        assert!(!config.confirm.require_signature);
        assert_eq!(config.confirm.signing_profile, None);

        // Required without a signing profile: refused, naming the key and the fix.
        let problems = fx.problems(&(with(&[]) + "\n[confirm]\nrequire_signature = true\n"));
        assert_problem(
            &problems,
            "confirm.require_signature",
            &[
                "no [[trust]] profile has kind = \"signing\"",
                "kind = \"signing\"",
                "or set require_signature = false",
            ],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");

        // The only signing profile is the default; it is never a login profile.
        let text = with(&[]) + &sign("hpki-sign") + "\n[confirm]\nrequire_signature = true\n";
        let config = fx.load(&text).unwrap();
        assert!(config.confirm.require_signature);
        assert_eq!(config.confirm.signing_profile.as_deref(), Some("hpki-sign"));
        assert_eq!(config.trust[1].kind, TrustKind::Signing);
        assert_eq!(TrustKind::Signing.login_kind(), None);

        // Two signing profiles: name one.
        let two = with(&[]) + &sign("sign-a") + &sign("sign-b");
        let problems = fx.problems(&(two.clone() + "\n[confirm]\nrequire_signature = true\n"));
        assert_problem(
            &problems,
            "confirm.signing_profile",
            &[
                "2 profiles",
                "sign-a, sign-b",
                "signing_profile = \"sign-a\"",
            ],
        );
        let config = fx
            .load(
                &(two.clone()
                    + "\n[confirm]\nrequire_signature = true\nsigning_profile = \"sign-b\"\n"),
            )
            .unwrap();
        assert_eq!(config.confirm.signing_profile.as_deref(), Some("sign-b"));

        // A name that is not a signing profile.
        let problems = fx.problems(
            &(two.clone()
                + "\n[confirm]\nrequire_signature = true\nsigning_profile = \"hpki-auth\"\n"),
        );
        assert_problem(
            &problems,
            "confirm.signing_profile",
            &["kind = \"person\"", "sign-a, sign-b"],
        );
        let problems = fx.problems(&(two + "\n[confirm]\nsigning_profile = \"nope\"\n"));
        assert_problem(
            &problems,
            "confirm.signing_profile",
            &["\"nope\" is not the name of a [[trust]] profile"],
        );

        // Signing profiles alone let nobody log in.
        let text = with(&[("kind = \"person\"", "kind = \"signing\"")]);
        assert_problem(&fx.problems(&text), "trust", &["nobody can log in"]);
    }

    #[test]
    fn a_route_that_holds_assistants_writes_must_let_assistants_in() {
        let fx = Fixture::new();
        let text = with(&[]) + "\n[[route]]\npath = \"/records\"\nupstream = \"http://127.0.0.1:9000\"\nallow_roles = [\"Medical Doctor\"]\nallow_kinds = [\"person\", \"organization\"]\nhold_writes_from = [\"assistant\"]\n\n[[route]]\npath = \"/notes\"\nupstream = \"http://127.0.0.1:9000\"\nhold_writes_from = [\"assistant\"]\n";
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[1].hold_writes_from",
            &["carry no hcRole", "remove allow_roles"],
        );
        assert_problem(
            &problems,
            "route[2].hold_writes_from",
            &["add \"organization\" to allow_kinds"],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn empty_file_names_every_missing_section() {
        let fx = Fixture::new();
        let problems = fx.problems("");
        assert_problem(&problems, "server", &["missing", "[server]"]);
        assert_problem(&problems, "assertion", &["missing", "[assertion]"]);
        assert_problem(&problems, "trust", &["missing", "[[trust]]"]);
        assert_problem(&problems, "route", &["missing", "[[route]]"]);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn missing_required_keys_say_what_to_add() {
        let fx = Fixture::new();
        let text = with(&[
            ("listen = \"127.0.0.1:8443\"\n", ""),
            ("cert = \"server.pem\"\n", ""),
            ("key = \"assertion-es256.pem\"", "issuer = \"x\""),
            ("kind = \"person\"\n", ""),
            ("upstream = \"http://127.0.0.1:9000\"\n", ""),
        ]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "server.listen",
            &["missing", "listen = \"127.0.0.1:8443\""],
        );
        assert_problem(&problems, "server.cert", &["missing", "cert = "]);
        assert_problem(&problems, "assertion.key", &["missing", "key = "]);
        assert_problem(
            &problems,
            "trust[0].kind",
            &["missing", "kind = \"person\""],
        );
        assert_problem(&problems, "route[0].upstream", &["missing", "upstream = "]);
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn listen_addresses_must_parse() {
        let fx = Fixture::new();
        let text = with(&[("listen = \"127.0.0.1:8443\"", "listen = \"localhost:8443\"")])
            + "\n[admin]\nlisten = \"9900\"\n";
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "server.listen",
            &["\"localhost:8443\"", "write it like 127.0.0.1:8443"],
        );
        assert_problem(
            &problems,
            "admin.listen",
            &["\"9900\"", "write it like 127.0.0.1:9900"],
        );
    }

    #[test]
    fn admin_listener_must_not_overlap_the_server() {
        let fx = Fixture::new();
        let problems =
            fx.problems(&(MINIMAL.to_string() + "\n[admin]\nlisten = \"0.0.0.0:8443\"\n"));
        assert_problem(&problems, "admin.listen", &["overlaps server.listen"]);
        assert!(fx
            .load(&(MINIMAL.to_string() + "\n[admin]\nlisten = \"127.0.0.2:9900\"\n"))
            .is_ok());
    }

    #[test]
    fn enumerations_list_the_allowed_values() {
        let fx = Fixture::new();
        let text = with(&[
            ("\"hpki-card\"", "\"HPKI-card\""),
            ("\"required\"", "\"yes\""),
            ("kind = \"person\"", "kind = \"doctor\""),
        ]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "server.tls_profile",
            &["\"HPKI-card\"", "\"hpki-card\", \"cryptrec-high\""],
        );
        assert_problem(
            &problems,
            "server.client_auth",
            &["\"required\", \"optional\""],
        );
        assert_problem(
            &problems,
            "trust[0].kind",
            &["\"person\", \"organization\""],
        );
    }

    #[test]
    fn named_files_must_exist_and_be_files() {
        let fx = Fixture::new();
        std::fs::create_dir(fx.path().join("keydir")).unwrap();
        let text = with(&[
            ("cert = \"server.pem\"", "cert = \"nope.pem\""),
            ("key = \"server.key\"", "key = \"keydir\""),
            ("key = \"assertion-es256.pem\"", "key = \"\""),
        ]) + "\n[[route]]\npath = \"/s\"\nupstream = \"https://10.0.0.1\"\nupstream_ca = \"ca/missing.pem\"\n";
        let problems = fx.problems(&text);
        let base = fx.path().display().to_string();
        assert_problem(
            &problems,
            "server.cert",
            &["nope.pem", "does not exist", &base, "fix the path"],
        );
        assert_problem(&problems, "server.key", &["keydir", "is a directory"]);
        assert_problem(&problems, "assertion.key", &["is empty"]);
        assert_problem(
            &problems,
            "route[1].upstream_ca",
            &["missing.pem", "does not exist"],
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn trust_dirs_must_exist_and_hold_anchors() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.path().join("trust/empty")).unwrap();
        std::fs::write(fx.path().join("trust/file"), "").unwrap();
        let extra = |name: &str, dir: &str| {
            format!("\n[[trust]]\nname = \"{name}\"\ndir = \"{dir}\"\nkind = \"person\"\n")
        };
        let text = MINIMAL.to_string()
            + &extra("a", "trust/missing")
            + &extra("b", "trust/empty")
            + &extra("c", "trust/file");
        let problems = fx.problems(&text);
        assert_problem(&problems, "trust[1].dir", &["does not exist", "anchors/"]);
        assert_problem(&problems, "trust[2].dir", &["has no anchors/ directory"]);
        assert_problem(&problems, "trust[3].dir", &["is not a directory"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn trust_names_are_plain_non_empty_and_unique() {
        let fx = Fixture::new();
        let extra = |name: &str| {
            format!("\n[[trust]]\nname = \"{name}\"\ndir = \"trust/hpki-org\"\nkind = \"organization\"\n")
        };
        let text = MINIMAL.to_string() + &extra("") + &extra("HPKI_org") + &extra("hpki-auth");
        let problems = fx.problems(&text);
        assert_problem(&problems, "trust[1].name", &["is empty"]);
        assert_problem(
            &problems,
            "trust[2].name",
            &["\"HPKI_org\"", "lowercase letters, digits and '-'"],
        );
        assert_problem(
            &problems,
            "trust[3].name",
            &["\"hpki-auth\"", "earlier [[trust]]"],
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn policy_oids_are_validated_by_index() {
        let fx = Fixture::new();
        let text = with(&[(
            "require_policies = [\"1.2.392.100495.1.5.1.2\"]",
            "require_policies = [\"1.2.392.100495.1.5.1.2.\", \"hpki-auth\", \"1\", \"1.2..3\"]",
        )]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "trust[0].require_policies[1]",
            &[
                "\"hpki-auth\" is not a dotted OID",
                "1.2.392.100495.1.5.1.2",
            ],
        );
        assert_problem(
            &problems,
            "trust[0].require_policies[2]",
            &["at least two arcs"],
        );
        assert_problem(&problems, "trust[0].require_policies[3]", &["single dots"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn oid_validator() {
        assert_eq!(
            normalize_oid("1.2.392.100495.1.5.1.2.").unwrap(),
            "1.2.392.100495.1.5.1.2"
        );
        assert_eq!(normalize_oid("2.5").unwrap(), "2.5");
        assert_eq!(normalize_oid(" 2.999.1 ").unwrap(), "2.999.1");
        for bad in [
            "",
            ".",
            "1",
            "1.",
            "1..2",
            ".1.2",
            "a.b",
            "1.2.x",
            "1.02",
            "3.1",
            "1.40",
            "1.-2",
            "1.+2",
            "1.2.4294967296",
            "1.2..",
            "1 .2",
        ] {
            assert!(normalize_oid(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn routes_with_the_same_host_and_path_are_rejected() {
        let fx = Fixture::new();
        let route = |host: &str, path: &str| {
            let host = if host.is_empty() {
                String::new()
            } else {
                format!("host = \"{host}\"\n")
            };
            format!("\n[[route]]\n{host}path = \"{path}\"\nupstream = \"http://127.0.0.1:9001\"\n")
        };
        let text = MINIMAL.to_string()
            + &route("*", "/") // same as route[0]: "*" is any host
            + &route("portal.example.jp", "/api")
            + &route("PORTAL.example.jp", "/api/") // same after normalizing
            + &route("other.example.jp", "/api"); // different host: fine
        let problems = fx.problems(&text);
        assert_problem(&problems, "route[1]", &["same host (any)", "route[0]"]);
        assert_problem(
            &problems,
            "route[3]",
            &["portal.example.jp", "\"/api\"", "route[2]"],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn https_upstream_needs_a_ca_and_http_takes_none() {
        let fx = Fixture::new();
        let text = with(&[(
            "upstream = \"http://127.0.0.1:9000\"",
            "upstream = \"https://127.0.0.1:9000\"",
        )]) + "\n[[route]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:9001\"\nupstream_ca = \"upstream-ca.pem\"\n";
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[0].upstream_ca",
            &["missing", "https", "upstream_ca = "],
        );
        assert_problem(
            &problems,
            "route[1].upstream_ca",
            &["only used with an https://"],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn upstream_urls_are_checked() {
        let fx = Fixture::new();
        let text = with(&[(
            "upstream = \"http://127.0.0.1:9000\"",
            "upstream = \"htp://x\"",
        )]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[0].upstream",
            &[
                "\"htp://x\" is not an http:// or https:// URL",
                "write it like http://127.0.0.1:9000",
            ],
        );
    }

    #[test]
    fn upstream_parser() {
        let ok = |s: &str| parse_upstream(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let u = ok("http://127.0.0.1:9000");
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("127.0.0.1", 9000, "")
        );
        let u = ok("https://Portal.Internal/app/v1/");
        assert_eq!(u.scheme, UpstreamScheme::Https);
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("portal.internal", 443, "/app/v1")
        );
        assert_eq!(u.to_string(), "https://portal.internal:443/app/v1");
        let u = ok("http://[::1]:9000/");
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("::1", 9000, "")
        );
        assert_eq!(u.authority(), "[::1]:9000");
        for (bad, why) in [
            ("htp://x", "not an http:// or https:// URL"),
            ("127.0.0.1:9000", "not an http:// or https:// URL"),
            ("http://", "no valid host"),
            ("http://:9000", "no valid host"),
            ("http://host:0", "not a port"),
            ("http://host:70000", "not a port"),
            ("http://host:+80", "not a port"),
            ("http://host:", "not a port"),
            ("http://user:pw@host", "credentials"),
            ("http://host/x?y=1", "query or fragment"),
            ("http://host/#top", "query or fragment"),
            ("http://[::1", "unclosed"),
            ("http://[nope]:80", "not an IPv6 address"),
            ("http://[::1]80", "':port'"),
            ("http://ho st", "no valid host"),
            ("http://host/a b", "spaces"),
        ] {
            match parse_upstream(bad) {
                Ok(u) => panic!("{bad:?} accepted as {u:?}"),
                Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
            }
        }
    }

    #[test]
    fn role_entries_must_be_non_empty_and_unpadded() {
        let fx = Fixture::new();
        let text = with(&[(
            "allow_roles = [\"Medical Doctor\", \"Pharmacist\"]",
            "allow_roles = [\"Medical Doctor\", \"  \", \"Pharmacist \"]",
        )]);
        let problems = fx.problems(&text);
        assert_problem(&problems, "route[0].allow_roles[1]", &["is empty"]);
        assert_problem(
            &problems,
            "route[0].allow_roles[2]",
            &["write \"Pharmacist\""],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn anonymous_routes_cannot_require_roles() {
        let fx = Fixture::new();
        let text = with(&[("path = \"/\"", "path = \"/\"\nallow_anonymous = true")]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[0].allow_anonymous",
            &["contradicts allow_roles"],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn allow_kinds_are_checked() {
        let fx = Fixture::new();
        let text = MINIMAL.to_string()
            + "\n[[route]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nallow_kinds = []\n"
            + "\n[[route]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nallow_kinds = [\"person\", \"robot\"]\n";
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[1].allow_kinds",
            &["is empty", "default [\"person\"]"],
        );
        assert_problem(
            &problems,
            "route[2].allow_kinds[1]",
            &["\"robot\"", "\"person\", \"organization\""],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn hold_writes_from_accepts_only_assistant() {
        let fx = Fixture::new();
        let text = with(&[(
            "path = \"/\"",
            "path = \"/\"\nhold_writes_from = [\"assistant\", \"doctor\"]",
        )]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[0].hold_writes_from[1]",
            &["\"doctor\"", "\"assistant\""],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn route_paths_are_checked_and_normalized() {
        let fx = Fixture::new();
        let route = |i: usize, path: &str| {
            format!("\n[[route]]\nhost = \"h{i}.example\"\npath = \"{path}\"\nupstream = \"http://127.0.0.1:1\"\n")
        };
        let text = MINIMAL.to_string()
            + &route(1, "api")
            + &route(2, "/_hpki/whoami")
            + &route(3, "/.well-known/hpki-gateway")
            + &route(4, "/a?b")
            + &route(5, "/a/../b")
            + &route(6, "/_hpkix") // not reserved: only whole segments are
            + &route(7, "///");
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[1].path",
            &["must start with '/'", "path = \"/api\""],
        );
        assert_problem(
            &problems,
            "route[2].path",
            &["served by the gateway itself"],
        );
        assert_problem(
            &problems,
            "route[3].path",
            &["served by the gateway itself"],
        );
        assert_problem(&problems, "route[4].path", &["query"]);
        assert_problem(&problems, "route[5].path", &["'..'"]);
        assert_eq!(problems.len(), 5, "{problems:?}");

        let text = MINIMAL.to_string() + &route(6, "/_hpkix/") + &route(7, "///");
        let config = fx.load(&text).unwrap();
        assert_eq!(config.routes[1].path, "/_hpkix");
        assert_eq!(config.routes[2].path, "/");
    }

    #[test]
    fn route_hosts_are_checked() {
        let fx = Fixture::new();
        let route = |i: usize, host: &str| {
            format!("\n[[route]]\nhost = \"{host}\"\npath = \"/r{i}\"\nupstream = \"http://127.0.0.1:1\"\n")
        };
        let text = MINIMAL.to_string()
            + &route(1, "portal.example.jp:8443")
            + &route(2, "*.example.jp")
            + &route(3, "")
            + &route(4, "bad_host")
            + &route(5, "Portal.Example.JP")
            + &route(6, "[::1]");
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "route[1].host",
            &["has a port", "host = \"portal.example.jp\""],
        );
        assert_problem(&problems, "route[2].host", &["wildcard"]);
        assert_problem(&problems, "route[3].host", &["not a host name"]);
        assert_problem(
            &problems,
            "route[4].host",
            &["not a host name", "\"*\" for any host"],
        );
        assert_eq!(problems.len(), 4, "{problems:?}");

        let config = fx
            .load(&(MINIMAL.to_string() + &route(5, "Portal.Example.JP") + &route(6, "[::1]")))
            .unwrap();
        assert_eq!(config.routes[1].host.as_deref(), Some("portal.example.jp"));
        assert_eq!(config.routes[2].host.as_deref(), Some("[::1]"));
    }

    #[test]
    fn durations_must_parse_and_be_positive() {
        let fx = Fixture::new();
        let text = with(&[("key = \"assertion-es256.pem\"", "key = \"assertion-es256.pem\"\nlifetime = \"a minute\"")])
            + "\n[timeouts]\nheader_read = 0\nidle = \"0s\"\nupstream_connect = \"5 sec\"\nupstream_response = -1\nshutdown_grace = true\n";
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "assertion.lifetime",
            &["\"a minute\" is not a duration"],
        );
        assert_problem(
            &problems,
            "timeouts.header_read",
            &["more than 0", "header_read = \"10s\""],
        );
        assert_problem(&problems, "timeouts.idle", &["more than 0"]);
        assert_problem(
            &problems,
            "timeouts.upstream_connect",
            &["\"5 sec\" is not a duration"],
        );
        assert_problem(
            &problems,
            "timeouts.upstream_response",
            &["\"-1\" is not a duration"],
        );
        assert_problem(
            &problems,
            "timeouts.shutdown_grace",
            &["invalid type: boolean", "shutdown_grace = \"30s\""],
        );
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn limits_are_checked() {
        let fx = Fixture::new();
        let config = fx
            .load(&(MINIMAL.to_string() + "\n[limits]\nmax_request_body = 1024\n"))
            .unwrap();
        assert_eq!(config.limits.max_request_body, 1024);
        assert_eq!(config.limits.max_request_headers, 100);

        let problems = fx.problems(
            &(MINIMAL.to_string()
                + "\n[limits]\nmax_request_body = \"0MiB\"\nmax_request_headers = 0\n"),
        );
        assert_problem(&problems, "limits.max_request_body", &["more than 0"]);
        assert_problem(&problems, "limits.max_request_headers", &["more than 0"]);

        let problems = fx.problems(
            &(MINIMAL.to_string()
                + "\n[limits]\nmax_request_body = \"lots\"\nmax_request_headers = -5\n"),
        );
        assert_problem(
            &problems,
            "limits.max_request_body",
            &["\"lots\" is not a size", "64MiB"],
        );
        assert_problem(
            &problems,
            "limits.max_request_headers",
            &["invalid value", "max_request_headers = 100"],
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_path_and_the_allowed_keys() {
        let fx = Fixture::new();
        let text = with(&[
            (
                "client_auth = \"required\"",
                "client_auth = \"required\"\ncolour = \"blue\"",
            ),
            (
                "require_policies = [\"1.2.392.100495.1.5.1.2\"]",
                "require_policies = [\"1.2.392.100495.1.5.1.2\"]\nrevocation.source = [\"crl\"]",
            ),
        ]) + SECOND_ROUTE
            .replace("path = \"/api\"", "path = \"/api\"\nalow_roles = []")
            .as_str()
            + "\n[audt]\ndir = \"audit\"\n\n[store]\nurl = \"mysql://x\"\n\n[[routes]]\npath = \"/\"\n";
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "server.colour",
            &[
                "unknown field `colour`",
                "`listen`",
                "`http2`",
                "fix the spelling or remove",
            ],
        );
        assert_problem(
            &problems,
            "trust[0].revocation",
            &["unknown field `source`", "`sources`"],
        );
        assert_problem(
            &problems,
            "route[1].alow_roles",
            &["unknown field `alow_roles`", "`allow_roles`"],
        );
        assert_problem(
            &problems,
            "audt",
            &["unknown section", "did you mean `audit`?", "server, admin"],
        );
        assert_problem(
            &problems,
            "store.url",
            &["neither sqlite://FILE nor postgres://", "url = \"sqlite://"],
        );
        assert_problem(
            &problems,
            "routes",
            &["unknown section", "did you mean `route`?"],
        );
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn a_bad_key_does_not_hide_problems_in_the_rest_of_its_section() {
        let fx = Fixture::new();
        let text = with(&[
            (
                "listen = \"127.0.0.1:8443\"",
                "listen = 8443\nlisen = \"x\"",
            ),
            ("cert = \"server.pem\"", "cert = \"gone.pem\""),
        ]);
        let problems = fx.problems(&text);
        assert_problem(
            &problems,
            "server.listen",
            &[
                "invalid type: integer `8443`, expected a string",
                "listen = \"127.0.0.1:8443\"",
            ],
        );
        assert_problem(&problems, "server.lisen", &["unknown field"]);
        assert_problem(&problems, "server.cert", &["gone.pem", "does not exist"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn sections_of_the_wrong_shape() {
        let fx = Fixture::new();
        let text = "server = \"x\"\nassertion = []\n\n[trust]\nname = \"a\"\n\n[[route]]\npath = \"/\"\n\n[[limits]]\n\n[[route]]\n";
        let problems = fx.problems(text);
        assert_problem(
            &problems,
            "server",
            &["must be a table, not a string", "[server]"],
        );
        assert_problem(
            &problems,
            "assertion",
            &["must be a table, not a array", "[assertion]"],
        );
        assert_problem(
            &problems,
            "trust",
            &["array of tables", "[[trust]] (double brackets)"],
        );
        assert_problem(&problems, "limits", &["must be a table", "[limits]"]);
        assert_problem(&problems, "route[0].upstream", &["missing"]);
        assert_problem(&problems, "route[1].path", &["missing"]);
        assert_problem(&problems, "route[1].upstream", &["missing"]);
        assert_eq!(problems.len(), 7, "{problems:?}");

        let problems = fx
            .problems(&("route = []\n".to_string() + &MINIMAL.replace("[[route]]", "[[nothing]]")));
        assert_problem(&problems, "route", &["is empty", "[[route]]"]);
    }

    #[test]
    fn toml_syntax_errors_give_the_position() {
        let fx = Fixture::new();
        let problems = fx.problems("[server]\nlisten = 127.0.0.1:8443\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_problem(
            &problems,
            "(syntax)",
            &["line 2, column", "fix the TOML syntax"],
        );

        let problems = fx.problems(&(MINIMAL.to_string() + "\n[server]\nhttp2 = true\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "(syntax)");
        assert!(
            !problems[0].message.contains('\n'),
            "{:?}",
            problems[0].message
        );
    }

    #[test]
    fn many_problems_are_reported_together_one_line_each() {
        let fx = Fixture::new();
        let text = with(&[
            ("listen = \"127.0.0.1:8443\"", "listen = \"127.0.0.1\""),
            ("key = \"server.key\"", "key = \"missing.key\""),
            ("dir = \"trust/hpki-auth\"", "dir = \"trust/nowhere\""),
            ("\"1.2.392.100495.1.5.1.2\"", "\"1.2.three\""),
            (
                "upstream = \"http://127.0.0.1:9000\"",
                "upstream = \"ftp://127.0.0.1\"",
            ),
        ]) + "\n[timeouts]\nidle = \"forever\"\n";
        let err = fx.load(&text).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.key",
                "trust[0].dir",
                "trust[0].require_policies[0]",
                "route[0].upstream",
                "timeouts.idle"
            ]
        );
        let shown = err.to_string();
        let file = fx.path().join("gateway.toml").display().to_string();
        assert_eq!(shown.lines().count(), err.problems.len(), "{shown}");
        for (line, problem) in shown.lines().zip(&err.problems) {
            assert_eq!(
                line,
                format!("{file}: {}: {}", problem.key, problem.message)
            );
        }
        let _: &dyn std::error::Error = &err;
    }

    #[test]
    fn unreadable_config_file_is_one_problem() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(&dir.path().join("absent.toml")).unwrap_err();
        assert_eq!(err.file, dir.path().join("absent.toml"));
        assert_eq!(err.problems.len(), 1);
        assert_problem(&err.problems, "(file)", &["cannot read the config file"]);
    }

    /// The examples in docs/config.md must stay valid: every problem they give in an empty
    /// directory is a file that does not exist there.
    #[test]
    fn documented_examples_are_valid() {
        let doc = include_str!("../../docs/config.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap_or_default())
            .collect();
        assert!(
            blocks.len() >= 2,
            "no toml examples found in docs/config.md"
        );
        let empty = tempfile::tempdir().unwrap();
        for block in blocks {
            let Err(err) = Config::from_toml_str(block, empty.path()) else {
                panic!("an example loaded in an empty directory:\n{block}");
            };
            for problem in &err.problems {
                assert!(
                    problem.message.contains("does not exist"),
                    "{problem}\nin the example:\n{block}"
                );
            }
        }
    }

    #[test]
    fn documented_error_lines_are_real() {
        let doc = include_str!("../../docs/config.md");
        let fx = Fixture::new();
        let text = with(&[
            ("listen = \"127.0.0.1:8443\"", "listen = \"localhost:8443\""),
            (
                "\"1.2.392.100495.1.5.1.2\"",
                "\"1.2.392.100495.1.5.1.2\", \"1.2.x\"",
            ),
        ]) + &SECOND_ROUTE.replace("http://127.0.0.1:9001", "htp://x");
        for problem in fx.problems(&text) {
            let line = format!("gateway.toml: {problem}");
            assert!(doc.contains(&line), "docs/config.md does not show:\n{line}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(172_800)),
            ("30", Duration::from_secs(30)),
            (" 10 s ", Duration::from_secs(10)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "s",
            "-5s",
            "1.5s",
            "5S",
            "5 sec",
            "5y",
            "1h30m",
            "ten",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("5y").unwrap_err().contains("like \"10s\""));
    }

    #[test]
    fn sizes() {
        let cases = [
            ("1024", 1024),
            ("0", 0),
            ("100B", 100),
            ("10kB", 10_000),
            ("10KB", 10_000),
            ("10MB", 10_000_000),
            ("2GB", 2_000_000_000),
            ("64KiB", 65_536),
            ("64MiB", 67_108_864),
            ("64 mib", 67_108_864),
            ("1GiB", 1_073_741_824),
            ("1TiB", 1 << 40),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "64M",
            "64 megabytes",
            "lots",
            "20000000TiB",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("64M").unwrap_err().contains("\"64MiB\""));
    }

    #[test]
    fn suggestions_for_misspelled_sections() {
        assert_eq!(closest("routes", &SECTIONS), Some("route"));
        assert_eq!(closest("timeout", &SECTIONS), Some("timeouts"));
        assert_eq!(closest("sever", &SECTIONS), Some("server"));
        assert_eq!(closest("database", &SECTIONS), None);
    }
}
