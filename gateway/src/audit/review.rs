//! What auditors and operators do with the log: search it, export it to CSV, and — only
//! by explicit command, never by the gateway — delete segments past the retention period.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{CheckpointInfo, EVENT_CHECKPOINT};
use super::segment::{list_segments, node_dirs, read_segment};
use super::{AuditError, Record};
use crate::store::JST;

/// Which records [`search`] returns. Every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// A person: equal to `hpki_id`, `assistant_id`, `operator` or `cert_sha256` (hex,
    /// case and `:` ignored), or contained in `name` (case-insensitive).
    pub who: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Unix milliseconds, exclusive (`--until 2026-04-02` ends with April 1st).
    pub until_ms: Option<i64>,
    /// A reason code, exactly.
    pub reason: Option<String>,
    /// An event ("request", "emergency", ...), exactly.
    pub event: Option<String>,
}

fn hex_norm(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .flat_map(char::to_lowercase)
        .collect()
}

impl SearchFilter {
    pub fn matches(&self, r: &Record) -> bool {
        if self.since_ms.is_some_and(|t| r.time_ms < t)
            || self.until_ms.is_some_and(|t| r.time_ms >= t)
            || self
                .reason
                .as_ref()
                .is_some_and(|x| r.reason.as_ref() != Some(x))
            || self.event.as_ref().is_some_and(|x| &r.event != x)
        {
            return false;
        }
        let Some(who) = self.who.as_deref().map(str::trim) else {
            return true;
        };
        if who.is_empty() {
            return true;
        }
        let eq = |f: &Option<String>| f.as_deref() == Some(who);
        let lower = who.to_lowercase();
        eq(&r.hpki_id)
            || eq(&r.assistant_id)
            || eq(&r.operator)
            || r.cert_sha256
                .as_deref()
                .is_some_and(|c| hex_norm(c) == hex_norm(who))
            || r.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&lower))
    }
}

