//! `hpki-gateway ledger ...`: the clinic's ledger of assistants, the organization cards
//! they hold and the doctors who supervise them (docs/ledger.md). Every change records
//! the operator; `ledger changes` lists them. `export` / `import` carry the whole ledger
//! as CSV (one row per assistant) for editing in a spreadsheet.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::store_cmd::{
    finish, print_json, read_certificate, time_arg, time_or, CmdResult, Failure, Session,
    StoreOptions,
};
use super::{EXIT_NEGATIVE, EXIT_OK};
use crate::pki::{login_problems, name, read_identity, Reason};
use crate::store::{
    self, Assistant, CardAssignment, CardKey, DoctorRef, LedgerRow, StoreError, Timestamp,
};

#[derive(Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    store: StoreOptions,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Assistants: add, list, show, deactivate.
    #[command(subcommand)]
    Assistant(AssistantCommand),
    /// Organization cards held by assistants: assign, release, history, holder.
    #[command(subcommand)]
    Card(CardCommand),
    /// The doctors who supervise an assistant: add, remove.
    #[command(subcommand)]
    Supervisor(SupervisorCommand),
    /// The ledger's change log: when, who (operator), what.
    Changes(ChangesArgs),
    /// Write the ledger as CSV, one row per assistant (docs/ledger.md has the format).
    Export(ExportArgs),
    /// Apply a CSV ledger in one transaction: every row or none. Exit 0 committed (or a
    /// clean dry run), 1 with the problems (nothing written), 2 unreadable file.
    Import(ImportArgs),
}

#[derive(Subcommand)]
pub enum AssistantCommand {
    /// Add an assistant (ids are never reused: history refers to them).
    Add(AssistantAddArgs),
    /// Every assistant with their current cards and supervisors.
    List(JsonArgs),
    /// One assistant: details, card history, supervision history, changes.
    Show(AssistantShowArgs),
    /// End an assistant's activity; the cards they hold are released with them.
    Deactivate(AssistantDeactivateArgs),
}

#[derive(Args)]
pub struct AssistantAddArgs {
    /// The clinic's id for the assistant (staff number ...).
    #[arg(long)]
    id: String,
    /// Name in kanji, e.g. "山田 花子".
    #[arg(long)]
    name_kanji: String,
    /// Name in romaji, e.g. "Yamada Hanako".
    #[arg(long)]
    name_romaji: String,
    /// Facility (clinic, branch) where they work.
    #[arg(long)]
    facility: String,
    /// First day of activity (2026-04-01 or RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// End of activity (exclusive); default open-ended.
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
}

