//! `verify`: re-checks every node's log — each record against its hash (and, with the key,
//! its MAC), the seq/prev chain across segments, segment numbering and checkpoints — and
//! names every problem by node, segment file and line.
//!
//! What it cannot see (docs/audit.md): the newest records or whole newest segments cut
//! off at a record boundary leave a valid, shorter log; without the key, a consistent
//! rewrite from any record onwards is valid too. Anchor the head (`Head`) elsewhere.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::record::{canonical_bytes, digest_eq, line_bytes, CheckpointInfo, EVENT_CHECKPOINT};
use super::segment::{list_segments, node_dirs, read_segment};
use super::{record_hash, Record, ZERO_HASH};
use crate::pki::name::hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The record's bytes do not match its hash, it is not a record, or its prev link is
    /// broken.
    Modified,
    /// Records (seqs) are absent from the chain.
    Deleted,
    /// A record comes after a later one, or appears twice.
    Reordered,
    /// A closed segment ends early: inside a record or without its checkpoint.
    Truncated,
    /// A segment number is absent.
    MissingSegment,
    /// With a key: a record without a MAC or with a wrong one.
    BadMac,
    /// A checkpoint whose counts do not match its segment, or that is not the last line.
    BadCheckpoint,
    /// A file or directory could not be read.
    Unreadable,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::Modified => "modified",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::MissingSegment => "missing segment",
            ProblemKind::BadMac => "bad mac",
            ProblemKind::BadCheckpoint => "bad checkpoint",
            ProblemKind::Unreadable => "unreadable",
        })
    }
}

/// One problem, named by node, segment file and (1-based) line.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub node: String,
    pub segment: String,
    pub line: Option<usize>,
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.segment)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}: {}", self.kind, self.detail)
    }
}

/// The newest record of a node: keep (seq, hash) somewhere the gateway cannot write, and
/// a later verify proves the log still contains it (see the module comment).
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    pub node: String,
    pub segment: String,
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    pub problems: Vec<Problem>,
    /// Facts that are not problems: the open segment, a torn tail the gateway will cut,
    /// a log that starts after pruning, MACs present but not checked.
    pub notes: Vec<String>,
    pub heads: Vec<Head>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `dir`: the audit root (every node directory under it) or one node directory.
/// With `key`, every record must carry a valid HMAC.
pub fn verify(dir: &Path, key: Option<&[u8]>) -> VerifyReport {
    let mut report = VerifyReport::default();
    let nodes = match node_dirs(dir) {
        Ok(n) => n,
        Err(e) => {
            report.problems.push(Problem {
                node: String::new(),
                segment: dir.display().to_string(),
                line: None,
                kind: ProblemKind::Unreadable,
                detail: e.to_string(),
            });
            return report;
        }
    };
    let key = key.map(|k| aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k));
    for (node, path) in nodes {
        verify_node(&node, &path, key.as_ref(), &mut report);
    }
    report
}

/// One record as found, for the chain checks.
struct Entry {
    line: usize,
    seq: u64,
    prev: String,
    hash: String,
    checkpoint: Option<String>,
}