/// The records of every node under `dir` (audit root or one node directory) that match,
/// ordered by time, then node and seq. Lines that are not records (a torn tail, damage)
/// are skipped: `verify` is the tool that reports them.
pub fn search(dir: &Path, filter: &SearchFilter) -> Result<Vec<Record>, AuditError> {
    let mut out = Vec::new();
    for (_, node_dir) in node_dirs(dir)? {
        for seg in list_segments(&node_dir)? {
            for line in read_segment(&seg.path)?.lines {
                if let Ok(r) = serde_json::from_slice::<Record>(&line) {
                    if filter.matches(&r) {
                        out.push(r);
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (a.time_ms, &a.node, a.seq).cmp(&(b.time_ms, &b.node, b.seq)));
    Ok(out)
}

/// The CSV columns, in order.
pub const CSV_HEADER: &[&str] = &[
    "time",
    "time_ms",
    "node",
    "seq",
    "event",
    "request_id",
    "decision",
    "reason",
    "kind",
    "role",
    "hpki_id",
    "name",
    "cert_serial",
    "cert_issuer",
    "cert_sha256",
    "assistant_id",
    "supervisors",
    "peer",
    "route",
    "method",
    "path",
    "status",
    "upstream_status",
    "bytes_in",
    "bytes_out",
    "latency_ms",
    "detail",
    "operator",
    "prev",
    "hash",
    "mac",
];

/// Japan time with milliseconds, RFC 3339 (`2026-04-01T09:00:00.123+09:00`).
pub fn format_time_ms(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|d| d.to_offset(JST).format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// A text cell as a spreadsheet will not execute it: a leading `=`, `+`, `-`, `@`, tab
/// or CR makes Excel read a formula (request paths and names come from outside), so such
/// a cell gets a leading `'`.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Writes `records` as CSV: a header row ([`CSV_HEADER`]), then one row per record.
/// `supervisors` are joined with `;`; `time` is Japan time with milliseconds.
pub fn write_csv(records: &[Record], out: impl Write) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
    let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    for r in records {
        w.write_record([
            format_time_ms(r.time_ms),
            r.time_ms.to_string(),
            cell(&r.node),
            r.seq.to_string(),
            cell(&r.event),
            opt(&r.request_id),
            opt(&r.decision),
            opt(&r.reason),
            opt(&r.kind),
            opt(&r.role),
            opt(&r.hpki_id),
            opt(&r.name),
            opt(&r.cert_serial),
            opt(&r.cert_issuer),
            opt(&r.cert_sha256),
            opt(&r.assistant_id),
            cell(
                &r.supervisors
                    .as_ref()
                    .map(|s| s.join(";"))
                    .unwrap_or_default(),
            ),
            opt(&r.peer),
            opt(&r.route),
            opt(&r.method),
            opt(&r.path),
            num(r.status.map(u64::from)),
            num(r.upstream_status.map(u64::from)),
            num(r.bytes_in),
            num(r.bytes_out),
            num(r.latency_ms),
            opt(&r.detail),
            opt(&r.operator),
            r.prev.clone(),
            r.hash.clone(),
            r.mac.clone().unwrap_or_default(),
        ])?;
    }
    w.flush()
}

/// What [`prune`] deleted (or, dry run, would delete).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub deleted: Vec<PathBuf>,
    /// Segments kept: younger, open, the newest of their node, or after one of those.
    pub kept: usize,
}

const MS_PER_DAY: i64 = 86_400_000;

/// Deletes whole closed segments whose checkpoint (= last record) is older than
/// `older_than_days` before `now_ms`. Refuses when `older_than_days < retention_days`.
/// Per node it deletes only the oldest run of such segments (the rest stays one
/// contiguous chain) and never the newest segment (the writer continues from it).
/// Nothing else is written.
pub fn prune(
    dir: &Path,
    older_than_days: u32,
    retention_days: u32,
    now_ms: i64,
    dry_run: bool,
) -> Result<PruneReport, AuditError> {
    if older_than_days < retention_days {
        return Err(AuditError::Retention {
            older_than_days,
            retention_days,
        });
    }
    let cutoff = now_ms.saturating_sub(i64::from(older_than_days) * MS_PER_DAY);
    let mut report = PruneReport::default();
    for (_, node_dir) in node_dirs(dir)? {
        let segments = list_segments(&node_dir)?;
        let mut deleting = true;
        for (i, seg) in segments.iter().enumerate() {
            let old =
                deleting && i + 1 < segments.len() && closed_before(&seg.path, &seg.name, cutoff)?;
            if !old {
                deleting = false;
                report.kept += 1;
                continue;
            }
            if !dry_run {
                std::fs::remove_file(&seg.path)
                    .map_err(|e| AuditError::io("delete", &seg.path, e))?;
            }
            report.deleted.push(seg.path.clone());
        }
        if !dry_run && !report.deleted.is_empty() {
            // Make the deletions durable; failing that is not worth an error.
            if let Ok(d) = std::fs::File::open(&node_dir) {
                let _ = d.sync_all();
            }
        }
    }
    Ok(report)
}

/// Whether the segment ends with its own checkpoint, dated before `cutoff`.
fn closed_before(path: &Path, name: &str, cutoff: i64) -> Result<bool, AuditError> {
    let text = read_segment(path)?;
    if !text.torn.is_empty() {
        return Ok(false);
    }
    let Some(last) = text.lines.last() else {
        return Ok(false);
    };
    let Ok(r) = serde_json::from_slice::<Record>(last) else {
        return Ok(false);
    };
    let own = r
        .detail
        .as_deref()
        .and_then(CheckpointInfo::parse)
        .is_some_and(|c| c.segment == name);
    Ok(r.event == EVENT_CHECKPOINT && own && r.time_ms < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("/path"), "/path");
        assert_eq!(format_time_ms(0), "1970-01-01T09:00:00.000+09:00");
    }

    #[test]
    fn who_matches_ids_names_and_fingerprints() {
        let r = Record {
            hpki_id: Some("D-1".into()),
            name: Some("Taro KAGURAZAKA".into()),
            cert_sha256: Some("abcd".into()),
            time_ms: 10,
            ..Default::default()
        };
        let f = |who: &str| SearchFilter {
            who: Some(who.into()),
            ..Default::default()
        };
        assert!(f("D-1").matches(&r));
        assert!(f("kagurazaka").matches(&r));
        assert!(f("AB:CD").matches(&r));
        assert!(!f("D-2").matches(&r));
        let window = SearchFilter {
            since_ms: Some(10),
            until_ms: Some(11),
            ..Default::default()
        };
        assert!(window.matches(&r));
        let after = SearchFilter {
            until_ms: Some(10),
            ..Default::default()
        };
        assert!(!after.matches(&r));
    }
}
