//! `hpki-gateway audit ...`: what an auditor or the clinic's administrator reviews after
//! the fact. Today: emergency (break-glass) grants awaiting their consent follow-up.
//!
//! Layout: `audit` is a command group ([`AuditCommand`]) so that later reviews (the audit
//! log) become sibling subcommands. `audit emergency` lists grants; its one subcommand,
//! `audit emergency done ID --note TEXT`, records the follow-up:
//!
//! ```text
//! hpki-gateway audit emergency --since 2026-04-01 [--all] [--json]
//! hpki-gateway audit emergency done e-0123abcd --note "consent obtained 4/3"
//! ```

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::store_cmd::{
    finish, print_json, time_arg, time_or, CmdResult, Failure, Session, StoreOptions,
};
use super::EXIT_OK;
use crate::store::{self, EmergencyGrant};

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreOptions,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Emergency (break-glass) grants whose consent follow-up is not yet recorded (with
    /// --all: every grant); `emergency done ID --note TEXT` records a follow-up.
    Emergency(EmergencyArgs),
}

#[derive(Args)]
#[command(subcommand_negates_reqs = true)]
pub struct EmergencyArgs {
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

pub fn run(args: AuditArgs) -> i32 {
    let result = args.store.open(false).and_then(|s| match args.command {
        AuditCommand::Emergency(e) => match e.action {
            Some(EmergencyAction::Done(d)) => emergency_done(&s, d),
            None => emergency_list(&s, e),
        },
    });
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

fn emergency_list(s: &Session, a: EmergencyArgs) -> CmdResult {
    let since = time_arg(a.since.as_deref(), "--since")?;
    let grants = s.block_on(s.store.emergencies(since, !a.all))?;
    if a.json {
        print_json(&Value::Array(grants.iter().map(grant_json).collect()))?;
        return Ok(EXIT_OK);
    }
    let what = if a.all {
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
