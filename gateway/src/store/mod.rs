//! Durable state: the assistants' ledger, held writes (maker-checker) and emergency
//! grants. One trait, [`Store`], with one SQL implementation that runs on SQLite (a file,
//! the default) and PostgreSQL (shared by several gateways); the dialects differ only in
//! their migrations.
//!
//! Every method commits before it returns `Ok`: a caller that answers "accepted" after
//! `insert_pending` has the entry on disk (SQLite `synchronous = FULL`, PostgreSQL commit).
//! Concurrency between requests, and between gateways sharing PostgreSQL, is decided by
//! compare-and-set updates (`... WHERE state = 'pending'`), so two doctors confirming the
//! same entry cannot both win.

mod migrations;
mod sql;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

pub use migrations::MIGRATIONS;
pub use sql::SqlStore;

/// Unix seconds.
pub type Timestamp = i64;

pub fn now() -> Timestamp {
    crate::proxy::now().0 as i64
}

/// Japan Standard Time: the clinics this serves think in it, so a bare date means
/// midnight there and times are shown with +09:00.
pub const JST: time::UtcOffset = time::macros::offset!(+9);

/// RFC 3339 in Japan time (`2026-04-01T09:30:00+09:00`), for pages and the CLI.
pub fn format_time(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.to_offset(JST)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Reads a date an operator typed: RFC 3339 (`2026-04-01T09:00:00+09:00`) or a day
/// (`2026-04-01`, midnight Japan time).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(d) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(d.unix_timestamp());
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &day)
        .map(|d| d.midnight().assume_offset(JST).unix_timestamp())
        .map_err(|_| format!("{s:?} is not a date: write 2026-04-01 or 2026-04-01T09:00:00+09:00"))
}

/// A random id with a readable prefix (`p-` pending, `e-` emergency ...).
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    // The system RNG failing here is fatal for uniqueness; fall back to the clock and a
    // counter rather than refusing the write.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes[..8].copy_from_slice(&t.to_be_bytes());
        bytes[8..].copy_from_slice(&(n as u16).to_be_bytes());
    }
    format!("{prefix}{}", crate::pki::name::hex(&bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug)]
pub enum StoreError {
    /// The store cannot be reached or answered with an error; the text names it.
    Unavailable(String),
    /// The store's schema is newer than this binary knows.
    SchemaTooNew {
        found: i64,
        known: i64,
    },
    /// A ledger rule was broken (unknown assistant, card already held ...); the text says
    /// which and how to fix it.
    Rejected(String),
    NotFound(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "store unavailable: {e}"),
            StoreError::SchemaTooNew { found, known } => write!(
                f,
                "the store's schema is version {found} but this binary knows up to {known}: \
                 run a gateway at least as new as the one that migrated it"
            ),
            StoreError::Rejected(e) => write!(f, "{e}"),
            StoreError::NotFound(e) => write!(f, "not found: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

// ---------------------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assistant {
    pub id: String,
    pub name_kanji: String,
    pub name_romaji: String,
    pub facility: String,
    pub active_from: Timestamp,
    pub active_until: Option<Timestamp>,
}

impl Assistant {
    pub fn is_active(&self, at: Timestamp) -> bool {
        self.active_from <= at && self.active_until.is_none_or(|u| at < u)
    }
}

/// How the ledger names an organization card: its certificate's SHA-256 (one exact
/// certificate), or its issuer and serial number (survives nothing but is what a paper
/// ledger often records).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum CardKey {
    Sha256(String),
    IssuerSerial { issuer: String, serial: String },
}

impl CardKey {
    /// The stored form: `sha256:<hex>` or `serial:<hex>@<issuer>`.
    pub fn encode(&self) -> String {
        match self {
            CardKey::Sha256(h) => format!("sha256:{}", h.to_ascii_lowercase()),
            CardKey::IssuerSerial { issuer, serial } => {
                format!("serial:{}@{issuer}", normalize_serial(serial))
            }
        }
    }

    pub fn decode(s: &str) -> Option<CardKey> {
        if let Some(h) = s.strip_prefix("sha256:") {
            return Some(CardKey::Sha256(h.to_owned()));
        }
        let rest = s.strip_prefix("serial:")?;
        let (serial, issuer) = rest.split_once('@')?;
        Some(CardKey::IssuerSerial {
            issuer: issuer.to_owned(),
            serial: serial.to_owned(),
        })
    }

    /// The keys under which a presented certificate may be recorded.
    pub fn of_certificate(sha256_hex: &str, issuer: &str, serial_hex: &str) -> [CardKey; 2] {
        [
            CardKey::Sha256(sha256_hex.to_owned()),
            CardKey::IssuerSerial {
                issuer: issuer.to_owned(),
                serial: serial_hex.to_owned(),
            },
        ]
    }

