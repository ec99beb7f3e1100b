//! The handle ([`AuditLog`]) and the writer task behind it.
//!
//! Callers put records into a bounded channel; one task owns the files. The task takes
//! whatever is queued as one batch (gathering for up to [`COALESCE`] more when nobody waits
//! for durability), chains it (seq, prev, hash, mac), writes it with one
//! `write` per batch and fsyncs it (group commit) when a durable caller or a flush waits,
//! when `fsync_records` are unsynced, or `fsync_interval` after the first unsynced write.
//! All file I/O runs on tokio's blocking pool, so the handshake path never waits on disk.
//!
//! Failure (ENOSPC, EACCES, EIO): the bytes that did not make it are cut off again, the
//! records stay in memory (chained or queued), `healthy()` turns false, `append` refuses
//! at once (the caller answers 503 `audit_unavailable`), and the task retries about every
//! second. A failed fsync is not trusted to have kept anything (Linux may drop the dirty
//! pages and report success on the next fsync), so everything since the last good fsync
//! is written again.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::record::{
    digest_eq, line_bytes, record_hash, CheckpointInfo, EVENT_CHECKPOINT, EVENT_RECOVERED,
};
use super::segment::{list_segments, read_segment, segment_name, utc_day, SegmentFile};
use super::{valid_node_name, AuditConfig, AuditError, Record, ZERO_HASH};
use crate::pki::name::hex;

/// How long the writer waits before retrying after a failed write or fsync.
const RETRY: Duration = Duration::from_secs(1);
/// At most this many queued messages are taken into one batch.
const BATCH: usize = 4096;
/// How long records that nobody waits for are gathered into one write...
const COALESCE: Duration = Duration::from_millis(2);
/// ...unless this many are there already.
const COALESCE_RECORDS: usize = 256;
/// After the last handle is dropped, failing writes are retried this often before the
/// task gives up (it logs how many records are lost).
const FINAL_ATTEMPTS: u32 = 5;

type Reply = oneshot::Sender<Result<(), AuditError>>;

enum Msg {
    Record(Box<Record>, Option<Reply>),
    Flush(Reply),
}

/// State shared by the handles and the writer task.
struct Shared {
    healthy: AtomicBool,
    depth: AtomicUsize,
    last_error: Mutex<String>,
}

impl Shared {
    fn unavailable(&self) -> AuditError {
        let cause = self
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|_| "the audit writer failed".into());
        AuditError::Unavailable { cause }
    }
}

/// A cheap, cloneable handle to one node's audit log. The writer task stops once every
/// handle is dropped (after writing and fsyncing what is queued).
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens (creating `dir/<node>/`), continues the chain of the last segment and
    /// returns the handle plus the writer future to spawn on tokio. A torn last line
    /// (a crash during a write) is cut off and a `recovered` record that says how many
    /// bytes were cut is written and fsynced before `open` returns. Blocking: call it at
    /// startup, not on a request path.
    pub fn open(
        cfg: AuditConfig,
    ) -> Result<(AuditLog, impl Future<Output = ()> + Send + 'static), AuditError> {
        if !valid_node_name(&cfg.node) {
            return Err(AuditError::Config(format!(
                "node id {:?}: use 1-128 letters, digits, '.', '_' or '-' (it names the \
                 node's directory)",
                cfg.node
            )));
        }
        if cfg.segment_max_bytes == 0 || cfg.fsync_records == 0 || cfg.queue == 0 {
            return Err(AuditError::Config(
                "segment_max_bytes, fsync_records and queue must be at least 1".into(),
            ));
        }
        if cfg.hmac_key.as_ref().is_some_and(Vec::is_empty) {
            return Err(AuditError::Config("the HMAC key is empty".into()));
        }
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            depth: AtomicUsize::new(0),
            last_error: Mutex::new(String::new()),
        });
        let mut writer = Writer::open(&cfg, shared.clone())?;
        // The recovered record (if any) is on disk before the gateway serves anything.
        writer.step(true).map_err(|e| AuditError::Unavailable {
            cause: e.to_string(),
        })?;
        let (tx, rx) = mpsc::channel(cfg.queue);
        let task = run(rx, writer, shared.clone(), cfg.fsync_interval);
        Ok((AuditLog { tx, shared }, task))
    }

    /// Queues a record. Waits only while the queue is full (back-pressure, never drops).
    /// Err([`AuditError::Unavailable`]) at once, without queueing, while the log is
    /// failing; Err([`AuditError::Closed`]) when the writer has stopped.
    pub async fn append(&self, r: Record) -> Result<(), AuditError> {
        self.send(r, None).await
    }

    /// Queues the record and waits until it is written and fsynced (the group commit
    /// that covers it). Err when the log is failing or that write/fsync failed: the
    /// record is then still kept and written when the writer recovers, so it may appear
    /// in the log although the caller was told Err.
    pub async fn append_durable(&self, r: Record) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        self.send(r, Some(reply)).await?;
        done.await.unwrap_or(Err(AuditError::Closed))
    }

    async fn send(&self, r: Record, reply: Option<Reply>) -> Result<(), AuditError> {
        if !self.healthy() {
            return Err(self.shared.unavailable());
        }
        self.shared.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Record(Box::new(r), reply)).await.is_err() {
            self.shared.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(AuditError::Closed);
        }
        Ok(())
    }

    /// Whether the last write/fsync succeeded. False while the disk is full or the
    /// directory unwritable; the writer retries about every second and this turns true
    /// again with the first write that succeeds.
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Records queued or being written, not yet in the file.
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Writes and fsyncs everything queued before this call (shutdown). Err when that
    /// failed (the records stay queued; the writer keeps retrying).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Flush(reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        done.await.unwrap_or(Err(AuditError::Closed))
    }
}