fn verify_node(
    node: &str,
    dir: &Path,
    key: Option<&aws_lc_rs::hmac::Key>,
    report: &mut VerifyReport,
) {
    let mut problems = Vec::new();
    let mut problem = |segment: &str, line: Option<usize>, kind, detail: String| {
        problems.push(Problem {
            node: node.to_owned(),
            segment: segment.to_owned(),
            line,
            kind,
            detail,
        })
    };
    let segments = match list_segments(dir) {
        Ok(s) => s,
        Err(e) => {
            problem("", None, ProblemKind::Unreadable, e.to_string());
            report.problems.extend(problems);
            return;
        }
    };
    let mut notes = Vec::new();
    let mut macs_unchecked = false;
    let mut chain = Chain::new(
        node,
        segments.first().map(|s| s.number == 1).unwrap_or(true),
    );
    for (si, seg) in segments.iter().enumerate() {
        let expected = if si == 0 {
            1
        } else {
            segments[si - 1].number + 1
        };
        let gap = seg.number != expected;
        if si == 0 && gap {
            notes.push(format!(
                "{node}: the log starts at segment {} ({}): segments 1..{} are absent — pruned, \
                 or deleted; verify cannot tell which",
                seg.number,
                seg.name,
                seg.number - 1
            ));
        } else if si > 0 && seg.number == segments[si - 1].number {
            problem(
                &seg.name,
                None,
                ProblemKind::Reordered,
                format!(
                    "two segments numbered {} ({})",
                    seg.number,
                    segments[si - 1].name
                ),
            );
        } else if gap {
            problem(
                &seg.name,
                None,
                ProblemKind::MissingSegment,
                if seg.number == expected + 1 {
                    format!("segment {expected:08} is missing before this one")
                } else {
                    format!(
                        "segments {expected:08} to {:08} are missing before this one",
                        seg.number - 1
                    )
                },
            );
        }
        let gap_before = si > 0 && gap;
        let text = match read_segment(&seg.path) {
            Ok(t) => t,
            Err(e) => {
                problem(&seg.name, None, ProblemKind::Unreadable, e.to_string());
                continue;
            }
        };
        report.segments += 1;
        // This segment's records (bounded by the segment size; the chain across segments
        // is checked as a stream, so a five-year log does not need five years of memory).
        let mut entries: Vec<Entry> = Vec::new();
        let is_last = si + 1 == segments.len();
        for (li, line) in text.lines.iter().enumerate() {
            let line_no = li + 1;
            report.records += 1;
            let r: Record = match serde_json::from_slice(line) {
                Ok(r) => r,
                Err(e) => {
                    problem(
                        &seg.name,
                        Some(line_no),
                        ProblemKind::Modified,
                        format!("not a record: {e}"),
                    );
                    continue;
                }
            };
            if !digest_eq(&record_hash(&r), &r.hash) {
                problem(
                    &seg.name,
                    Some(line_no),
                    ProblemKind::Modified,
                    format!("seq {}: the content does not match its hash", r.seq),
                );
            } else if line_bytes(&r) != *line {
                problem(
                    &seg.name,
                    Some(line_no),
                    ProblemKind::Modified,
                    format!(
                        "seq {}: the bytes are not as written (extra fields or formatting)",
                        r.seq
                    ),
                );
            } else if r.node != node {
                problem(
                    &seg.name,
                    Some(line_no),
                    ProblemKind::Modified,
                    format!(
                        "seq {}: record of node {:?} in the log of {node:?}",
                        r.seq, r.node
                    ),
                );
            }
            match (key, &r.mac) {
                (Some(k), Some(mac)) => {
                    let want = hex(aws_lc_rs::hmac::sign(k, &canonical_bytes(&r)).as_ref());
                    if !digest_eq(&want, mac) {
                        problem(
                            &seg.name,
                            Some(line_no),
                            ProblemKind::BadMac,
                            format!(
                                "seq {}: the MAC does not match (wrong key, or rewritten)",
                                r.seq
                            ),
                        );
                    }
                }
                (Some(_), None) => problem(
                    &seg.name,
                    Some(line_no),
                    ProblemKind::BadMac,
                    format!("seq {}: no MAC", r.seq),
                ),
                (None, Some(_)) => macs_unchecked = true,
                (None, None) => {}
            }
            entries.push(Entry {
                line: line_no,
                seq: r.seq,
                prev: r.prev,
                hash: r.hash,
                checkpoint: (r.event == EVENT_CHECKPOINT).then(|| r.detail.unwrap_or_default()),
            });
        }
        let seg_entries = &entries[..];
        let last_line = text.lines.len();
        // Checkpoints: only as the last line, with counts that match.
        for (i, e) in seg_entries.iter().enumerate() {
            let Some(detail) = &e.checkpoint else {
                continue;
            };
            if i + 1 != seg_entries.len() || e.line != last_line {
                problem(
                    &seg.name,
                    Some(e.line),
                    ProblemKind::BadCheckpoint,
                    "a checkpoint that is not the segment's last line (records follow it)".into(),
                );
                continue;
            }
            let before = &seg_entries[..i];
            let want = CheckpointInfo {
                segment: seg.name.clone(),
                records: before.len() as u64,
                first_seq: before.first().map(|b| b.seq).unwrap_or(0),
                last_seq: before.last().map(|b| b.seq).unwrap_or(0),
            };
            match CheckpointInfo::parse(detail) {
                Some(got) if got == want && e.seq == want.last_seq + 1 => {}
                Some(got) => problem(
                    &seg.name,
                    Some(e.line),
                    ProblemKind::BadCheckpoint,
                    format!(
                        "the checkpoint says {:?}, the segment holds {:?}",
                        got.detail(),
                        want.detail()
                    ),
                ),
                None => problem(
                    &seg.name,
                    Some(e.line),
                    ProblemKind::BadCheckpoint,
                    format!("unreadable checkpoint detail {detail:?}"),
                ),
            }
        }
        let closed = seg_entries.last().is_some_and(|e| e.checkpoint.is_some())
            && seg_entries.last().map(|e| e.line) == Some(last_line);
        if !text.torn.is_empty() {
            if is_last {
                notes.push(format!(
                    "{node}/{}: ends with an incomplete record of {} bytes after line \
                     {last_line} (a crash during a write; the gateway cuts it at its next \
                     start)",
                    seg.name,
                    text.torn.len()
                ));
            } else {
                problem(
                    &seg.name,
                    Some(last_line + 1),
                    ProblemKind::Truncated,
                    format!(
                        "the segment ends inside a record ({} bytes, no newline) and has no \
                         checkpoint",
                        text.torn.len()
                    ),
                );
            }
        } else if !is_last && !closed {
            problem(
                &seg.name,
                Some(last_line),
                ProblemKind::Truncated,
                format!(
                    "the segment does not end with a checkpoint: truncated after line \
                     {last_line}, or its checkpoint removed"
                ),
            );
        }
        if is_last {
            notes.push(if closed {
                format!(
                    "{node}/{}: closed by its checkpoint; the next segment starts with the next \
                     record",
                    seg.name
                )
            } else {
                format!(
                    "{node}/{}: open segment ({} records, no checkpoint yet: the segment being \
                     written)",
                    seg.name,
                    seg_entries.len()
                )
            });
        }
        for (i, e) in entries.into_iter().enumerate() {
            // A missing segment explains the seq gap at its successor's first record.
            chain.feed(&seg.name, e, i == 0 && gap_before);
        }
    }

    problems.extend(chain.finish());
    if macs_unchecked {
        notes.push(format!(
            "{node}: records carry MACs that were not checked (give the key)"
        ));
    }
    if let Some(head) = chain.head.take() {
        report.heads.push(head);
    }
    // In file order, whichever check found them.
    problems.sort_by(|a, b| (&a.segment, a.line).cmp(&(&b.segment, b.line)));
    report.problems.extend(problems);
    report.notes.extend(notes);
}

