//! `hpki-gateway audit ...`: what an auditor or the clinic's administrator reviews after
//! the fact: emergency (break-glass) grants awaiting their consent follow-up (in the
//! store), and the audit log (files, docs/audit.md).
//!
//! Layout: `audit` is a command group ([`AuditCommand`]). `audit emergency` takes the
//! store options (`--config FILE` / `--store-url URL`, global to it and its `done`
//! subcommand); the audit-log commands take the log directory instead and never open
//! the store:
//!
//! ```text
//! hpki-gateway audit emergency --since 2026-04-01 [--all] [--json]
//! hpki-gateway audit emergency done e-0123abcd --note "consent obtained 4/3"
//! hpki-gateway audit verify DIR [--key FILE] [--json]
//! hpki-gateway audit search DIR [--who X] [--since DATE] [--until DATE] [--reason CODE] [--json]
//! hpki-gateway audit export DIR --out FILE.csv [--bom] [same filters]
//! hpki-gateway audit prune DIR --older-than-days N [--retention-days R] [--dry-run]
//! ```

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::store_cmd::{
    finish, print_json, time_arg, time_or, CmdResult, Failure, Session, StoreOptions,
};
use super::{EXIT_NEGATIVE, EXIT_OK};
use crate::audit::{self, SearchFilter, DEFAULT_RETENTION_DAYS};
use crate::store::{self, EmergencyGrant};

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Emergency (break-glass) grants whose consent follow-up is not yet recorded (with
    /// --all: every grant); `emergency done ID --note TEXT` records a follow-up.
    Emergency(EmergencyArgs),
    /// Check the audit log under DIR (the audit root or one node's directory): every
    /// record against its hash (and HMAC with --key), the chain, segments and
    /// checkpoints. Exit 0 intact, 1 with the problems (each named by node, segment file
    /// and line), 2 bad input.
    Verify(VerifyArgs),
    /// Audit-log records that match (every condition given must hold), oldest first.
    Search(SearchArgs),
    /// Audit-log records that match, as CSV for auditors (header row, one row per record).
    Export(ExportArgs),
    /// Delete whole closed audit-log segments whose last record is older than
    /// --older-than-days. Refused below the retention period; the gateway itself never
    /// deletes.
    Prune(PruneArgs),
}

#[derive(Args)]
#[command(subcommand_negates_reqs = true)]
pub struct EmergencyArgs {
    #[command(flatten)]
    store: StoreOptions,
    /// Grants started at or after this time (2026-04-01 or RFC 3339).
    #[arg(long, value_name = "DATE", required = true)]
    since: Option<String>,
    /// Also grants whose follow-up is done.
    #[arg(long)]
    all: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<EmergencyAction>,
}

#[derive(Subcommand)]
pub enum EmergencyAction {
    /// Record that a grant's consent follow-up is done (by the operator). Exit 1 when the
    /// grant is unknown or its follow-up was already recorded.
    Done(DoneArgs),
}

#[derive(Args)]
pub struct DoneArgs {
    /// The grant's id, as `audit emergency` lists it.
    id: String,
    /// What was done (consent obtained, patient informed ...).
    #[arg(long)]
    note: String,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The audit root (`[audit] dir`, one subdirectory per node) or one node's directory.
    dir: PathBuf,
    /// The HMAC key file (exactly its bytes, as `[audit] hmac_key`): every record must
    /// carry a valid MAC, so a consistent rewrite of the chain is detected.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The record filters `search` and `export` share.
#[derive(Args)]
pub struct FilterArgs {
    /// A person: HPKI id, assistant id, operator or certificate SHA-256 (exactly), or part
    /// of a name.
    #[arg(long, value_name = "X")]
    who: Option<String>,
    /// Records at or after this time (2026-04-01 = midnight Japan time, or RFC 3339).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Records before this time (exclusive: --until 2026-04-02 ends with April 1st).
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// A reason code (docs/reason-codes.md), exactly.
    #[arg(long, value_name = "CODE")]
    reason: Option<String>,
    /// An event (request, auth_failure, emergency, ledger_change ...), exactly.
    #[arg(long, value_name = "EVENT")]
    event: Option<String>,
}

#[derive(Args)]
pub struct SearchArgs {
    /// The audit root or one node's directory.
    dir: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print JSON (an array of records as stored) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The audit root or one node's directory.
    dir: PathBuf,
    /// The CSV file to write (`-` for standard output).
    #[arg(long, value_name = "FILE.csv")]
    out: PathBuf,
    /// Start with a UTF-8 byte order mark, so that Excel opens the file as UTF-8.
    #[arg(long)]
    bom: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Args)]