#[derive(Args)]
pub struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AssistantShowArgs {
    /// The assistant's id.
    id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AssistantDeactivateArgs {
    /// The assistant's id.
    id: String,
    /// When the activity ends (2026-04-01 or RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
}

/// How a command names a card: its certificate, its SHA-256, or issuer and serial.
#[derive(Args)]
pub struct CardSelect {
    /// The card's certificate (PEM or DER); the card is recorded by the certificate's
    /// SHA-256 (a renewed card has a new certificate and must be assigned again).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sha256", "issuer", "serial"])]
    cert: Option<PathBuf>,
    /// The card certificate's SHA-256: 64 hex digits, as `hpki-gateway cert inspect`
    /// prints cert_sha256 (colons allowed).
    #[arg(long, value_name = "HEX", conflicts_with_all = ["issuer", "serial"])]
    sha256: Option<String>,
    /// The card certificate's issuer DN as `cert inspect` prints it (with --serial).
    #[arg(long, value_name = "DN", requires = "serial")]
    issuer: Option<String>,
    /// The card certificate's serial number in hex (with --issuer).
    #[arg(long, value_name = "HEX", requires = "issuer")]
    serial: Option<String>,
}

#[derive(Subcommand)]
pub enum CardCommand {
    /// Give a card to an assistant; refused while someone else holds it.
    Assign(CardAssignArgs),
    /// End the current holding of a card.
    Release(CardAtArgs),
    /// Every holder of a card, oldest first.
    History(CardHistoryArgs),
    /// Who held the card at a time (default now). Exit 0 with the holder, 1 nobody.
    Holder(CardHolderArgs),
}

#[derive(Args)]
pub struct CardAssignArgs {
    /// The assistant's id.
    #[arg(long)]
    assistant: String,
    #[command(flatten)]
    card: CardSelect,
    /// From when (2026-04-01 or RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
}

#[derive(Args)]
pub struct CardAtArgs {
    #[command(flatten)]
    card: CardSelect,
    /// When (2026-04-01 or RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
}

#[derive(Args)]
pub struct CardHistoryArgs {
    #[command(flatten)]
    card: CardSelect,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CardHolderArgs {
    #[command(flatten)]
    card: CardSelect,
    /// The moment asked about (2026-04-01 or RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum SupervisorCommand {
    /// Record that a doctor supervises an assistant (confirms their held writes).
    Add(SupervisorArgs),
    /// End a supervision.
    Remove(SupervisorArgs),
}

#[derive(Args)]
pub struct SupervisorArgs {
    /// The assistant's id.
    #[arg(long)]
    assistant: String,
    /// The doctor's HPKI authentication certificate (PEM or DER): its HPKI id and
    /// issuer DN are taken from it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["hpki_id", "issuer"])]
    doctor_cert: Option<PathBuf>,
    /// The doctor's HPKI id (subject serialNumber of their authentication certificate).
    #[arg(long, value_name = "ID", requires = "issuer")]
    hpki_id: Option<String>,
    /// Issuer DN of the doctor's authentication certificate, as `cert inspect` prints it.
    #[arg(long, value_name = "DN", requires = "hpki_id")]
    issuer: Option<String>,
    /// When (2026-04-01 or RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
}

#[derive(Args)]
pub struct ChangesArgs {
    /// Only changes at or after this time (2026-04-01 or RFC 3339); default all.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Start with a UTF-8 byte order mark, so that Excel opens the file as UTF-8 (import
    /// accepts files with or without one).
    #[arg(long)]
    bom: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The CSV file (UTF-8, header row first; docs/ledger.md).
    file: PathBuf,
    /// Check every row against the file and the store, write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: LedgerArgs) -> i32 {
    let opts = args.store;
    let result = match args.command {
        // Import reads and checks its file before opening the store.
        LedgerCommand::Import(a) => import(&opts, a),
        command => opts
            .open(false)
            .and_then(|session| dispatch(&session, command)),
    };
    finish(result)
}

fn dispatch(s: &Session, command: LedgerCommand) -> CmdResult {
    match command {
        LedgerCommand::Assistant(c) => match c {
            AssistantCommand::Add(a) => assistant_add(s, a),
            AssistantCommand::List(a) => assistant_list(s, a),
            AssistantCommand::Show(a) => assistant_show(s, a),
            AssistantCommand::Deactivate(a) => assistant_deactivate(s, a),
        },
        LedgerCommand::Card(c) => match c {
            CardCommand::Assign(a) => card_assign(s, a),
            CardCommand::Release(a) => card_release(s, a),
            CardCommand::History(a) => card_history(s, a),
            CardCommand::Holder(a) => card_holder(s, a),
        },
        LedgerCommand::Supervisor(c) => match c {
            SupervisorCommand::Add(a) => supervisor_change(s, a, true),
            SupervisorCommand::Remove(a) => supervisor_change(s, a, false),
        },
        LedgerCommand::Changes(a) => changes(s, a),
        LedgerCommand::Export(a) => export(s, a),
        LedgerCommand::Import(_) => unreachable!("import opens its own store"),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn fmt_time(t: Timestamp) -> String {
    store::format_time(t)
}

fn doctor_text(d: &DoctorRef) -> String {
    format!("{} ({})", d.hpki_id, d.issuer)
}

fn doctor_json(d: &DoctorRef) -> Value {
    json!({ "hpki_id": d.hpki_id, "issuer": d.issuer })
}

fn assistant_label(a: &Assistant) -> String {
    format!("{} {} ({})", a.id, a.name_kanji, a.name_romaji)
}

fn no_such_assistant(id: &str) -> Failure {
    Failure::Refused(format!(
        "no assistant {id:?} in the ledger: `hpki-gateway ledger assistant list` shows the ids, \
         `ledger assistant add` adds one"
    ))
}

fn find_assistant(s: &Session, id: &str) -> Result<Assistant, Failure> {
    s.block_on(s.store.assistant(id))?
        .ok_or_else(|| no_such_assistant(id))
}

/// Assignments that hold a card at `now` or later (open, or released in the future).
fn is_current(c: &CardAssignment, now: Timestamp) -> bool {
    c.assigned_until.is_none_or(|u| u > now)
}

fn assignment_json(c: &CardAssignment) -> Value {
    json!({
        "card": c.card,
        "assistant_id": c.assistant_id,
        "from": fmt_time(c.assigned_from),
        "until": c.assigned_until.map(fmt_time),
        "assigned_by": c.assigned_by,
        "released_by": c.released_by,
    })
}

fn assignment_text(c: &CardAssignment, subject: &str) -> String {
    let until = match c.assigned_until {
        Some(u) => fmt_time(u),
        None => "(still held)".to_owned(),
    };
    let mut line = format!(
        "{} to {until}  {subject}  assigned by {}",
        fmt_time(c.assigned_from),
        c.assigned_by
    );
    if let Some(r) = &c.released_by {
        line.push_str(&format!(", released by {r}"));
    }
    line
}

fn assistant_json(
    a: &Assistant,
    now: Timestamp,
    cards: &[&CardAssignment],
    supervisors: &[DoctorRef],
) -> Value {
    json!({
        "id": a.id,
        "name_kanji": a.name_kanji,
        "name_romaji": a.name_romaji,
        "facility": a.facility,
        "active_from": fmt_time(a.active_from),
        "active_until": a.active_until.map(fmt_time),
        "active": a.is_active(now),
        "cards": cards.iter().map(|c| c.card.clone()).collect::<Vec<_>>(),
        "supervisors": supervisors.iter().map(doctor_json).collect::<Vec<_>>(),
    })
}

fn activity_text(a: &Assistant, now: Timestamp) -> String {
    let state = if a.is_active(now) {
        "active"
    } else if now < a.active_from {
        "not yet active"
    } else {
        "inactive"
    };
    match a.active_until {
        Some(u) => format!(
            "{state} (from {} until {})",
            fmt_time(a.active_from),
            fmt_time(u)
        ),
        None => format!("{state} (from {}, open-ended)", fmt_time(a.active_from)),
    }
}

// ---------------------------------------------------------------------------------------
// Assistants
// ---------------------------------------------------------------------------------------

fn non_empty(value: &str, flag: &str) -> Result<String, Failure> {
    let v = value.trim();
    if v.is_empty() {
        Err(Failure::Usage(format!("{flag} is empty")))
    } else {
        Ok(v.to_owned())
    }
}

fn assistant_add(s: &Session, a: AssistantAddArgs) -> CmdResult {
    let from = time_arg(a.from.as_deref(), "--from")?;
    let until = match a.until.as_deref() {
        Some(u) => Some(time_arg(Some(u), "--until")?),
        None => None,
    };
    if until.is_some_and(|u| u <= from) {
        return Err(Failure::Usage(format!(
            "--until {} is not after --from {}: the activity would be empty",
            time_or(until, ""),
            fmt_time(from)
        )));
    }
    let assistant = Assistant {
        id: non_empty(&a.id, "--id")?,
        name_kanji: non_empty(&a.name_kanji, "--name-kanji")?,
        name_romaji: non_empty(&a.name_romaji, "--name-romaji")?,
        facility: non_empty(&a.facility, "--facility")?,
        active_from: from,
        active_until: until,
    };
    s.block_on(s.store.add_assistant(&assistant, &s.operator))?;
    println!(
        "added assistant {}, {}, facility {} (operator {})",
        assistant_label(&assistant),
        activity_text(&assistant, store::now()),
        assistant.facility,
        s.operator
    );
    println!(
        "next: give them a card with `hpki-gateway ledger card assign --assistant {} --cert FILE` \
         and a supervising doctor with `ledger supervisor add --assistant {} --doctor-cert FILE`",
        assistant.id, assistant.id
    );
    Ok(EXIT_OK)
}

fn assistant_list(s: &Session, a: JsonArgs) -> CmdResult {
    let now = store::now();
    let assistants = s.block_on(s.store.assistants())?;
    let history = s.block_on(s.store.card_history(None, None))?;
    let mut out = Vec::new();
    if !a.json && assistants.is_empty() {
        println!(
            "the ledger has no assistants: add one with `hpki-gateway ledger assistant add` \
             or import a CSV with `ledger import FILE`"
        );
        return Ok(EXIT_OK);
    }
    for assistant in &assistants {
        let cards: Vec<&CardAssignment> = history
            .iter()
            .filter(|c| c.assistant_id == assistant.id && is_current(c, now))
            .collect();
        let supervisors = s.block_on(s.store.supervisors(&assistant.id))?;
        if a.json {
            out.push(assistant_json(assistant, now, &cards, &supervisors));
        } else {
            println!("{}", assistant_label(assistant));
            println!("    facility {}", assistant.facility);
            println!("    {}", activity_text(assistant, now));
            if cards.is_empty() {
                println!("    cards: none");
            }
            for c in &cards {
                println!("    card {}", c.card);
            }
            if supervisors.is_empty() {
                println!("    supervisors: none (their held writes cannot be confirmed)");
            }
            for d in &supervisors {
                println!("    supervised by {}", doctor_text(d));
            }
        }
    }
    if a.json {
        print_json(&Value::Array(out))?;
    }
    Ok(EXIT_OK)
}

fn assistant_show(s: &Session, a: AssistantShowArgs) -> CmdResult {
    let now = store::now();
    let assistant = find_assistant(s, &a.id)?;
    let history = s.block_on(s.store.card_history(None, Some(&assistant.id)))?;
    let supervisors = s.block_on(s.store.supervisors(&assistant.id))?;
    let supervision = s.block_on(s.store.supervision_history(&assistant.id))?;
    let changes: Vec<store::LedgerChange> = s
        .block_on(s.store.ledger_changes(i64::MIN))?
        .into_iter()
        .filter(|c| c.subject == assistant.id)
        .collect();
    let current: Vec<&CardAssignment> = history.iter().filter(|c| is_current(c, now)).collect();
    if a.json {
        let mut v = assistant_json(&assistant, now, &current, &supervisors);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "card_history".into(),
                history.iter().map(assignment_json).collect(),
            );
            obj.insert(
                "supervision_history".into(),
                supervision
                    .iter()
                    .map(|x| {
                        json!({
                            "doctor": doctor_json(&x.doctor),
                            "added_at": fmt_time(x.added_at),
                            "added_by": x.added_by,
                            "removed_at": x.removed_at.map(fmt_time),
                            "removed_by": x.removed_by,
                        })
                    })
                    .collect(),
            );
            obj.insert(
                "changes".into(),
                changes
                    .iter()
                    .map(|c| {
                        json!({
                            "at": fmt_time(c.at),
                            "operator": c.operator,
                            "action": c.action,
                            "detail": c.detail,
                        })
                    })
                    .collect(),
            );
        }
        print_json(&v)?;
        return Ok(EXIT_OK);
    }
    println!("assistant {}", assistant.id);
    println!(
        "  name:      {} ({})",
        assistant.name_kanji, assistant.name_romaji
    );
    println!("  facility:  {}", assistant.facility);
    println!("  status:    {}", activity_text(&assistant, now));
    if current.is_empty() {
        println!("  cards now: none");
    }
    for c in &current {
        println!("  card now:  {}", c.card);
    }
    if supervisors.is_empty() {
        println!("  supervisors now: none");
    }
    for d in &supervisors {
        println!("  supervised by: {}", doctor_text(d));
    }
    println!("  card history ({}):", history.len());
    for c in &history {
        println!("    {}", assignment_text(c, &c.card));
    }
    println!("  supervision history ({}):", supervision.len());
    for x in &supervision {
        let mut line = format!(
            "{} added {} by {}",
            fmt_time(x.added_at),
            doctor_text(&x.doctor),
            x.added_by
        );
        if let Some(r) = x.removed_at {
            line.push_str(&format!(
                "; removed {} by {}",
                fmt_time(r),
                x.removed_by.as_deref().unwrap_or("?")
            ));
        }
        println!("    {line}");
    }
    println!("  changes ({}):", changes.len());
    for c in &changes {
        println!(
            "    {}  {}  {}  {}",
            fmt_time(c.at),
            c.operator,
            c.action,
            c.detail
        );
    }
    Ok(EXIT_OK)
}

fn assistant_deactivate(s: &Session, a: AssistantDeactivateArgs) -> CmdResult {
    let at = time_arg(a.at.as_deref(), "--at")?;
    let assistant = find_assistant(s, &a.id)?;
    let held: Vec<CardAssignment> = s
        .block_on(s.store.card_history(None, Some(&assistant.id)))?
        .into_iter()
        .filter(|c| c.assigned_until.is_none())
        .collect();
    s.block_on(s.store.deactivate_assistant(&assistant.id, at, &s.operator))?;
    println!(
        "deactivated {} from {} (operator {})",
        assistant_label(&assistant),
        fmt_time(at),
        s.operator
    );
    if held.is_empty() {
        println!("they held no card");
    }
    for c in &held {
        println!("released card {} with them", c.card);
    }
    Ok(EXIT_OK)
}

// ---------------------------------------------------------------------------------------
// Cards
// ---------------------------------------------------------------------------------------

struct Card {
    /// The key `assign` and `release` record.
    key: CardKey,
    /// Every key the card may be recorded under, `key` first (with --cert: also its
    /// issuer and serial).
    lookup: Vec<CardKey>,
    /// With --cert: what was read from the file.
    note: Option<String>,
}

/// A SHA-256 as typed: colons and spaces dropped, lowercase.
fn normalize_sha256(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

fn card_select(c: &CardSelect) -> Result<Card, Failure> {
    let card = if let Some(path) = &c.cert {
        let leaf = read_certificate(path, "card certificate")?;
        let sha = name::hex(leaf.sha256());
        let issuer = name::display(leaf.issuer());
        let serial = leaf.serial_hex();
        if let Ok(id) = read_identity(&leaf) {
            if !id.roles.is_empty() {
                eprintln!(
                    "warning: {} carries an hcRole ({}): it looks like a person's card, not an \
                     organization card",
                    path.display(),
                    id.roles.join(", ")
                );
            }
        }
        let [by_sha, by_serial] = CardKey::of_certificate(&sha, &issuer, &serial);
        Card {
            key: by_sha.clone(),
            lookup: vec![by_sha, by_serial],
            note: Some(format!(
                "recorded by the certificate's SHA-256 (read from {}: issuer {issuer}, serial \
                 {serial}); a renewed card has a new certificate and must be assigned again",
                path.display()
            )),
        }
    } else if let Some(h) = &c.sha256 {
        let key = CardKey::Sha256(normalize_sha256(h));
        Card {
            lookup: vec![key.clone()],
            key,
            note: None,
        }
    } else if let (Some(issuer), Some(serial)) = (&c.issuer, &c.serial) {
        let key = CardKey::IssuerSerial {
            issuer: issuer.trim().to_owned(),
            serial: serial.trim().to_owned(),
        };
        Card {
            lookup: vec![key.clone()],
            key,
            note: None,
        }
    } else {
        return Err(Failure::Usage(
            "name the card: --cert FILE, --sha256 HEX, or --issuer DN --serial HEX".into(),
        ));
    };
    card.key.validate().map_err(Failure::Usage)?;
    Ok(card)
}

fn open_assignment(s: &Session, key: &CardKey) -> Result<Option<CardAssignment>, Failure> {
    Ok(s.block_on(s.store.card_history(Some(key), None))?
        .into_iter()
        .find(|c| c.assigned_until.is_none()))
}

fn card_assign(s: &Session, a: CardAssignArgs) -> CmdResult {
    let card = card_select(&a.card)?;
    let at = time_arg(a.at.as_deref(), "--at")?;
    let assistant = find_assistant(s, a.assistant.trim())?;
    // The same card may already be recorded under its other key (issuer and serial):
    // a second holder would make every login with it ambiguous.
    for other in card.lookup.iter().filter(|k| **k != card.key) {
        if let Some(open) = open_assignment(s, other)? {
            return Err(Failure::Refused(if open.assistant_id == assistant.id {
                format!(
                    "{} already holds this card (recorded as {other}): nothing to do",
                    assistant.id
                )
            } else {
                format!(
                    "this card is recorded as {other}, held by {:?}: release it first with \
                     `hpki-gateway ledger card release --cert FILE`",
                    open.assistant_id
                )
            }));
        }
    }
    s.block_on(
        s.store
            .assign_card(&card.key, &assistant.id, at, &s.operator),
    )?;
    println!(
        "card {} assigned to {} from {} (operator {})",
        card.key,
        assistant_label(&assistant),
        fmt_time(at),
        s.operator
    );
    if let Some(note) = &card.note {
        println!("{note}");
    }
    if !assistant.is_active(at) {
        println!(
            "note: {} is not active at {}: the card logs nobody in until they are",
            assistant.id,
            fmt_time(at)
        );
    }
    Ok(EXIT_OK)
}

fn card_release(s: &Session, a: CardAtArgs) -> CmdResult {
    let card = card_select(&a.card)?;
    let at = time_arg(a.at.as_deref(), "--at")?;
    for key in &card.lookup {
        match s.block_on(s.store.release_card(key, at, &s.operator)) {
            Ok(holder) => {
                println!(
                    "card {key} released from {holder} at {} (operator {})",
                    fmt_time(at),
                    s.operator
                );
                return Ok(EXIT_OK);
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let names: Vec<String> = card.lookup.iter().map(CardKey::encode).collect();
    Err(Failure::Refused(format!(
        "card {} is not held by anyone: nothing to release (`hpki-gateway ledger card history` \
         shows its past holders)",
        names.join(" / ")
    )))
}

fn card_history(s: &Session, a: CardHistoryArgs) -> CmdResult {
    let card = card_select(&a.card)?;
    let mut all = Vec::new();
    for key in &card.lookup {
        all.extend(s.block_on(s.store.card_history(Some(key), None))?);
    }
    all.sort_by(|x, y| (x.assigned_from, &x.id).cmp(&(y.assigned_from, &y.id)));
    if a.json {
        print_json(&json!({
            "card": card.lookup.iter().map(CardKey::encode).collect::<Vec<_>>(),
            "assignments": all.iter().map(assignment_json).collect::<Vec<_>>(),
        }))?;
        return Ok(EXIT_OK);
    }
    let names: Vec<String> = card.lookup.iter().map(CardKey::encode).collect();
    if all.is_empty() {
        println!("card {} has never been assigned", names.join(" / "));
        return Ok(EXIT_OK);
    }
    println!("holders of card {}, oldest first:", names.join(" / "));
    for c in &all {
        println!("  {}", assignment_text(c, &c.assistant_id));
    }
    Ok(EXIT_OK)
}

fn card_holder(s: &Session, a: CardHolderArgs) -> CmdResult {
    let card = card_select(&a.card)?;
    let at = time_arg(a.at.as_deref(), "--at")?;
    let holder = s.block_on(s.store.holder_at(&card.lookup, at))?;
    let names: Vec<String> = card.lookup.iter().map(CardKey::encode).collect();
    if a.json {
        print_json(&json!({
            "card": names,
            "at": fmt_time(at),
            "holder": holder.as_ref().map(|h| json!({
                "assistant_id": h.assistant.id,
                "name_kanji": h.assistant.name_kanji,
                "name_romaji": h.assistant.name_romaji,
                "facility": h.assistant.facility,
                "recorded_as": h.card,
                "supervisors": h.supervisors.iter().map(doctor_json).collect::<Vec<_>>(),
            })),
        }))?;
    } else {
        match &holder {
            Some(h) => {
                println!(
                    "at {}: card {} was held by {}, facility {}",
                    fmt_time(at),
                    h.card,
                    assistant_label(&h.assistant),
                    h.assistant.facility
                );
                if h.supervisors.is_empty() {
                    println!("  supervisors now: none");
                }
                for d in &h.supervisors {
                    println!("  supervised now by {}", doctor_text(d));
                }
            }
            None => println!(
                "at {}: nobody (no active assistant) held card {}",
                fmt_time(at),
                names.join(" / ")
            ),
        }
    }
    Ok(if holder.is_some() {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    })
}

// ---------------------------------------------------------------------------------------
// Supervisors
// ---------------------------------------------------------------------------------------

/// The doctor a command names, and (with --doctor-cert) what was read from the file.
fn doctor_select(a: &SupervisorArgs) -> Result<(DoctorRef, Option<String>), Failure> {
    if let Some(path) = &a.doctor_cert {
        let leaf = read_certificate(path, "doctor certificate")?;
        let identity = read_identity(&leaf).map_err(|r| {
            Failure::Usage(format!(
                "{}: {} ({r}): give the doctor's HPKI authentication certificate",
                path.display(),
                r.description()
            ))
        })?;
        let Some(hpki_id) = identity.hpki_id.filter(|h| !h.trim().is_empty()) else {
            return Err(Failure::Usage(format!(
                "{} has no HPKI id (its subject has no serialNumber), so it is not a doctor's \
                 HPKI authentication certificate: give that certificate, or --hpki-id ID \
                 --issuer DN",
                path.display()
            )));
        };
        if let Some(problem) = login_problems(&leaf).first() {
            let why = match problem {
                Reason::SigningCertNotForLogin => {
                    "it is a signing (nonRepudiation) certificate; the gateway knows a doctor by \
                     the authentication certificate they log in with, whose issuer differs"
                        .to_owned()
                }
                other => format!("{} ({other})", other.description()),
            };
            return Err(Failure::Usage(format!(
                "{} cannot be used to log in: {why}: give the doctor's HPKI authentication \
                 certificate",
                path.display()
            )));
        }
        if identity.roles.is_empty() {
            eprintln!(
                "warning: {} carries no hcRole (profession): it does not look like a doctor's \
                 card",
                path.display()
            );
        }
        let doctor = DoctorRef {
            hpki_id,
            issuer: name::display(leaf.issuer()),
        };
        let note = format!(
            "read from {}: HPKI id {}{}, issuer {}",
            path.display(),
            doctor.hpki_id,
            identity
                .name_kanji
                .or(identity.name)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            doctor.issuer
        );
        return Ok((doctor, Some(note)));
    }
    match (&a.hpki_id, &a.issuer) {
        (Some(id), Some(issuer)) => Ok((
            DoctorRef {
                hpki_id: non_empty(id, "--hpki-id")?,
                issuer: non_empty(issuer, "--issuer")?,
            },
            None,
        )),
        _ => Err(Failure::Usage(
            "name the doctor: --doctor-cert FILE (their HPKI authentication certificate), or \
             --hpki-id ID --issuer DN"
                .into(),
        )),
    }
}

fn supervisor_change(s: &Session, a: SupervisorArgs, add: bool) -> CmdResult {
    let (doctor, note) = doctor_select(&a)?;
    let at = time_arg(a.at.as_deref(), "--at")?;
    let assistant = find_assistant(s, a.assistant.trim())?;
    if add {
        s.block_on(
            s.store
                .add_supervisor(&assistant.id, &doctor, at, &s.operator),
        )?;
        println!(
            "{} supervises {} from {} (operator {})",
            doctor_text(&doctor),
            assistant_label(&assistant),
            fmt_time(at),
            s.operator
        );
    } else {
        s.block_on(
            s.store
                .remove_supervisor(&assistant.id, &doctor, at, &s.operator),
        )?;
        println!(
            "{} no longer supervises {} from {} (operator {})",
            doctor_text(&doctor),
            assistant_label(&assistant),
            fmt_time(at),
            s.operator
        );
    }
    if let Some(note) = note {
        println!("{note}");
    }
    Ok(EXIT_OK)
}

// ---------------------------------------------------------------------------------------
// Change log
// ---------------------------------------------------------------------------------------

fn changes(s: &Session, a: ChangesArgs) -> CmdResult {
    let since = match a.since.as_deref() {
        Some(d) => time_arg(Some(d), "--since")?,
        None => i64::MIN,
    };
    let list = s.block_on(s.store.ledger_changes(since))?;
    if a.json {
        print_json(&Value::Array(
            list.iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "at": fmt_time(c.at),
                        "recorded_at": fmt_time(c.recorded_at),
                        "operator": c.operator,
                        "action": c.action,
                        "subject": c.subject,
                        "detail": c.detail,
                    })
                })
                .collect(),
        ))?;
        return Ok(EXIT_OK);
    }
    if list.is_empty() {
        println!(
            "no ledger changes{}",
            match a.since {
                Some(_) => format!(" since {}", fmt_time(since)),
                None => String::new(),
            }
        );
    }
    for c in &list {
        // A change recorded later than it takes effect is backdated: say so.
        let recorded = if c.recorded_at > c.at + 60 {
            format!(" (recorded {})", fmt_time(c.recorded_at))
        } else {
            String::new()
        };
        println!(
            "{}{recorded}  {}  {}  {}  {}",
            fmt_time(c.at),
            c.operator,
            c.action,
            c.subject,
            c.detail
        );
    }
    Ok(EXIT_OK)
}

// ---------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------

/// The CSV columns, in export order. Import requires each exactly once, in any order.
pub const CSV_COLUMNS: [&str; 10] = [
    "assistant_id",
    "name_kanji",
    "name_romaji",
    "facility",
    "active_from",
    "active_until",
    "card_sha256",
    "card_issuer",
    "card_serial",
    "supervisors",
];

const BOM: &str = "\u{feff}";

/// A date as exported: the day when it is midnight Japan time (what `2026-04-01` means
/// on import), RFC 3339 otherwise. Both read back to the same instant.
fn csv_time(t: Timestamp) -> String {
    if (t + i64::from(store::JST.whole_seconds())).rem_euclid(86_400) == 0 {
        if let Ok(d) = time::OffsetDateTime::from_unix_timestamp(t).map(|d| d.to_offset(store::JST))
        {
            let day = time::macros::format_description!("[year]-[month]-[day]");
            if let Ok(s) = d.date().format(&day) {
                return s;
            }
        }
    }
    store::format_time(t)
}

/// Splits a `;`-separated list, keeping `\;` (as a DN escapes it) inside an item.
/// Items are trimmed; empty items are dropped.
fn split_list(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ';' => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

/// The ledger as CSV: every assistant (ordered by id), the cards they hold with an open
/// assignment, their current supervisors. Lists are sorted, so an export, imported into
/// an empty store and exported again, is byte-identical.
fn ledger_csv(s: &Session) -> Result<Vec<u8>, Failure> {
    let assistants = s.block_on(s.store.assistants())?;
    let history = s.block_on(s.store.card_history(None, None))?;
    let mut cards: HashMap<&str, Vec<CardKey>> = HashMap::new();
    for c in history.iter().filter(|c| c.assigned_until.is_none()) {
        let key = CardKey::decode(&c.card).ok_or_else(|| {
            Failure::Refused(format!(
                "the store holds a card key it cannot read: {:?} (assigned to {})",
                c.card, c.assistant_id
            ))
        })?;
        cards.entry(c.assistant_id.as_str()).or_default().push(key);
    }
    let csv_err = |e: csv::Error| Failure::Refused(format!("cannot write CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS).map_err(csv_err)?;
    for a in &assistants {
        let mut shas = Vec::new();
        let mut pairs = Vec::new();
        for k in cards.get(a.id.as_str()).into_iter().flatten() {
            match k {
                CardKey::Sha256(h) => shas.push(h.to_ascii_lowercase()),
                CardKey::IssuerSerial { issuer, serial } => {
                    pairs.push((issuer.clone(), store::normalize_serial(serial)))
                }
            }
        }
        shas.sort();
        pairs.sort();
        let mut supervisors = s.block_on(s.store.supervisors(&a.id))?;
        supervisors.sort_by(|x, y| (&x.hpki_id, &x.issuer).cmp(&(&y.hpki_id, &y.issuer)));
        let issuers: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let serials: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        let sups: Vec<String> = supervisors
            .iter()
            .map(|d| format!("{}|{}", d.hpki_id, d.issuer))
            .collect();
        w.write_record([
            a.id.clone(),
            a.name_kanji.clone(),
            a.name_romaji.clone(),
            a.facility.clone(),
            csv_time(a.active_from),
            a.active_until.map(csv_time).unwrap_or_default(),
            shas.join(";"),
            issuers.join(";"),
            serials.join(";"),
            sups.join(";"),
        ])
        .map_err(csv_err)?;
    }
    w.into_inner()
        .map_err(|e| Failure::Refused(format!("cannot write CSV: {e}")))
}

fn export(s: &Session, a: ExportArgs) -> CmdResult {
    let mut bytes = Vec::new();
    if a.bom {
        bytes.extend_from_slice(BOM.as_bytes());
    }
    bytes.extend(ledger_csv(s)?);
    match &a.out {
        Some(path) => {
            std::fs::write(path, &bytes)
                .map_err(|e| Failure::Refused(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote the ledger to {}", path.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|_| out.flush())
                .map_err(|e| Failure::Refused(format!("cannot write to standard output: {e}")))?;
        }
    }
    Ok(EXIT_OK)
}

/// The file as UTF-8 text without its BOM; anything else is refused naming the fix.
fn csv_text<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, Failure> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(Failure::Usage(format!(
            "{} is UTF-16 (Excel's \"Unicode Text\"): save it as \"CSV UTF-8 (Comma delimited)\"",
            path.display()
        )));
    }
    let bytes = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Failure::Usage(format!(
            "{} is not UTF-8 (line {line}): probably Shift_JIS, which Excel's \"CSV (Comma \
             delimited)\" writes; save it as \"CSV UTF-8 (Comma delimited)\", or convert it with \
             `iconv -f SHIFT_JIS -t UTF-8 {} > ledger-utf8.csv`",
            path.display(),
            path.display()
        ))
    })
}

/// Rows read from a CSV ledger, and every problem found in the file itself (line, text).
#[derive(Debug, Default)]
pub struct ParsedLedger {
    pub rows: Vec<LedgerRow>,
    pub problems: Vec<(usize, String)>,
}

/// Reads every row, collecting every problem (not only the first) with its line number.
pub fn parse_ledger_csv(text: &str) -> ParsedLedger {
    let mut parsed = ParsedLedger::default();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => {
            parsed.problems.push((
                1,
                format!(
                    "the file is empty: the first line must be the header {}",
                    CSV_COLUMNS.join(",")
                ),
            ));
            return parsed;
        }
        Some(Err(e)) => {
            parsed
                .problems
                .push((1, format!("cannot read the header: {e}")));
            return parsed;
        }
        Some(Ok(h)) => h,
    };
    let names: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut header_problems = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if !CSV_COLUMNS.contains(&n.as_str()) {
            header_problems.push(format!(
                "unknown column {n:?} in the header: the columns are {}",
                CSV_COLUMNS.join(",")
            ));
        } else if index.insert(n.as_str(), i).is_some() {
            header_problems.push(format!("column {n:?} appears twice in the header"));
        }
    }
    let missing: Vec<&str> = CSV_COLUMNS
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    if missing.len() == CSV_COLUMNS.len() {
        parsed.problems.push((
            1,
            format!(
                "line 1 is not the header: the first line must name the columns, exactly {}",
                CSV_COLUMNS.join(",")
            ),
        ));
        return parsed;
    }
    for m in &missing {
        header_problems.push(format!("missing column {m} in the header"));
    }
    if !header_problems.is_empty() {
        parsed
            .problems
            .extend(header_problems.into_iter().map(|p| (1, p)));
        return parsed;
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut card_lines: HashMap<String, (usize, String)> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                parsed
                    .problems
                    .push((line, format!("cannot read this row: {e}")));
                continue;
            }
        };
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != names.len() {
            parsed.problems.push((
                line,
                format!(
                    "has {} values but the header has {} columns: every row needs all of them \
                     (leave a value empty but keep its comma; put a value containing a comma in \
                     double quotes)",
                    record.len(),
                    names.len()
                ),
            ));
            continue;
        }
        let get = |col: &str| record.get(index[col]).unwrap_or("").trim().to_owned();
        let mut problems: Vec<String> = Vec::new();
        let id = get("assistant_id");
        if id.is_empty() {
            problems.push("assistant_id is empty: every row needs the assistant's id".into());
        } else if let Some(prev) = ids.get(&id) {
            problems.push(format!(
                "assistant_id {id:?} is also on line {prev}: one row per assistant (merge the \
                 two rows)"
            ));
        } else {
            ids.insert(id.clone(), line);
        }
        let mut required = |col: &str| {
            let v = get(col);
            if v.is_empty() {
                problems.push(format!("{col} is empty"));
            }
            v
        };
        let name_kanji = required("name_kanji");
        let name_romaji = required("name_romaji");
        let facility = required("facility");
        let from_text = get("active_from");
        let active_from = if from_text.is_empty() {
            problems.push("active_from is empty: give the first day, like 2026-04-01".into());
            None
        } else {
            match store::parse_time(&from_text) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(format!("active_from: {e}"));
                    None
                }
            }
        };
        let until_text = get("active_until");
        let active_until = if until_text.is_empty() {
            None
        } else {
            match store::parse_time(&until_text) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(format!("active_until: {e} (leave it empty while active)"));
                    None
                }
            }
        };
        if let (Some(f), Some(u)) = (active_from, active_until) {
            if u <= f {
                problems.push(format!(
                    "active_until {until_text} is not after active_from {from_text}"
                ));
            }
        }
        let mut cards = Vec::new();
        for h in split_list(&get("card_sha256")) {
            cards.push(CardKey::Sha256(normalize_sha256(&h)));
        }
        let issuers = split_list(&get("card_issuer"));
        let serials = split_list(&get("card_serial"));
        match (issuers.len(), serials.len()) {
            (0, 0) => {}
            (0, _) => problems.push(
                "card_serial is given without card_issuer: give both (the issuer DN as `cert \
                 inspect` prints it), or neither"
                    .into(),
            ),
            (_, 0) => problems
                .push("card_issuer is given without card_serial: give both, or neither".into()),
            (1, _) => {
                for serial in &serials {
                    cards.push(CardKey::IssuerSerial {
                        issuer: issuers[0].clone(),
                        serial: serial.clone(),
                    });
                }
            }
            (m, n) if m == n => {
                for (issuer, serial) in issuers.iter().zip(&serials) {
                    cards.push(CardKey::IssuerSerial {
                        issuer: issuer.clone(),
                        serial: serial.clone(),
                    });
                }
            }
            (m, n) => problems.push(format!(
                "card_issuer has {m} values and card_serial {n}: give one issuer for all the \
                 serials, or one issuer per serial (both separated by ;)"
            )),
        }
        let mut valid_cards = Vec::new();
        for card in cards {
            match card.validate() {
                Err(e) => problems.push(e),
                Ok(()) => {
                    let key = card.encode();
                    match card_lines.get(&key) {
                        Some((prev, holder)) if *prev != line => problems.push(format!(
                            "card {key} is also on line {prev} (assistant {holder}): a card has \
                             one holder"
                        )),
                        Some(_) => {}
                        None => {
                            card_lines.insert(key, (line, id.clone()));
                            valid_cards.push(card);
                        }
                    }
                }
            }
        }
        let mut supervisors = Vec::new();
        for item in split_list(&get("supervisors")) {
            match item.split_once('|') {
                None => problems.push(format!(
                    "supervisor {item:?} has no issuer: write HPKI_ID|ISSUER_DN (the issuer of \
                     the doctor's authentication certificate as `cert inspect` prints it), \
                     several separated by ;"
                )),
                Some((hpki_id, issuer)) => {
                    let (hpki_id, issuer) = (hpki_id.trim(), issuer.trim());
                    if hpki_id.is_empty() {
                        problems.push(format!("supervisor {item:?} has no HPKI id before the |"));
                    } else if issuer.is_empty() {
                        problems.push(format!(
                            "supervisor {item:?} has no issuer after the |: write \
                             HPKI_ID|ISSUER_DN"
                        ));
                    } else {
                        supervisors.push(DoctorRef {
                            hpki_id: hpki_id.to_owned(),
                            issuer: issuer.to_owned(),
                        });
                    }
                }
            }
        }
        if problems.is_empty() {
            parsed.rows.push(LedgerRow {
                line,
                assistant: Assistant {
                    id,
                    name_kanji,
                    name_romaji,
                    facility,
                    active_from: active_from.unwrap_or_default(),
                    active_until,
                },
                cards: valid_cards,
                supervisors,
            });
        } else {
            parsed
                .problems
                .extend(problems.into_iter().map(|p| (line, p)));
        }
    }
    parsed
}

