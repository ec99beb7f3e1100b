//! The audit log: every request and decision as one record in append-only, hash-chained
//! JSON Lines segment files (docs/audit.md).
//!
//! - [`AuditLog`] is the handle the proxy appends through; a writer task (the future
//!   [`AuditLog::open`] returns) owns the files, so no request ever waits on disk I/O
//!   except a caller that asks for durability ([`AuditLog::append_durable`]).
//! - [`verify`] re-checks the chain, the checkpoints and (with the key) the HMACs;
//!   [`search`], [`write_csv`] and [`prune`] are the auditor's and operator's tools.
//!
//! Module map: `record` (the record, its hash and MAC), `segment` (file names, reading),
//! `writer` (the handle and the writer task), `verify`, `review` (search, CSV, prune).

mod record;
mod review;
mod segment;
mod verify;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use record::{canonical_bytes, record_hash, record_mac, Record, ZERO_HASH};
pub use review::{format_time_ms, prune, search, write_csv, PruneReport, SearchFilter, CSV_HEADER};
pub use segment::{is_segment_name, segment_name, utc_day};
pub use verify::{verify, Head, Problem, ProblemKind, VerifyReport};
pub use writer::AuditLog;

/// Where and how a node writes its log. [`AuditConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The audit root; this node writes into `dir/<node>/`.
    pub dir: PathBuf,
    /// This node's id, in every record and the name of its directory
    /// (letters, digits, `.`, `_`, `-`).
    pub node: String,
    /// A segment is closed (checkpoint, next file) once it has reached this size.
    pub segment_max_bytes: u64,
    /// Group commit: written records are fsynced at the latest this long after the first
    /// of them was written ...
    pub fsync_interval: Duration,
    /// ... or as soon as this many are waiting for an fsync.
    pub fsync_records: usize,
    /// Capacity of the bounded queue between the callers and the writer task.
    pub queue: usize,
    /// HMAC-SHA256 key: with it every record carries a `mac`, so rewriting the whole
    /// chain is detectable by whoever holds the key (see [`read_key_file`]).
    pub hmac_key: Option<Vec<u8>>,
}

pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_FSYNC_RECORDS: usize = 1000;
pub const DEFAULT_QUEUE: usize = 10_000;
/// Five years and a day (1827 days): segments younger than this are never deleted.
pub const DEFAULT_RETENTION_DAYS: u32 = 1827;

impl AuditConfig {
    pub fn new(dir: impl Into<PathBuf>, node: impl Into<String>) -> Self {
        AuditConfig {
            dir: dir.into(),
            node: node.into(),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            fsync_interval: DEFAULT_FSYNC_INTERVAL,
            fsync_records: DEFAULT_FSYNC_RECORDS,
            queue: DEFAULT_QUEUE,
            hmac_key: None,
        }
    }

    /// The directory this node writes into.
    pub fn node_dir(&self) -> PathBuf {
        self.dir.join(&self.node)
    }
}

/// Whether `node` can name a directory without surprises (no separators, no `..`).
pub fn valid_node_name(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 128
        && node != "."
        && node != ".."
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads an HMAC key file: exactly its bytes (a trailing newline is part of the key, as
/// for the gateway's `[audit] hmac_key`; `head -c 32 /dev/urandom > key` makes a good
/// one). Empty keys are refused.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, AuditError> {
    let key = std::fs::read(path).map_err(|e| AuditError::io("read the key file", path, e))?;
    if key.is_empty() {
        return Err(AuditError::Config(format!(
            "the HMAC key file {} is empty",
            path.display()
        )));
    }
    Ok(key)
}

/// Why the audit log did not do what was asked.
#[derive(Debug, Clone)]
pub enum AuditError {
    /// The log cannot be written right now (disk full, permissions, I/O error): the
    /// caller should refuse service (503 `audit_unavailable`). Queued records are kept
    /// and the writer retries; `cause` names the failing operation and file.
    Unavailable { cause: String },
    /// The writer task has stopped (shutdown, or it was never spawned).
    Closed,
    /// The configuration cannot work (bad node name, zero sizes, empty key).
    Config(String),
    /// A file operation failed outside the writer (open, verify, search, prune).
    Io {
        op: &'static str,
        path: PathBuf,
        kind: io::ErrorKind,
        message: String,
    },
    /// The log on disk is not what the writer left: the last complete record cannot be
    /// continued. Run `hpki-gateway audit verify`; nothing was changed.
    Corrupt {
        path: PathBuf,
        line: usize,
        what: String,
    },
    /// `prune` was asked to delete segments younger than the retention period.
    Retention {
        older_than_days: u32,
        retention_days: u32,
    },
}

impl AuditError {
    pub(crate) fn io(op: &'static str, path: &Path, e: io::Error) -> Self {
        AuditError::Io {
            op,
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Unavailable { cause } => {
                write!(f, "the audit log cannot be written: {cause}")
            }
            AuditError::Closed => f.write_str("the audit log writer has stopped"),
            AuditError::Config(m) => write!(f, "audit log configuration: {m}"),
            AuditError::Io {
                op, path, message, ..
            } => write!(f, "cannot {op} {}: {message}", path.display()),
            AuditError::Corrupt { path, line, what } => write!(
                f,
                "{}:{line}: {what}; the log was left as it is: run `hpki-gateway audit verify` \
                 on it",
                path.display()
            ),
            AuditError::Retention {
                older_than_days,
                retention_days,
            } => write!(
                f,
                "refusing to delete segments younger than the retention period: \
                 --older-than-days {older_than_days} is less than --retention-days \
                 {retention_days}"
            ),
        }
    }
}

impl std::error::Error for AuditError {}