pub struct PruneArgs {
    /// The audit root or one node's directory.
    dir: PathBuf,
    /// Delete closed segments whose last record is older than this many days.
    #[arg(long, value_name = "N")]
    older_than_days: u32,
    /// The retention period: --older-than-days below it is refused.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_RETENTION_DAYS)]
    retention_days: u32,
    /// Only list what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: AuditArgs) -> i32 {
    let result = match args.command {
        AuditCommand::Emergency(e) => e.store.open(false).and_then(|s| match e.action {
            Some(EmergencyAction::Done(d)) => emergency_done(&s, d),
            None => emergency_list(&s, e.since.as_deref(), e.all, e.json),
        }),
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Search(a) => search(a),
        AuditCommand::Export(a) => export(a),
        AuditCommand::Prune(a) => prune(a),
    };
    finish(result)
}

fn grant_json(g: &EmergencyGrant) -> Value {
    json!({
        "id": g.id,
        "doctor_hpki_id": g.doctor.hpki_id,
        "doctor_issuer": g.doctor.issuer,
        "doctor_name": g.doctor_name,
        "cert_sha256": g.cert_sha256,
        "reason": g.reason,
        "patient_ref": g.patient_ref,
        "started_at": store::format_time(g.started_at),
        "expires_at": store::format_time(g.expires_at),
        "ended_at": g.ended_at.map(store::format_time),
        "followup_at": g.followup_at.map(store::format_time),
        "followup_by": g.followup_by,
        "followup_note": g.followup_note,
    })
}

fn emergency_list(s: &Session, since: Option<&str>, all: bool, json: bool) -> CmdResult {
    let since = time_arg(since, "--since")?;
    let grants = s.block_on(s.store.emergencies(since, !all))?;
    if json {
        print_json(&Value::Array(grants.iter().map(grant_json).collect()))?;
        return Ok(EXIT_OK);
    }
    let what = if all {
        "emergency grants"
    } else {
        "emergency grants awaiting consent follow-up"
    };
    if grants.is_empty() {
        println!("no {what} since {}", store::format_time(since));
        return Ok(EXIT_OK);
    }
    println!(
        "{} {what} since {}:",
        grants.len(),
        store::format_time(since)
    );
    let now = store::now();
    for g in &grants {
        println!();
        println!("{}", g.id);
        println!(
            "  doctor:   {} {} ({})",
            g.doctor.hpki_id, g.doctor_name, g.doctor.issuer
        );
        println!("  reason:   {}", g.reason);
        println!(
            "  patient:  {}",
            g.patient_ref.as_deref().unwrap_or("(not given)")
        );
        let end = match g.ended_at {
            Some(e) => format!("ended {}", store::format_time(e)),
            None if g.active_at(now) => {
                format!("still open, expires {}", store::format_time(g.expires_at))
            }
            None => format!("expired {}", store::format_time(g.expires_at)),
        };
        println!("  from:     {} ({end})", store::format_time(g.started_at));
        match g.followup_at {
            Some(t) => println!(
                "  follow-up done {} by {}: {}",
                store::format_time(t),
                g.followup_by.as_deref().unwrap_or("?"),
                g.followup_note.as_deref().unwrap_or("")
            ),
            None => println!(
                "  follow-up: not recorded (`hpki-gateway audit emergency done {} --note TEXT`)",
                g.id
            ),
        }
    }
    Ok(EXIT_OK)
}

fn emergency_done(s: &Session, d: DoneArgs) -> CmdResult {
    let note = d.note.trim();
    if note.is_empty() {
        return Err(Failure::Usage(
            "--note is empty: say what was done (consent obtained, patient informed ...)".into(),
        ));
    }
    let id = d.id.trim();
    let now = store::now();
    if s.block_on(s.store.emergency_followup(id, &s.operator, note, now))? {
        println!(
            "follow-up of emergency grant {id} recorded at {} by {}",
            store::format_time(now),
            s.operator
        );
        return Ok(EXIT_OK);
    }
    // Say which: unknown id, or already done (and by whom).
    let known = s
        .block_on(s.store.emergencies(i64::MIN, false))?
        .into_iter()
        .find(|g| g.id == id);
    Err(Failure::Refused(match known {
        Some(g) => format!(
            "the follow-up of emergency grant {id} was already recorded {} by {}: {}",
            time_or(g.followup_at, "?"),
            g.followup_by.as_deref().unwrap_or("?"),
            g.followup_note.as_deref().unwrap_or("")
        ),
        None => format!(
            "no emergency grant {id:?}: `hpki-gateway audit emergency --since DATE --all` lists \
             the ids"
        ),
    }))
}

// ---------------------------------------------------------------------------------------
// The audit log: verify, search, export, prune (files only; no store).
// ---------------------------------------------------------------------------------------