/// The writer task: batches, group commit, retries.
async fn run(
    mut rx: mpsc::Receiver<Msg>,
    writer: Writer,
    shared: Arc<Shared>,
    fsync_interval: Duration,
) {
    let mut writer = Some(Box::new(writer));
    let mut failing = false;
    let mut last_attempt = Instant::now();
    let mut first_unsynced: Option<Instant> = None;
    let mut closed = false;
    let mut final_attempts = 0u32;
    loop {
        let Some(mut w) = writer.take() else { return };
        let mut flushes: Vec<Reply> = Vec::new();
        if !closed {
            let deadline = if failing {
                Some(last_attempt + RETRY)
            } else {
                first_unsynced.map(|t| t + fsync_interval)
            };
            let got = match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            };
            match got {
                Some(Some(first)) => {
                    let take = |m: Msg, w: &mut Writer, flushes: &mut Vec<Reply>| match m {
                        Msg::Record(r, reply) => w.queue(*r, reply, failing),
                        Msg::Flush(reply) => flushes.push(reply),
                    };
                    take(first, &mut w, &mut flushes);
                    let mut taken = 1usize;
                    while taken < BATCH {
                        match rx.try_recv() {
                            Ok(m) => take(m, &mut w, &mut flushes),
                            Err(_) => break,
                        }
                        taken += 1;
                    }
                    // Records nobody waits for are gathered for a moment and written
                    // together: one write and one trip to the blocking pool per batch
                    // instead of per wake-up (under load, most of the writer's cost).
                    // A durable record, a flush or a full batch ends the wait at once.
                    let until = Instant::now() + COALESCE;
                    while !failing
                        && taken < COALESCE_RECORDS
                        && flushes.is_empty()
                        && !w.durable_waiting()
                    {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(m)) => take(m, &mut w, &mut flushes),
                            Ok(None) => {
                                closed = true;
                                break;
                            }
                            Err(_) => break,
                        }
                        taken += 1;
                    }
                }
                Some(None) => closed = true,
                None => {} // a deadline: fsync interval or retry
            }
        }
        let now = Instant::now();
        let attempt = !failing || closed || !flushes.is_empty() || now >= last_attempt + RETRY;
        if !attempt || (w.idle() && flushes.is_empty() && !closed) {
            writer = Some(w);
            continue;
        }
        let sync = closed
            || !flushes.is_empty()
            || w.durable_waiting()
            || first_unsynced.is_some_and(|t| now >= t + fsync_interval);
        last_attempt = now;
        let (w, result) = match tokio::task::spawn_blocking(move || {
            let r = w.step(sync);
            (w, r)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                // The writer panicked: nothing can be written any more; say so.
                shared.healthy.store(false, Ordering::Release);
                if let Ok(mut last) = shared.last_error.lock() {
                    *last = format!("the audit writer stopped: {e}");
                }
                tracing::error!(error = %e, "audit writer stopped");
                return;
            }
        };
        let mut w = w;
        match result {
            Ok(()) => {
                if failing {
                    tracing::warn!("audit log writable again");
                }
                failing = false;
                shared.healthy.store(true, Ordering::Release);
                first_unsynced = if w.has_unsynced() {
                    first_unsynced.or(Some(now))
                } else {
                    None
                };
                for f in flushes {
                    let _ = f.send(Ok(()));
                }
                if closed {
                    return;
                }
            }
            Err(e) => {
                let cause = e.to_string();
                if !failing {
                    tracing::error!(error = %cause, "audit log cannot be written; retrying");
                }
                failing = true;
                if let Ok(mut last) = shared.last_error.lock() {
                    *last = cause.clone();
                }
                shared.healthy.store(false, Ordering::Release);
                let err = AuditError::Unavailable { cause };
                w.fail_waiters(&err);
                for f in flushes {
                    let _ = f.send(Err(err.clone()));
                }
                if closed {
                    final_attempts += 1;
                    if final_attempts >= FINAL_ATTEMPTS {
                        tracing::error!(
                            lost = w.unwritten_records(),
                            "audit writer giving up at shutdown: records not written"
                        );
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        writer = Some(w);
    }
}

/// An I/O failure inside the writer, naming what it was doing and on which file.
#[derive(Debug)]
pub(crate) struct StepError {
    op: &'static str,
    path: PathBuf,
    err: std::io::Error,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.err)
    }
}