    /// Checks the shape an operator typed, naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            CardKey::Sha256(h) => {
                if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) {
                    Ok(())
                } else {
                    Err(format!(
                        "card SHA-256 {h:?} is not 64 hex digits: use the cert_sha256 that \
                         `hpki-gateway cert inspect` prints, or --cert FILE"
                    ))
                }
            }
            CardKey::IssuerSerial { issuer, serial } => {
                let s = normalize_serial(serial);
                if issuer.trim().is_empty() {
                    Err(
                        "card issuer is empty: give the issuer DN as `cert inspect` prints it"
                            .into(),
                    )
                } else if s.is_empty() || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                    Err(format!("card serial {serial:?} is not hexadecimal"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl fmt::Display for CardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// Serials are compared as lowercase hex without separators or leading zeros.
pub fn normalize_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() && !hex.is_empty() {
        "0".into()
    } else {
        trimmed.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardAssignment {
    pub id: String,
    pub card: String,
    pub assistant_id: String,
    pub assigned_from: Timestamp,
    pub assigned_until: Option<Timestamp>,
    pub assigned_by: String,
    pub released_by: Option<String>,
}

/// A doctor, named as the ledger records them: the issuer of their HPKI authentication
/// certificate and their HPKI id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorRef {
    pub hpki_id: String,
    pub issuer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Supervision {
    pub assistant_id: String,
    pub doctor: DoctorRef,
    pub added_at: Timestamp,
    pub added_by: String,
    pub removed_at: Option<Timestamp>,
    pub removed_by: Option<String>,
}

/// The holder of a card at a moment, with the doctors who supervise them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardHolder {
    pub assistant: Assistant,
    pub card: String,
    pub supervisors: Vec<DoctorRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerChange {
    pub id: String,
    /// When the change takes effect (`--at`, which may be in the past or future).
    pub at: Timestamp,
    /// When it was recorded: a backdated change is told apart by this.
    pub recorded_at: Timestamp,
    pub operator: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

/// One row of a clinic's ledger, as imported from CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// Where the row came from (a CSV line number), for problem reports.
    pub line: usize,
    pub assistant: Assistant,
    pub cards: Vec<CardKey>,
    pub supervisors: Vec<DoctorRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub assistants_added: usize,
    pub assistants_updated: usize,
    pub cards_assigned: usize,
    pub supervisors_added: usize,
    /// `(line, problem)` for every row the store refused; when not empty nothing was
    /// committed.
    pub problems: Vec<(usize, String)>,
    /// True when the changes were committed (not a dry run, no problems).
    pub committed: bool,
}

// ---------------------------------------------------------------------------------------
// Held writes
// ---------------------------------------------------------------------------------------

/// The life of a held write. `Forwarding` is claimed (compare-and-set) by exactly one
/// confirmer before the upstream is called, with a lease; a gateway that crashes while
/// holding it leaves the lease to expire, and recovery forwards the entry again with the
/// same confirmation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingState {
    Pending,
    Forwarding,
    /// The upstream answered (any status below 500); its answer is kept.
    Forwarded,
    /// Transport error or 5xx: retryable by a supervising doctor.
    Failed,
    Rejected,
    Expired,
}

impl PendingState {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingState::Pending => "pending",
            PendingState::Forwarding => "forwarding",
            PendingState::Forwarded => "forwarded",
            PendingState::Failed => "failed",
            PendingState::Rejected => "rejected",
            PendingState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<PendingState> {
        Some(match s {
            "pending" => PendingState::Pending,
            "forwarding" => PendingState::Forwarding,
            "forwarded" => PendingState::Forwarded,
            "failed" => PendingState::Failed,
            "rejected" => PendingState::Rejected,
            "expired" => PendingState::Expired,
            _ => return None,
        })
    }

    /// States from which a doctor may (re)confirm.
    pub fn confirmable(self) -> bool {
        matches!(self, PendingState::Pending | PendingState::Failed)
    }
}

/// What an assistant submitted, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPending {
    pub id: String,
    pub route_path: String,
    pub request_host: Option<String>,
    pub method: String,
    pub path_and_query: String,
    /// Content-* headers, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub assistant_id: String,
    pub assistant_name: String,
    pub card_sha256: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The confirming doctor, as forwarded: enough to rebuild the upstream request after a
/// crash without the doctor's connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Confirmer {
    pub hpki_id: String,
    pub issuer: String,
    pub name: String,
    /// The doctor's identity headers (already encoded).
    pub headers: Vec<(String, String)>,
    /// The doctor's assertion claims.
    pub claims: serde_json::Value,
}

/// A supervising doctor's signature on the confirmation text of a held write
/// (docs/confirmation-signature.md), verified before the claim and stored with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationSignature {
    /// SHA-256 of the confirmation text that was signed.
    pub digest: [u8; 32],
    /// RSA PKCS#1 v1.5 (SHA-256) over the text.
    pub signature: Vec<u8>,
    /// The signing certificate, DER.
    pub certificate: Vec<u8>,
    /// The intermediates and anchor of the signing profile that validated it, DER,
    /// issuer of the certificate first, anchor last.
    pub chain: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingWrite {
    pub id: String,
    pub state: PendingState,
    pub route_path: String,
    pub request_host: Option<String>,
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub assistant_id: String,
    pub assistant_name: String,
    pub card_sha256: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub confirmer: Option<Confirmer>,
    pub decided_at: Option<Timestamp>,
    pub reject_reason: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub attempts: i64,
    pub upstream_status: Option<i64>,
    pub upstream_content_type: Option<String>,
    #[serde(skip)]
    pub upstream_body: Option<Vec<u8>>,
    pub last_error: Option<String>,
    pub forwarded_at: Option<Timestamp>,
    /// The confirming doctor's signature, when the confirmation was signed.
    #[serde(skip)]
    pub signature: Option<ConfirmationSignature>,
}

impl PendingWrite {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The confirmation text a doctor with HPKI id `doctor_hpki_id` signs to confirm this
    /// entry, rebuilt from what is stored (docs/confirmation-signature.md).
    pub fn confirmation_text(
        &self,
        doctor_hpki_id: &str,
    ) -> Result<String, crate::pki::confirmation::ConfirmationTextError> {
        crate::pki::confirmation::confirmation_text(&crate::pki::confirmation::ConfirmationFields {
            entry_id: &self.id,
            method: &self.method,
            host: self.request_host.as_deref(),
            path_and_query: &self.path_and_query,
            content_type: self.header("content-type"),
            body: &self.body,
            assistant_id: &self.assistant_id,
            doctor_hpki_id,
            held_at: crate::pki::UnixTime(u64::try_from(self.created_at).unwrap_or(0)),
        })
    }
}

/// How a forward ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardOutcome {
    Delivered {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    Failed {
        error: String,
        status: Option<u16>,
        body: Vec<u8>,
    },
}

// ---------------------------------------------------------------------------------------
// Emergency access
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmergencyGrant {
    pub id: String,
    pub doctor: DoctorRef,
    pub doctor_name: String,
    pub cert_sha256: String,
    pub reason: String,
    pub patient_ref: Option<String>,
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub followup_at: Option<Timestamp>,
    pub followup_by: Option<String>,
    pub followup_note: Option<String>,
}

impl EmergencyGrant {
    pub fn active_at(&self, at: Timestamp) -> bool {
        self.started_at <= at && at < self.expires_at && self.ended_at.is_none()
    }
}

// ---------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    pub backend: Backend,
    pub from_version: i64,
    pub to_version: i64,
    pub applied: Vec<String>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    fn backend(&self) -> Backend;

    /// Applies the migrations this binary has and the store lacks (serialized between
    /// processes: a PostgreSQL advisory lock, SQLite's write lock).
    async fn migrate(&self) -> StoreResult<MigrationReport>;
    /// Cheap reachability check.
    async fn ping(&self) -> StoreResult<()>;

    /// A value shared by every gateway on this store, created once (`value` if absent).
    async fn shared_setting(&self, name: &str, value: &str) -> StoreResult<String>;

    // Ledger. Every change records the operator in `ledger_changes`.
    async fn add_assistant(&self, a: &Assistant, operator: &str) -> StoreResult<()>;
    async fn assistant(&self, id: &str) -> StoreResult<Option<Assistant>>;
    async fn assistants(&self) -> StoreResult<Vec<Assistant>>;
    async fn deactivate_assistant(
        &self,
        id: &str,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()>;
    /// Gives a card to an assistant from `at`; refused while someone else holds it.
    async fn assign_card(
        &self,
        card: &CardKey,
        assistant_id: &str,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()>;
    /// Ends the current holding of a card; returns who held it.
    async fn release_card(
        &self,
        card: &CardKey,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<String>;
    /// Every assignment of the given cards (or of one assistant), oldest first.
    async fn card_history(
        &self,
        card: Option<&CardKey>,
        assistant_id: Option<&str>,
    ) -> StoreResult<Vec<CardAssignment>>;
    /// The active assistant holding any of `cards` at `at`. Two different holders (one
    /// card recorded under both of its keys) is a ledger error and refused.
    async fn holder_at(&self, cards: &[CardKey], at: Timestamp) -> StoreResult<Option<CardHolder>>;
    async fn add_supervisor(
        &self,
        assistant_id: &str,
        doctor: &DoctorRef,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()>;
    async fn remove_supervisor(
        &self,
        assistant_id: &str,
        doctor: &DoctorRef,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()>;
    /// Current supervisors of an assistant.
    async fn supervisors(&self, assistant_id: &str) -> StoreResult<Vec<DoctorRef>>;
    /// Supervision history of an assistant (current and removed).
    async fn supervision_history(&self, assistant_id: &str) -> StoreResult<Vec<Supervision>>;
    /// Assistants a doctor currently supervises.
    async fn supervised_by(&self, doctor: &DoctorRef) -> StoreResult<Vec<String>>;
    async fn ledger_changes(&self, since: Timestamp) -> StoreResult<Vec<LedgerChange>>;
    /// Changes recorded after the change `after_id` (ids sort in recording order), oldest
    /// first, at most `limit`: how the audit log follows the ledger.
    async fn ledger_changes_after(
        &self,
        after_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<LedgerChange>>;
    /// Sets a value shared by every gateway on this store.
    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()>;
    /// Applies a whole ledger in one transaction: all rows or none. Rows are checked
    /// against the store (a card held by someone else ...); with `dry_run`, or when any
    /// row has a problem, the transaction is rolled back and the report says why.
    async fn import_ledger(
        &self,
        rows: &[LedgerRow],
        at: Timestamp,
        operator: &str,
        dry_run: bool,
    ) -> StoreResult<ImportReport>;

    // Held writes.
    async fn insert_pending(&self, p: &NewPending) -> StoreResult<()>;
    async fn pending(&self, id: &str) -> StoreResult<Option<PendingWrite>>;
    /// Entries of these assistants, newest first, at most `limit`.
    async fn pending_of(
        &self,
        assistant_ids: &[String],
        limit: i64,
    ) -> StoreResult<Vec<PendingWrite>>;
    /// Compare-and-set: `pending`/`failed` (and not expired) → `forwarding` by this
    /// doctor, with a lease, and with the doctor's signature (`None` clears an earlier
    /// one) in the same statement. `false` when someone else won or the entry moved on.
    async fn claim_for_forwarding(
        &self,
        id: &str,
        confirmer: &Confirmer,
        signature: Option<&ConfirmationSignature>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Records how a forward ended (only while still `forwarding`).
    async fn finish_forwarding(
        &self,
        id: &str,
        outcome: &ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn reject_pending(
        &self,
        id: &str,
        confirmer: &Confirmer,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Marks every pending entry past its expiry as expired; returns how many.
    async fn expire_pending(&self, now: Timestamp) -> StoreResult<u64>;
    /// Entries left in `forwarding` past their lease (their gateway died); each returned
    /// entry has been re-claimed with a new lease by this caller.
    async fn reclaim_forwarding(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<PendingWrite>>;
    async fn count_pending(&self) -> StoreResult<i64>;

    // Emergency access.
    async fn insert_emergency(&self, g: &EmergencyGrant) -> StoreResult<()>;
    async fn active_emergency(
        &self,
        cert_sha256: &str,
        now: Timestamp,
    ) -> StoreResult<Option<EmergencyGrant>>;
    async fn end_emergency(&self, id: &str, cert_sha256: &str, now: Timestamp)
        -> StoreResult<bool>;
    /// Grants started since `since`; with `open_only`, those whose consent follow-up is
    /// not yet recorded.
    async fn emergencies(
        &self,
        since: Timestamp,
        open_only: bool,
    ) -> StoreResult<Vec<EmergencyGrant>>;
    async fn emergency_followup(
        &self,
        id: &str,
        operator: &str,
        note: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
}

/// Opens the store a URL names (`sqlite://path` relative to `base_dir`, or
/// `postgres://...`) and applies pending migrations when `migrate` is set.
pub async fn open(url: &str, base_dir: &Path, migrate: bool) -> StoreResult<Arc<dyn Store>> {
    let store = SqlStore::connect(url, base_dir).await?;
    if migrate {
        store.migrate().await?;
    } else {
        store.check_schema().await?;
    }
    Ok(Arc::new(store))
}

/// The URL with any password replaced, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_keys_round_trip_and_serials_normalize() {
        let k = CardKey::IssuerSerial {
            issuer: "C=JP, O=Clinic CA".into(),
            serial: "00:1A:2b".into(),
        };
        assert_eq!(k.encode(), "serial:1a2b@C=JP, O=Clinic CA");
        assert_eq!(
            CardKey::decode(&k.encode()).map(|k| k.encode()),
            Some(k.encode())
        );
        assert_eq!(normalize_serial("00"), "0");
        assert!(CardKey::Sha256("ab".into()).validate().is_err());
        assert!(CardKey::Sha256("a".repeat(64)).validate().is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://gw:secret@db:5432/hpki"),
            "postgres://gw:***@db:5432/hpki"
        );
        assert_eq!(redact_url("sqlite://var/x.db"), "sqlite://var/x.db");
    }
}