/// The log directory must exist: a typo must not read as "an empty, intact log".
fn log_dir(dir: &std::path::Path) -> Result<(), Failure> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::Usage(format!(
            "{} is not a directory: give the audit root ([audit] dir) or one node's directory",
            dir.display()
        )))
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn verify(a: VerifyArgs) -> CmdResult {
    log_dir(&a.dir)?;
    let key = a
        .key
        .as_deref()
        .map(audit::read_key_file)
        .transpose()
        .map_err(usage)?;
    let report = audit::verify(&a.dir, key.as_deref());
    if report.segments == 0 && report.ok() {
        return Err(Failure::Usage(format!(
            "no audit segments (NNNNNNNN-YYYYMMDD.jsonl) under {}",
            a.dir.display()
        )));
    }
    if a.json {
        print_json(&json!({
            "ok": report.ok(),
            "segments": report.segments,
            "records": report.records,
            "key_checked": key.is_some(),
            "problems": report.problems,
            "notes": report.notes,
            "heads": report.heads,
        }))?;
    } else {
        println!(
            "{} records in {} segments{}",
            report.records,
            report.segments,
            if key.is_some() { ", MACs checked" } else { "" }
        );
        for n in &report.notes {
            println!("note: {n}");
        }
        for h in &report.heads {
            println!(
                "head of {}: seq {} hash {} ({}) — keep it elsewhere to detect a later cut",
                h.node, h.seq, h.hash, h.segment
            );
        }
        if report.ok() {
            println!("OK: the chain is intact");
        } else {
            println!("{} problems:", report.problems.len());
            for p in &report.problems {
                println!("  {p}");
            }
        }
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_NEGATIVE })
}

fn filter(f: &FilterArgs) -> Result<SearchFilter, Failure> {
    let ms = |v: &Option<String>, flag: &str| {
        v.as_deref()
            .map(|s| {
                store::parse_time(s)
                    .map(|t| t.saturating_mul(1000))
                    .map_err(|e| Failure::Usage(format!("{flag}: {e}")))
            })
            .transpose()
    };
    Ok(SearchFilter {
        who: f.who.clone(),
        since_ms: ms(&f.since, "--since")?,
        until_ms: ms(&f.until, "--until")?,
        reason: f.reason.clone(),
        event: f.event.clone(),
    })
}

fn search(a: SearchArgs) -> CmdResult {
    log_dir(&a.dir)?;
    let records = audit::search(&a.dir, &filter(&a.filter)?).map_err(usage)?;
    if a.json {
        let values = records
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::Refused(e.to_string()))?;
        print_json(&Value::Array(values))?;
        return Ok(EXIT_OK);
    }
    if records.is_empty() {
        println!("no records match");
        return Ok(EXIT_OK);
    }
    for r in &records {
        let who = r
            .hpki_id
            .as_deref()
            .or(r.assistant_id.as_deref())
            .or(r.operator.as_deref())
            .unwrap_or("-");
        let mut line = format!(
            "{} {}#{} {} {}",
            audit::format_time_ms(r.time_ms),
            r.node,
            r.seq,
            r.event,
            who
        );
        if let Some(n) = &r.name {
            line.push_str(&format!(" ({n})"));
        }
        for v in [&r.decision, &r.reason, &r.method, &r.path]
            .into_iter()
            .flatten()
        {
            line.push(' ');
            line.push_str(v);
        }
        if let Some(s) = r.status {
            line.push_str(&format!(" {s}"));
        }
        if let Some(d) = &r.detail {
            line.push_str(&format!(" — {d}"));
        }
        println!("{line}");
    }
    println!("{} records", records.len());
    Ok(EXIT_OK)
}

fn export(a: ExportArgs) -> CmdResult {
    log_dir(&a.dir)?;
    let records = audit::search(&a.dir, &filter(&a.filter)?).map_err(usage)?;
    let mut bytes = Vec::new();
    if a.bom {
        bytes.extend_from_slice("\u{feff}".as_bytes());
    }
    audit::write_csv(&records, &mut bytes).map_err(|e| Failure::Refused(e.to_string()))?;
    if a.out.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| Failure::Refused(format!("cannot write to standard output: {e}")))?;
    } else {
        std::fs::write(&a.out, &bytes)
            .map_err(|e| Failure::Refused(format!("cannot write {}: {e}", a.out.display())))?;
        eprintln!("exported {} records to {}", records.len(), a.out.display());
    }
    Ok(EXIT_OK)
}

fn prune(a: PruneArgs) -> CmdResult {
    log_dir(&a.dir)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let report = audit::prune(
        &a.dir,
        a.older_than_days,
        a.retention_days,
        now_ms,
        a.dry_run,
    )
    .map_err(|e| match e {
        audit::AuditError::Retention { .. } => Failure::Usage(e.to_string()),
        other => Failure::Refused(other.to_string()),
    })?;
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for p in &report.deleted {
        println!("{verb} {}", p.display());
    }
    println!(
        "{} segments {verb}, {} kept (younger than {} days, open, or the newest of their node)",
        report.deleted.len(),
        report.kept,
        a.older_than_days
    );
    Ok(EXIT_OK)
}