fn step_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StepError + 'a {
    move |err| StepError {
        op,
        path: path.to_path_buf(),
        err,
    }
}

struct Pending {
    record: Record,
    reply: Option<Reply>,
    /// Counted in `queue_depth` (the writer's own records are not).
    counted: bool,
}

/// The segment being written.
struct OpenSegment {
    file: File,
    path: PathBuf,
    name: String,
    day: i64,
    /// File length known to be on disk (fsynced).
    synced_len: u64,
    /// Records in the segment (checkpoint excluded), and their first seq.
    count: u64,
    first_seq: u64,
    last_time_ms: i64,
    /// The checkpoint is chained: the segment is closed once it is written and fsynced.
    closing: bool,
    /// The directory entry of a new segment still needs an fsync.
    dir_unsynced: bool,
}

/// Everything the writer owns; moved into the blocking pool for each step.
struct Writer {
    node: String,
    node_dir: PathBuf,
    key: Option<hmac::Key>,
    max_bytes: u64,
    fsync_records: usize,
    shared: Arc<Shared>,
    next_number: u32,
    seg: Option<OpenSegment>,
    /// The last chained record (seq 0 and ZERO_HASH before the first).
    seq: u64,
    prev: String,
    /// Chained lines not yet fsynced; the first `written` bytes are in the file.
    unsynced: Vec<u8>,
    written: usize,
    unsynced_records: usize,
    /// Counted records chained but not yet written (they leave `queue_depth` when
    /// written).
    unwritten_counted: usize,
    /// Durable callers whose records are in `unsynced`.
    waiting: Vec<Reply>,
    pending: VecDeque<Pending>,
}

