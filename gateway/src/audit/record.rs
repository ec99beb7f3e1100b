//! One audit record, and the two digests that chain it: `hash` (SHA-256) and, with a key,
//! `mac` (HMAC-SHA256), both over the record's canonical JSON without `hash` and `mac`.
//!
//! Canonical JSON = serde_json of [`Record`] in struct field order, compact (no spaces),
//! absent optional fields left out, non-ASCII characters as UTF-8 (not `\u` escapes).
//! `hash` and `mac` are the last two fields, so a stored line is the canonical JSON with
//! its closing `}` replaced by `,"hash":"…"[,"mac":"…"]}` — and Python's
//! `json.dumps(d, ensure_ascii=False, separators=(",", ":"))` of the parsed line minus
//! those two keys reproduces the canonical bytes (docs/audit.md has the script).

use aws_lc_rs::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::pki::name::hex;

/// `prev` of the very first record of a node's log.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event. The caller fills in what happened, with `time_ms` (unix milliseconds)
/// taken when it happened; the writer sets `node`, `seq`, `prev`, `hash` and `mac`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time_ms: i64,
    /// "request", "auth_failure", "revocation", "trust_change", "ledger_change", "held",
    /// "confirm", "reject", "emergency", "recovered", "checkpoint", ...
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// "allow" | "deny" | "hold" | ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// A stable reason code (docs/reason-codes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpki_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    // Filled by the writer. `hash` and `mac` must stay last: see the module comment.
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub prev: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The bytes `hash` and `mac` are computed over: the canonical JSON of `r` without
/// `hash` and `mac`.
pub fn canonical_bytes(r: &Record) -> Vec<u8> {
    let mut bare = r.clone();
    bare.hash.clear();
    bare.mac = None;
    line_bytes(&bare)
}

/// The record as stored (without the newline).
pub(crate) fn line_bytes(r: &Record) -> Vec<u8> {
    // Serializing a struct of strings, integers and string lists cannot fail (no maps
    // with non-string keys, no custom serializers); an empty line would be caught by
    // verify as a modified record, never silently accepted.
    serde_json::to_vec(r).unwrap_or_default()
}

/// Lower-case hex SHA-256 of [`canonical_bytes`].
pub fn record_hash(r: &Record) -> String {
    hex(digest::digest(&digest::SHA256, &canonical_bytes(r)).as_ref())
}

/// Lower-case hex HMAC-SHA256 of [`canonical_bytes`] under `key`.
pub fn record_mac(r: &Record, key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex(hmac::sign(&key, &canonical_bytes(r)).as_ref())
}

/// Constant-time comparison of two hex digests (a MAC check must not leak how many
/// leading characters matched).
pub(crate) fn digest_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a checkpoint says about its segment, kept in its `detail` as
/// `segment=NAME records=N first_seq=A last_seq=B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointInfo {
    pub segment: String,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl CheckpointInfo {
    pub fn detail(&self) -> String {
        format!(
            "segment={} records={} first_seq={} last_seq={}",
            self.segment, self.records, self.first_seq, self.last_seq
        )
    }

    pub fn parse(detail: &str) -> Option<Self> {
        let mut segment = None;
        let (mut records, mut first_seq, mut last_seq) = (None, None, None);
        for part in detail.split(' ') {
            let (k, v) = part.split_once('=')?;
            match k {
                "segment" => segment = Some(v.to_owned()),
                "records" => records = v.parse().ok(),
                "first_seq" => first_seq = v.parse().ok(),
                "last_seq" => last_seq = v.parse().ok(),
                _ => return None,
            }
        }
        Some(CheckpointInfo {
            segment: segment?,
            records: records?,
            first_seq: first_seq?,
            last_seq: last_seq?,
        })
    }
}

pub(crate) const EVENT_CHECKPOINT: &str = "checkpoint";
pub(crate) const EVENT_RECOVERED: &str = "recovered";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_mac_are_the_last_fields_and_outside_the_hash() {
        let mut r = Record {
            time_ms: 1,
            event: "request".into(),
            name: Some("神楽坂 太郎 \"x\"\n".into()),
            node: "n1".into(),
            seq: 1,
            prev: ZERO_HASH.into(),
            ..Default::default()
        };
        let canon = canonical_bytes(&r);
        r.hash = record_hash(&r);
        r.mac = Some(record_mac(&r, b"k"));
        let line = String::from_utf8(line_bytes(&r)).unwrap();
        let prefix = &canon[..canon.len() - 1];
        assert!(line.as_bytes().starts_with(prefix), "{line}");
        assert!(line.ends_with(&format!(
            ",\"hash\":\"{}\",\"mac\":\"{}\"}}",
            r.hash,
            r.mac.as_deref().unwrap()
        )));
        // Non-ASCII stays UTF-8; the hash does not depend on hash/mac.
        assert!(line.contains("神楽坂"));
        assert_eq!(record_hash(&r), r.hash);
        assert_ne!(record_mac(&r, b"other"), r.mac.clone().unwrap());
    }

    #[test]
    fn checkpoint_detail_round_trips() {
        let c = CheckpointInfo {
            segment: "00000001-20260401.jsonl".into(),
            records: 3,
            first_seq: 1,
            last_seq: 3,
        };
        assert_eq!(CheckpointInfo::parse(&c.detail()), Some(c));
        assert_eq!(CheckpointInfo::parse("segment=x records=1"), None);
    }

    #[test]
    fn digest_eq_compares_everything() {
        assert!(digest_eq("abcd", "abcd"));
        assert!(!digest_eq("abcd", "abce"));
        assert!(!digest_eq("abcd", "abc"));
    }
}