/// How many recent records the chain check remembers: reordering or a `prev` link that
/// reaches further back than this is not classified (every record is still checked
/// against its own hash).
const WINDOW: usize = 65_536;

/// Where a record was found.
#[derive(Clone)]
struct Loc {
    segment: String,
    line: usize,
}

/// Seqs absent when a later seq was seen; those that turn up later were reordered.
struct Gap {
    from: u64,
    to: u64,
    at: Loc,
    explained: bool,
    filled: u64,
}

/// The seq/prev chain of one node, checked as a stream with a bounded window.
struct Chain {
    node: String,
    /// The node's log starts at segment 1 (not pruned): seq 1 with prev zeros.
    log_start: bool,
    max_seen: Option<u64>,
    recent: HashMap<u64, (String, Loc)>,
    order: VecDeque<u64>,
    gaps: Vec<Gap>,
    /// prev links whose predecessor had not been seen yet: predecessor seq -> (prev,
    /// seq, where).
    waiting: HashMap<u64, (String, u64, Loc)>,
    problems: Vec<Problem>,
    head: Option<Head>,
}

impl Chain {
    fn new(node: &str, log_start: bool) -> Self {
        Chain {
            node: node.to_owned(),
            log_start,
            max_seen: None,
            recent: HashMap::new(),
            order: VecDeque::new(),
            gaps: Vec::new(),
            waiting: HashMap::new(),
            problems: Vec::new(),
            head: None,
        }
    }