impl Writer {
    fn open(cfg: &AuditConfig, shared: Arc<Shared>) -> Result<Writer, AuditError> {
        let node_dir = cfg.node_dir();
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| AuditError::io("create the directory", &node_dir, e))?;
        let mut w = Writer {
            node: cfg.node.clone(),
            node_dir: node_dir.clone(),
            key: cfg
                .hmac_key
                .as_ref()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k)),
            max_bytes: cfg.segment_max_bytes,
            fsync_records: cfg.fsync_records,
            shared,
            next_number: 1,
            seg: None,
            seq: 0,
            prev: ZERO_HASH.to_owned(),
            unsynced: Vec::new(),
            written: 0,
            unsynced_records: 0,
            unwritten_counted: 0,
            waiting: Vec::new(),
            pending: VecDeque::new(),
        };
        let segments = list_segments(&node_dir)?;
        let Some(last) = segments.last() else {
            return Ok(w);
        };
        w.next_number = last
            .number
            .checked_add(1)
            .ok_or_else(|| AuditError::Corrupt {
                path: last.path.clone(),
                line: 0,
                what: "the segment number is at its maximum".into(),
            })?;
        let text = read_segment(&last.path)?;
        let cut = text.torn.len();
        // The record the chain continues from: the last complete line of the last
        // segment, or, when that segment is empty, of the one before it.
        let tail = match text.lines.last() {
            Some(line) => Some((last_record(&last.path, text.lines.len(), line)?, false)),
            None => match segments.len().checked_sub(2).map(|i| &segments[i]) {
                Some(before) => {
                    let t = read_segment(&before.path)?;
                    match t.lines.last() {
                        Some(line) => Some((last_record(&before.path, t.lines.len(), line)?, true)),
                        None => {
                            return Err(AuditError::Corrupt {
                                path: before.path.clone(),
                                line: 0,
                                what: "an empty segment before the last one".into(),
                            })
                        }
                    }
                }
                None if last.number == 1 => None,
                None => {
                    return Err(AuditError::Corrupt {
                        path: last.path.clone(),
                        line: 0,
                        what: "the only segment is empty but not number 1".into(),
                    })
                }
            },
        };
        if let Some((r, _)) = &tail {
            w.seq = r.seq;
            w.prev = r.hash.clone();
        }
        let closed = matches!(&tail, Some((r, false)) if r.event == EVENT_CHECKPOINT);
        if closed {
            // Closed by a checkpoint: the next record starts the next segment.
            if cut > 0 {
                truncate(&last.path, (file_len(&last.path)? - cut as u64) as usize)?;
            }
        } else {
            w.seg = Some(reopen(last, &text, cut)?);
        }
        if cut > 0 {
            w.pending.push_back(Pending {
                record: Record {
                    time_ms: now_ms(),
                    event: EVENT_RECOVERED.into(),
                    reason: Some("torn_record".into()),
                    detail: Some(format!(
                        "cut {cut} bytes of an incomplete record at the end of {} (a crash \
                         during a write)",
                        last.name
                    )),
                    ..Default::default()
                },
                reply: None,
                counted: false,
            });
        }
        Ok(w)
    }

    /// Takes one record from the queue. While failing, a durable caller is answered at
    /// once (the record is kept).
    fn queue(&mut self, record: Record, reply: Option<Reply>, failing: bool) {
        let reply = match reply {
            Some(r) if failing => {
                let _ = r.send(Err(self.shared.unavailable()));
                None
            }
            other => other,
        };
        self.pending.push_back(Pending {
            record,
            reply,
            counted: true,
        });
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && !self.has_unsynced()
    }

    fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || self.seg.as_ref().is_some_and(|s| s.dir_unsynced)
    }

    fn durable_waiting(&self) -> bool {
        !self.waiting.is_empty() || self.pending.iter().any(|p| p.reply.is_some())
    }

    fn unwritten_records(&self) -> usize {
        self.unwritten_counted + self.pending.len()
    }

    fn fail_waiters(&mut self, err: &AuditError) {
        for w in self.waiting.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        for p in &mut self.pending {
            if let Some(w) = p.reply.take() {
                let _ = w.send(Err(err.clone()));
            }
        }
    }

    /// Writes everything pending (rotating as needed) and fsyncs when `sync` or when
    /// `fsync_records` are unsynced. On error the state stays consistent: nothing is
    /// lost, and the next step continues where this one stopped.
    fn step(&mut self, sync: bool) -> Result<(), StepError> {
        loop {
            self.write_out()?;
            if self.seg.as_ref().is_some_and(|s| s.closing) {
                self.sync()?;
                self.seg = None;
            }
            let Some(front) = self.pending.front() else {
                break;
            };
            let day = utc_day(front.record.time_ms);
            if self.seg.is_none() {
                self.create_segment(day)?;
            }
            // Rotation: by size, or when a record of a later UTC day arrives (an earlier
            // day — a caller's clock or a record queued just before midnight — stays in
            // the current segment rather than opening one per reordering).
            let rotate = {
                let s = self.seg.as_ref().expect("created above");
                s.count > 0
                    && (s.synced_len + self.unsynced.len() as u64 >= self.max_bytes || day > s.day)
            };
            if rotate {
                self.chain_checkpoint();
                continue;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.chain(p.record);
            if p.counted {
                self.unwritten_counted += 1;
            }
            if let Some(reply) = p.reply {
                self.waiting.push(reply);
            }
            // Keep going without a write per record; rotation is checked per record.
            while let Some(front) = self.pending.front() {
                let s = self.seg.as_ref().expect("open");
                let day = utc_day(front.record.time_ms);
                if s.synced_len + self.unsynced.len() as u64 >= self.max_bytes || day > s.day {
                    break;
                }
                let p = self.pending.pop_front().expect("front exists");
                self.chain(p.record);
                if p.counted {
                    self.unwritten_counted += 1;
                }
                if let Some(reply) = p.reply {
                    self.waiting.push(reply);
                }
            }
        }
        if sync || !self.waiting.is_empty() || self.unsynced_records >= self.fsync_records {
            self.sync()?;
        }
        Ok(())
    }

    /// Assigns node, seq, prev, hash and mac, and appends the line to `unsynced`.
    fn chain(&mut self, mut r: Record) {
        let seg = self.seg.as_mut().expect("chain needs an open segment");
        r.node.clone_from(&self.node);
        r.seq = self.seq + 1;
        r.prev.clone_from(&self.prev);
        r.hash.clear();
        r.mac = None;
        let canonical = line_bytes(&r);
        r.hash = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical).as_ref());
        r.mac = self
            .key
            .as_ref()
            .map(|k| hex(hmac::sign(k, &canonical).as_ref()));
        self.unsynced.extend_from_slice(&line_bytes(&r));
        self.unsynced.push(b'\n');
        self.unsynced_records += 1;
        if r.event != EVENT_CHECKPOINT {
            if seg.count == 0 {
                seg.first_seq = r.seq;
            }
            seg.count += 1;
            seg.last_time_ms = r.time_ms;
        }
        self.seq = r.seq;
        self.prev = r.hash;
    }

    fn chain_checkpoint(&mut self) {
        let seg = self.seg.as_mut().expect("checkpoint needs an open segment");
        let info = CheckpointInfo {
            segment: seg.name.clone(),
            records: seg.count,
            first_seq: seg.first_seq,
            last_seq: self.seq,
        };
        let time_ms = seg.last_time_ms;
        seg.closing = true;
        self.chain(Record {
            time_ms,
            event: EVENT_CHECKPOINT.into(),
            detail: Some(info.detail()),
            ..Default::default()
        });
    }

    /// Writes the chained bytes not yet in the file, in one `write_all` (the whole batch:
    /// a kill leaves at most one torn line). On error the partial write is cut off.
    fn write_out(&mut self) -> Result<(), StepError> {
        if self.written == self.unsynced.len() {
            return Ok(());
        }
        let seg = self
            .seg
            .as_mut()
            .expect("unsynced bytes belong to the open segment");
        let keep = seg.synced_len + self.written as u64;
        // A cut that failed earlier (or a failed fsync) leaves the file longer than what
        // is accounted for; appending after it would duplicate or tear lines.
        let len = seg
            .file
            .metadata()
            .map_err(step_err("stat", &seg.path))?
            .len();
        if len != keep {
            seg.file
                .set_len(keep)
                .map_err(step_err("cut back", &seg.path))?;
        }
        if let Err(e) = seg.file.write_all(&self.unsynced[self.written..]) {
            // Best effort: shrinking works on a full disk; if it fails too, the next
            // write would follow a torn line, so retry the cut before every write.
            let _ = seg.file.set_len(keep);
            return Err(step_err("write", &seg.path)(e));
        }
        self.written = self.unsynced.len();
        self.shared
            .depth
            .fetch_sub(self.unwritten_counted, Ordering::Relaxed);
        self.unwritten_counted = 0;
        Ok(())
    }

    /// fsyncs the open segment (and its directory entry when new) and wakes the durable
    /// callers. A failed fsync cuts the file back to the last good fsync: the retry
    /// writes the unsynced bytes again rather than trusting the page cache.
    fn sync(&mut self) -> Result<(), StepError> {
        let Some(seg) = self.seg.as_mut() else {
            return Ok(());
        };
        if seg.dir_unsynced {
            sync_dir(&self.node_dir).map_err(step_err("fsync the directory", &self.node_dir))?;
            seg.dir_unsynced = false;
        }
        if self.unsynced.is_empty() {
            return Ok(());
        }
        if let Err(e) = seg.file.sync_data() {
            let _ = seg.file.set_len(seg.synced_len);
            self.written = 0;
            return Err(step_err("fsync", &seg.path)(e));
        }
        seg.synced_len += self.unsynced.len() as u64;
        self.unsynced.clear();
        self.written = 0;
        self.unsynced_records = 0;
        for w in self.waiting.drain(..) {
            let _ = w.send(Ok(()));
        }
        Ok(())
    }

    fn create_segment(&mut self, day: i64) -> Result<(), StepError> {
        let name = segment_name(self.next_number, day);
        let path = self.node_dir.join(&name);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(step_err("create", &path))?;
        self.seg = Some(OpenSegment {
            file,
            path,
            name,
            day,
            synced_len: 0,
            count: 0,
            first_seq: 0,
            last_time_ms: 0,
            closing: false,
            dir_unsynced: true,
        });
        self.next_number += 1;
        Ok(())
    }
}