fn import(opts: &StoreOptions, a: ImportArgs) -> CmdResult {
    let bytes = std::fs::read(&a.file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", a.file.display())))?;
    let text = csv_text(&bytes, &a.file)?;
    let parsed = parse_ledger_csv(text);
    let header_broken = parsed.problems.iter().any(|(line, _)| *line == 1);
    let session = opts.open(false)?;
    let mut problems = parsed.problems;
    let mut report = store::ImportReport::default();
    if !header_broken {
        // With problems in the file, the store still checks the other rows (dry run), so
        // that one pass reports everything to fix.
        let dry = a.dry_run || !problems.is_empty();
        report = session.block_on(session.store.import_ledger(
            &parsed.rows,
            store::now(),
            &session.operator,
            dry,
        ))?;
        problems.extend(report.problems.iter().cloned());
    }
    problems.sort_by_key(|(line, _)| *line);
    let file = a.file.display();
    if !problems.is_empty() {
        println!(
            "{file}: {} problem(s); nothing was written:",
            problems.len()
        );
        for (line, p) in &problems {
            println!("  line {line}: {p}");
        }
        println!(
            "fix these rows and import again (`hpki-gateway ledger import --dry-run {file}` \
             checks without writing)"
        );
        return Ok(EXIT_NEGATIVE);
    }
    let counts = |verb: [&str; 4]| {
        format!(
            "{} {}, {} {}, {} {} cards, {} {} supervisors",
            verb[0],
            report.assistants_added,
            verb[1],
            report.assistants_updated,
            verb[2],
            report.cards_assigned,
            verb[3],
            report.supervisors_added
        )
    };
    if a.dry_run {
        println!(
            "dry run: {}; nothing written",
            counts(["would add", "update", "assign", "add"])
        );
    } else {
        println!(
            "imported {file} ({} row(s)): {} (operator {})",
            parsed.rows.len(),
            counts(["added", "updated", "assigned", "added"]),
            session.operator
        );
        println!(
            "note: import adds and updates; it never releases a card or removes a supervisor \
             missing from the file (use `ledger card release` / `ledger supervisor remove`)"
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_unescaped_semicolons() {
        assert_eq!(split_list(""), Vec::<String>::new());
        assert_eq!(split_list(" a ; b;;"), vec!["a", "b"]);
        assert_eq!(
            split_list(r"X|C=JP, O=A\;B;Y|C=JP"),
            vec![r"X|C=JP, O=A\;B", "Y|C=JP"]
        );
    }

    #[test]
    fn csv_times_read_back_to_the_same_instant() {
        for t in [0, 1_775_001_600, 1_775_001_600 + 3600 * 9 + 7] {
            assert_eq!(store::parse_time(&csv_time(t)), Ok(t));
        }
        // 2026-04-01T00:00:00+09:00: a bare day in Japan time.
        assert_eq!(csv_time(1_775_001_600 - 9 * 3600), "2026-04-01");
        assert_eq!(csv_time(1_775_001_600), "2026-04-01T09:00:00+09:00");
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let text = "assistant_id,name_kanji,name_romaji,facility,active_from,active_until,card_sha256,card_issuer,card_serial,supervisors\n\
                    A1,山田,Yamada,本院,2026-04-01,,,,,\n\
                    A2,佐藤,Sato,本院,2026-13-01,,,,,\n\
                    A1,山田,Yamada,本院,2026-04-01,,,,,\n\
                    A3,鈴木,Suzuki,本院,2026-04-01,,abc,,,D1\n";
        let p = parse_ledger_csv(text);
        assert_eq!(p.rows.len(), 1);
        let lines: Vec<usize> = p.problems.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5, 5]);
    }
}