    fn problem(&mut self, at: &Loc, kind: ProblemKind, detail: String) {
        self.problems.push(Problem {
            node: self.node.clone(),
            segment: at.segment.clone(),
            line: Some(at.line),
            kind,
            detail,
        });
    }

    fn feed(&mut self, segment: &str, e: Entry, explained_gap: bool) {
        let at = Loc {
            segment: segment.to_owned(),
            line: e.line,
        };
        let mut check_prev = true;
        match self.max_seen {
            None => {
                if self.log_start && e.seq != 1 {
                    self.problem(
                        &at,
                        ProblemKind::Deleted,
                        format!("the log starts at seq {}, not 1", e.seq),
                    );
                    check_prev = false;
                }
            }
            Some(max) if e.seq <= max => {
                let detail = if let Some((_, first)) = self.recent.get(&e.seq) {
                    format!(
                        "seq {} appears twice (first at {}:{})",
                        e.seq, first.segment, first.line
                    )
                } else {
                    if let Some(g) = self
                        .gaps
                        .iter_mut()
                        .find(|g| g.from <= e.seq && e.seq <= g.to)
                    {
                        g.filled += 1;
                    }
                    format!("seq {} comes after seq {max}", e.seq)
                };
                self.problem(&at, ProblemKind::Reordered, detail);
                check_prev = false;
            }
            Some(max) if e.seq > max + 1 => {
                self.gaps.push(Gap {
                    from: max + 1,
                    to: e.seq - 1,
                    at: at.clone(),
                    explained: explained_gap,
                    filled: 0,
                });
            }
            Some(_) => {}
        }
        // The record that points at this one, seen earlier (reordered), can be checked now.
        if let Some((prev, seq, from)) = self.waiting.remove(&e.seq) {
            if prev != e.hash {
                self.broken_link(&from, seq);
            }
        }
        if check_prev {
            let pred = e.seq.wrapping_sub(1);
            if e.seq == 1 && self.log_start {
                if e.prev != ZERO_HASH {
                    self.broken_link(&at, e.seq);
                }
            } else if let Some((hash, _)) = self.recent.get(&pred) {
                if *hash != e.prev {
                    self.broken_link(&at, e.seq);
                }
            } else if self.max_seen.is_some_and(|m| pred > m) && self.waiting.len() < WINDOW {
                // Not seen yet: perhaps later (reordered); a gap is reported by finish.
                self.waiting
                    .insert(pred, (e.prev.clone(), e.seq, at.clone()));
            }
        }
        if self.head.as_ref().is_none_or(|h| e.seq > h.seq) {
            self.head = Some(Head {
                node: self.node.clone(),
                segment: segment.to_owned(),
                seq: e.seq,
                hash: e.hash.clone(),
            });
        }
        self.max_seen = Some(self.max_seen.map_or(e.seq, |m| m.max(e.seq)));
        if let std::collections::hash_map::Entry::Vacant(slot) = self.recent.entry(e.seq) {
            slot.insert((e.hash, at));
            self.order.push_back(e.seq);
            if self.order.len() > WINDOW {
                if let Some(old) = self.order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    fn broken_link(&mut self, at: &Loc, seq: u64) {
        self.problem(
            at,
            ProblemKind::Modified,
            format!(
                "seq {seq}: prev does not match the hash of seq {}",
                seq.saturating_sub(1)
            ),
        );
    }

    /// The problems, with the gaps that nothing filled reported as deletions.
    fn finish(&mut self) -> Vec<Problem> {
        for g in std::mem::take(&mut self.gaps) {
            let missing = g.to - g.from + 1 - g.filled.min(g.to - g.from + 1);
            if missing == 0 || g.explained {
                continue;
            }
            let detail = match (g.from == g.to, g.filled) {
                (true, _) => format!("record seq {} is missing before this line", g.from),
                (false, 0) => format!(
                    "{missing} records (seq {} to {}) are missing before this line",
                    g.from, g.to
                ),
                (false, _) => format!(
                    "{missing} of the records seq {} to {} are missing before this line",
                    g.from, g.to
                ),
            };
            self.problem(&g.at, ProblemKind::Deleted, detail);
        }
        std::mem::take(&mut self.problems)
    }
}