/// Parses the last complete record of a segment; it must be intact, since the chain
/// continues from its hash.
fn last_record(path: &Path, line_no: usize, line: &[u8]) -> Result<Record, AuditError> {
    let corrupt = |what: String| AuditError::Corrupt {
        path: path.to_path_buf(),
        line: line_no,
        what,
    };
    let r: Record = serde_json::from_slice(line)
        .map_err(|e| corrupt(format!("the last record is not a record ({e})")))?;
    if !digest_eq(&record_hash(&r), &r.hash) || line_bytes(&r) != line {
        return Err(corrupt(
            "the last record does not match its hash (modified?)".into(),
        ));
    }
    Ok(r)
}

/// Reopens the last, unclosed segment for appending, cutting a torn tail first.
fn reopen(
    last: &SegmentFile,
    text: &super::segment::SegmentText,
    cut: usize,
) -> Result<OpenSegment, AuditError> {
    let len = file_len(&last.path)?;
    let keep = len - cut as u64;
    if cut > 0 {
        truncate(&last.path, keep as usize)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .open(&last.path)
        .map_err(|e| AuditError::io("open", &last.path, e))?;
    let mut seg = OpenSegment {
        file,
        path: last.path.clone(),
        name: last.name.clone(),
        day: last.day,
        synced_len: keep,
        count: 0,
        first_seq: 0,
        last_time_ms: 0,
        closing: false,
        dir_unsynced: false,
    };
    for (i, line) in text.lines.iter().enumerate() {
        let r: Record = serde_json::from_slice(line).map_err(|e| AuditError::Corrupt {
            path: last.path.clone(),
            line: i + 1,
            what: format!("not a record ({e})"),
        })?;
        if r.event == EVENT_CHECKPOINT {
            return Err(AuditError::Corrupt {
                path: last.path.clone(),
                line: i + 1,
                what: "a checkpoint inside the open segment".into(),
            });
        }
        if seg.count == 0 {
            seg.first_seq = r.seq;
        }
        seg.count += 1;
        seg.last_time_ms = r.time_ms;
    }
    Ok(seg)
}

fn file_len(path: &Path) -> Result<u64, AuditError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| AuditError::io("read the size of", path, e))
}

/// Cuts a torn tail and makes the cut durable (the recovered record says it happened).
fn truncate(path: &Path, keep: usize) -> Result<(), AuditError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))?;
    f.set_len(keep as u64)
        .and_then(|_| f.sync_all())
        .map_err(|e| AuditError::io("cut the torn record at the end of", path, e))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
