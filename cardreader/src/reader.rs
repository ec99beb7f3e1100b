//! PC/SC through pcscd: readers, card presence and ATR, insertion/removal events, and the
//! patient-card APDU script.
//!
//! - [`list_readers`] / `hpki-card readers [--json]`: every reader pcscd knows, whether a
//!   card is in it and the card's ATR.
//! - [`watch_events`] / `hpki-card watch [--json]`: reader and card changes as they happen
//!   (`SCardGetStatusChange`, including the `\\?PnP?\Notification` pseudo-reader). It
//!   survives readers being unplugged and plugged again and pcscd restarting.
//! - [`run_script`] / `hpki-card patient-id --script FILE`: a patient card's ID read with
//!   an APDU script the network writes for its own card (format: [`Script`]).
//!
//! Errors are [`ReaderError`]; each says what it means for the person at the workstation.

use std::ffi::{CStr, CString};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use clap::Args;
use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use serde::Deserialize;

#[derive(Args)]
pub struct ReadersArgs {
    /// Print JSON (`{"readers":[{"name","card_present","atr","state"}]}`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    /// Print one JSON object per line (`{"event":"card_inserted","reader":...,"atr":...}`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PatientIdArgs {
    /// The APDU script (TOML, see `docs/cardreader.md`).
    #[arg(long)]
    pub script: PathBuf,
    /// The reader to use (its full name, or a part of it that names one reader). Default:
    /// the one reader with a card in it.
    #[arg(long)]
    pub reader: Option<String>,
    /// Print JSON (`{"patient_id":...,"reader":...}`).
    #[arg(long)]
    pub json: bool,
}

/// A change seen by [`watch_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    ReaderAdded { reader: String },
    ReaderRemoved { reader: String },
    CardInserted { reader: String, atr: Vec<u8> },
    CardRemoved { reader: String },
}

impl CardEvent {
    /// The reader the event is about.
    pub fn reader(&self) -> &str {
        match self {
            CardEvent::ReaderAdded { reader }
            | CardEvent::ReaderRemoved { reader }
            | CardEvent::CardInserted { reader, .. }
            | CardEvent::CardRemoved { reader } => reader,
        }
    }

    /// `{"event":"card_inserted","reader":"...","atr":"3B..."}` (`atr` only for insertions).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CardEvent::ReaderAdded { reader } => {
                serde_json::json!({"event": "reader_added", "reader": reader})
            }
            CardEvent::ReaderRemoved { reader } => {
                serde_json::json!({"event": "reader_removed", "reader": reader})
            }
            CardEvent::CardInserted { reader, atr } => {
                serde_json::json!({"event": "card_inserted", "reader": reader, "atr": hex(atr)})
            }
            CardEvent::CardRemoved { reader } => {
                serde_json::json!({"event": "card_removed", "reader": reader})
            }
        }
    }
}

impl fmt::Display for CardEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardEvent::ReaderAdded { reader } => write!(f, "reader added: {reader}"),
            CardEvent::ReaderRemoved { reader } => write!(f, "reader removed: {reader}"),
            CardEvent::CardInserted { reader, atr } => {
                write!(f, "card inserted: {reader} (ATR {})", hex(atr))
            }
            CardEvent::CardRemoved { reader } => write!(f, "card removed: {reader}"),
        }
    }
}

/// What went wrong talking to pcscd, a reader or a card.
#[derive(Debug)]
pub enum ReaderError {
    /// pcscd is not running or not reachable (`SCARD_E_NO_SERVICE`, service stopped).
    NoService,
    /// pcscd runs but no reader is connected.
    NoReaders,
    /// `--reader NAME` names no connected reader.
    ReaderNotFound {
        wanted: String,
        available: Vec<String>,
    },
    /// `--reader NAME` matches several readers.
    ReaderAmbiguous {
        wanted: String,
        matches: Vec<String>,
    },
    /// No card in the reader (or, without `--reader`, in any reader).
    NoCard { reader: Option<String> },
    /// Cards in several readers and no `--reader` to choose.
    SeveralCards { readers: Vec<String> },
    /// Another program holds the card exclusively.
    CardBusy { reader: String },
    /// The card was removed (or reset, or stopped answering) during the script.
    CardRemoved { reader: String, step: Option<usize> },
    /// The reader was unplugged during the script.
    ReaderGone { reader: String },
    /// The card answered a step with a status word the script does not accept.
    StatusWord {
        step: usize,
        sw: u16,
        expected: Vec<String>,
    },
    /// The card's answer does not hold the ID where the script says it is, or the bytes
    /// are not valid for the script's format.
    BadId { step: usize, detail: String },
    /// The script file cannot be read or is not a valid script.
    Script(String),
    /// Any other PC/SC error, with the operation it happened in.
    Pcsc {
        operation: &'static str,
        error: pcsc::Error,
    },
}

impl ReaderError {
    /// The `hpki-card` exit code for this error: 2 when pcscd is unreachable or the input
    /// is bad, 1 for problems with the reader or card.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReaderError::NoService | ReaderError::Script(_) => crate::EXIT_BAD_INPUT,
            _ => crate::EXIT_PROBLEM,
        }
    }

    fn pcsc(operation: &'static str, error: pcsc::Error) -> ReaderError {
        match error {
            pcsc::Error::NoService | pcsc::Error::ServiceStopped => ReaderError::NoService,
            pcsc::Error::NoReadersAvailable => ReaderError::NoReaders,
            error => ReaderError::Pcsc { operation, error },
        }
    }
}

impl fmt::Display for ReaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReaderError::NoService => write!(
                f,
                "pcscd is not running (start it: `systemctl start pcscd.socket`, or install \
                 the `pcscd` package)"
            ),
            ReaderError::NoReaders => write!(
                f,
                "no card reader connected (plug the reader in; if it is, check its driver: \
                 `pcsc_scan`)"
            ),
            ReaderError::ReaderNotFound { wanted, available } => write!(
                f,
                "no reader named {wanted:?} (connected: {})",
                list_or_none(available)
            ),
            ReaderError::ReaderAmbiguous { wanted, matches } => write!(
                f,
                "{wanted:?} matches several readers ({}); give the full name",
                matches.join(", ")
            ),
            ReaderError::NoCard { reader: Some(r) } => write!(f, "no card in reader {r:?}"),
            ReaderError::NoCard { reader: None } => write!(f, "no card in any reader"),
            ReaderError::SeveralCards { readers } => write!(
                f,
                "cards in several readers ({}); choose one with --reader",
                readers.join(", ")
            ),
            ReaderError::CardBusy { reader } => write!(
                f,
                "the card in {reader:?} is held by another program (close it and retry)"
            ),
            ReaderError::CardRemoved { reader, step } => {
                write!(f, "the card was removed from {reader:?}")?;
                if let Some(n) = step {
                    write!(f, " during step {n}")?;
                }
                write!(f, " (or stopped answering); insert it again and retry")
            }
            ReaderError::ReaderGone { reader } => {
                write!(f, "the reader {reader:?} was unplugged")
            }
            ReaderError::StatusWord { step, sw, expected } => {
                write!(f, "step {step}: card answered {sw:04X}")?;
                if let Some(m) = sw_meaning(*sw) {
                    write!(f, " ({m})")?;
                }
                write!(f, ", expected {}", expected.join(" or "))
            }
            ReaderError::BadId { step, detail } => write!(f, "step {step}: {detail}"),
            ReaderError::Script(m) => write!(f, "script: {m}"),
            ReaderError::Pcsc { operation, error } => write!(f, "PC/SC {operation}: {error}"),
        }
    }
}

impl std::error::Error for ReaderError {}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The meaning of common ISO 7816-4 status words.
pub fn sw_meaning(sw: u16) -> Option<&'static str> {
    Some(match sw {
        0x9000 => "OK",
        0x6282 => "end of file reached before Le bytes",
        0x6283 => "selected file deactivated",
        0x6581 => "memory failure",
        0x6700 => "wrong length",
        0x6881 => "logical channel not supported",
        0x6882 => "secure messaging not supported",
        0x6981 => "command incompatible with file structure",
        0x6982 => "security status not satisfied",
        0x6983 => "authentication method blocked",
        0x6984 => "referenced data invalidated",
        0x6985 => "conditions of use not satisfied",
        0x6986 => "command not allowed (no current EF)",
        0x6A80 => "incorrect data field",
        0x6A81 => "function not supported",
        0x6A82 => "file not found",
        0x6A83 => "record not found",
        0x6A84 => "not enough memory space in the file",
        0x6A86 => "incorrect P1-P2",
        0x6A88 => "referenced data not found",
        0x6B00 => "wrong P1-P2 (offset outside the file)",
        0x6D00 => "instruction not supported",
        0x6E00 => "class not supported",
        0x6F00 => "no precise diagnosis",
        s if s & 0xFFF0 == 0x63C0 => "verification failed, some tries left",
        s if s & 0xFF00 == 0x6C00 => "wrong Le",
        s if s & 0xFF00 == 0x6100 => "more response bytes available",
        _ => return None,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if s.len() % 2 != 0 {
        return Err(format!("{s:?} has an odd number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// readers

/// One reader as pcscd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
    /// The card's ATR (empty when no card).
    pub atr: Vec<u8>,
    /// The card is in use by another program (shared or exclusive).
    pub in_use: bool,
    /// The card does not answer (a card inserted the wrong way round, a broken card).
    pub mute: bool,
}

impl ReaderInfo {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "card_present": self.card_present,
            "atr": if self.card_present { Some(hex(&self.atr)) } else { None },
            "in_use": self.in_use,
            "mute": self.mute,
        })
    }
}

fn establish() -> Result<Context, ReaderError> {
    Context::establish(Scope::User).map_err(|e| ReaderError::pcsc("establish context", e))
}

fn reader_names(ctx: &Context) -> Result<Vec<CString>, ReaderError> {
    match ctx.list_readers_owned() {
        Ok(v) => Ok(v),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(ReaderError::pcsc("list readers", e)),
    }
}

/// Every reader pcscd knows with card presence and ATR (an empty list when none is
/// connected; [`ReaderError::NoService`] when pcscd is not running).
pub fn list_readers() -> Result<Vec<ReaderInfo>, ReaderError> {
    let ctx = establish()?;
    reader_infos(&ctx)
}

fn reader_infos(ctx: &Context) -> Result<Vec<ReaderInfo>, ReaderError> {
    let names = reader_names(ctx)?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut states: Vec<ReaderState> = names
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    match ctx.get_status_change(Duration::ZERO, &mut states) {
        Ok(()) | Err(pcsc::Error::Timeout) => {}
        Err(e) => return Err(ReaderError::pcsc("get reader status", e)),
    }
    Ok(states
        .iter()
        .map(|s| {
            let st = s.event_state();
            let present = st.contains(State::PRESENT);
            ReaderInfo {
                name: s.name().to_string_lossy().into_owned(),
                card_present: present,
                atr: if present {
                    s.atr().to_vec()
                } else {
                    Vec::new()
                },
                in_use: st.intersects(State::INUSE | State::EXCLUSIVE),
                mute: st.contains(State::MUTE),
            }
        })
        .collect())
}

/// `hpki-card readers`: exit 0 with at least one reader, 1 with none, 2 without pcscd.
pub fn readers(args: ReadersArgs) -> i32 {
    let list = match list_readers() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hpki-card readers: {e}");
            return e.exit_code();
        }
    };
    if args.json {
        let v: Vec<_> = list.iter().map(ReaderInfo::to_json).collect();
        println!("{}", serde_json::json!({ "readers": v }));
    } else {
        for r in &list {
            let mut line = r.name.clone();
            if r.card_present {
                line.push_str(&format!(": card present, ATR {}", hex(&r.atr)));
                if r.in_use {
                    line.push_str(" (in use)");
                }
                if r.mute {
                    line.push_str(" (mute: the card does not answer)");
                }
            } else {
                line.push_str(": no card");
            }
            println!("{line}");
        }
    }
    if list.is_empty() {
        eprintln!("hpki-card readers: {}", ReaderError::NoReaders);
        return crate::EXIT_PROBLEM;
    }
    crate::EXIT_OK
}

// ---------------------------------------------------------------------------------------
// watch

/// How long one `SCardGetStatusChange` waits before the loop checks its stop flag and
/// lists readers again (for a pcscd without PnP notification).
const POLL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Report reader and card changes on `tx` until the receiver is dropped (then `Ok`).
///
/// At the start, every connected reader is reported as [`CardEvent::ReaderAdded`] and every
/// card already in a reader as [`CardEvent::CardInserted`], so the receiver knows the
/// current state. When pcscd goes away, its readers (and cards) are reported removed and
/// the context is re-established with a back-off (0.25 s doubling to 5 s); the readers are
/// reported added again when it is back. A dropped receiver is noticed when the next event
/// is sent (std's `Sender` cannot tell earlier); to end the loop promptly without an
/// event, use [`watch_events_until`] with a stop flag. Errors: [`ReaderError::NoService`] only
/// if pcscd is unreachable at the start; other PC/SC errors that re-establishing the
/// context does not cure.
pub fn watch_events(tx: Sender<CardEvent>) -> Result<(), ReaderError> {
    watch_events_until(tx, &AtomicBool::new(false))
}

/// [`watch_events`] that also returns `Ok` once `stop` is set (within half a second).
pub fn watch_events_until(tx: Sender<CardEvent>, stop: &AtomicBool) -> Result<(), ReaderError> {
    let mut watcher = Watcher {
        tx,
        known: Vec::new(),
    };
    let mut first = true;
    let mut backoff = Duration::from_millis(250);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ctx = match Context::establish(Scope::User) {
            Ok(c) => c,
            Err(e @ (pcsc::Error::NoService | pcsc::Error::ServiceStopped)) => {
                if first {
                    return Err(ReaderError::pcsc("establish context", e));
                }
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(e) => return Err(ReaderError::pcsc("establish context", e)),
        };
        first = false;
        let started = std::time::Instant::now();
        match watcher.run(&ctx, stop) {
            Ok(Flow::Stop) => return Ok(()),
            Ok(Flow::Reconnect) => {
                // pcscd went away: everything it knew is gone.
                if !watcher.forget_all() {
                    return Ok(());
                }
                if started.elapsed() > BACKOFF_MAX {
                    backoff = Duration::from_millis(250);
                }
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

enum Flow {
    Stop,
    Reconnect,
}

struct Known {
    name: CString,
    card: bool,
}

struct Watcher {
    tx: Sender<CardEvent>,
    known: Vec<Known>,
}

fn is_service_gone(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::NoService
            | pcsc::Error::ServiceStopped
            | pcsc::Error::InvalidHandle
            | pcsc::Error::CommError
            | pcsc::Error::Shutdown
            | pcsc::Error::SystemCancelled
    )
}

impl Watcher {
    /// Send an event; false when the receiver is gone.
    fn send(&self, ev: CardEvent) -> bool {
        self.tx.send(ev).is_ok()
    }

    /// A reader that is gone: its card (if any) is removed, then the reader; false when
    /// the receiver is gone.
    fn announce_gone(&self, k: Known) -> bool {
        let reader = k.name.to_string_lossy().into_owned();
        (!k.card
            || self.send(CardEvent::CardRemoved {
                reader: reader.clone(),
            }))
            && self.send(CardEvent::ReaderRemoved { reader })
    }

    fn forget_all(&mut self) -> bool {
        for k in std::mem::take(&mut self.known) {
            if !self.announce_gone(k) {
                return false;
            }
        }
        true
    }

    /// Bring `known` in line with pcscd's reader list; false when the receiver is gone.
    fn sync_readers(&mut self, names: &[CString]) -> bool {
        let mut i = 0;
        while i < self.known.len() {
            if names.contains(&self.known[i].name) {
                i += 1;
                continue;
            }
            let k = self.known.remove(i);
            if !self.announce_gone(k) {
                return false;
            }
        }
        for n in names {
            if !self.known.iter().any(|k| &k.name == n) {
                self.known.push(Known {
                    name: n.clone(),
                    card: false,
                });
                if !self.send(CardEvent::ReaderAdded {
                    reader: n.to_string_lossy().into_owned(),
                }) {
                    return false;
                }
            }
        }
        true
    }

    fn run(&mut self, ctx: &Context, stop: &AtomicBool) -> Result<Flow, ReaderError> {
        let pnp: &CStr = pcsc::PNP_NOTIFICATION();
        let mut relist = true;
        let mut states: Vec<ReaderState> = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(Flow::Stop);
            }
            if relist {
                let names = match ctx.list_readers_owned() {
                    Ok(v) => v,
                    Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
                    Err(e) if is_service_gone(e) => return Ok(Flow::Reconnect),
                    Err(e) => return Err(ReaderError::pcsc("list readers", e)),
                };
                if !self.sync_readers(&names) {
                    return Ok(Flow::Stop);
                }
                // Keep the states we have (so no change is reported twice), add new ones.
                let mut next = vec![ReaderState::new(pnp.to_owned(), State::UNAWARE)];
                if let Some(old) = states.first() {
                    next[0] = ReaderState::new(pnp.to_owned(), old.current_state());
                }
                for n in &names {
                    let cur = states
                        .iter()
                        .find(|s| s.name() == n.as_c_str())
                        .map(|s| s.current_state())
                        .unwrap_or(State::UNAWARE);
                    next.push(ReaderState::new(n.clone(), cur));
                }
                states = next;
                relist = false;
            }
            match ctx.get_status_change(POLL, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {
                    // Relist now and then: a pcscd without PnP notification still shows
                    // new readers this way.
                    relist = true;
                    continue;
                }
                Err(pcsc::Error::UnknownReader) => {
                    relist = true;
                    continue;
                }
                Err(pcsc::Error::Cancelled) => return Ok(Flow::Stop),
                Err(e) if is_service_gone(e) => return Ok(Flow::Reconnect),
                Err(e) => return Err(ReaderError::pcsc("wait for status change", e)),
            }
            for s in states.iter_mut() {
                if !s.event_state().contains(State::CHANGED) {
                    continue;
                }
                if s.name() == pnp {
                    relist = true;
                    s.sync_current_state();
                    continue;
                }
                let st = s.event_state();
                s.sync_current_state();
                if st.intersects(State::UNKNOWN | State::IGNORE | State::UNAVAILABLE) {
                    relist = true;
                    continue;
                }
                let present = st.contains(State::PRESENT);
                let reader = s.name().to_string_lossy().into_owned();
                let Some(k) = self
                    .known
                    .iter_mut()
                    .find(|k| k.name.as_c_str() == s.name())
                else {
                    relist = true;
                    continue;
                };
                if present && !k.card {
                    k.card = true;
                    let atr = s.atr().to_vec();
                    if !self.send(CardEvent::CardInserted { reader, atr }) {
                        return Ok(Flow::Stop);
                    }
                } else if !present && k.card && st.contains(State::EMPTY) {
                    k.card = false;
                    if !self.send(CardEvent::CardRemoved { reader }) {
                        return Ok(Flow::Stop);
                    }
                }
            }
        }
    }
}

/// `hpki-card watch`: print events (text or JSON lines) until Ctrl-C or a closed stdout.
pub fn watch(args: WatchArgs) -> i32 {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || watch_events(tx));
    let mut out = std::io::stdout();
    for ev in rx {
        let line = if args.json {
            ev.to_json().to_string()
        } else {
            ev.to_string()
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return crate::EXIT_OK;
        }
    }
    match handle.join() {
        Ok(Ok(())) => crate::EXIT_OK,
        Ok(Err(e)) => {
            eprintln!("hpki-card watch: {e}");
            e.exit_code()
        }
        Err(_) => crate::EXIT_PROBLEM,
    }
}

// ---------------------------------------------------------------------------------------
// patient-id

/// A patient-card APDU script, written by a network for its own card (TOML):
///
/// ```toml
/// [[step]]                      # SELECT by AID
/// name = "select patient AP"    # optional, for messages
/// apdu = "00A4040007A0000000031010"
/// expect = ["9000"]             # accepted status words (default ["9000"])
///
/// [[step]]                      # READ BINARY
/// apdu = "00B0000010"
/// expect = ["9000", "6282"]     # several allowed; "63CX" / "61XX" wildcards: X = any digit
/// id = { offset = 0, length = 16, format = "ascii" }
/// ```
///
/// - `apdu`: the C-APDU in hex (spaces and colons ignored).
/// - `expect`: status words (4 hex digits, `X` matching any hex digit). A status word not
///   listed stops the script: "step N: card answered 6A82 (file not found), expected 9000".
/// - `id` (exactly one step): where the patient ID is in that step's response data (the
///   bytes before the status word): `offset` (default 0), `length` (default: to the end),
///   `format` = `"ascii"` (trailing spaces and NULs trimmed; printable ASCII only),
///   `"hex"` (upper-case hex digits) or `"bcd"` (two digits a byte, high nibble first;
///   an `F` nibble ends the number).
///
/// The steps run in one PC/SC transaction (no other program talks to the card between
/// them). T=0 chaining is handled: `61XX` is followed by GET RESPONSE and `6CXX` by the
/// same command with Le = XX, unless the step's `expect` lists that status word itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub step: Vec<Step>,
}

/// One step of a [`Script`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub name: Option<String>,
    pub apdu: String,
    #[serde(default = "default_expect")]
    pub expect: Vec<String>,
    #[serde(default)]
    pub id: Option<IdField>,
}

fn default_expect() -> Vec<String> {
    vec!["9000".into()]
}

/// Where the ID is in a step's response data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdField {
    #[serde(default)]
    pub offset: usize,
    #[serde(default)]
    pub length: Option<usize>,
    pub format: IdFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    Ascii,
    Hex,
    Bcd,
}

/// A parsed, checked step.
struct ReadyStep {
    apdu: Vec<u8>,
    expect: Vec<(u16, u16)>, // (value, mask)
    expect_text: Vec<String>,
    id: Option<IdField>,
}

impl Script {
    /// Parse and check a script (TOML text).
    pub fn parse(text: &str) -> Result<Script, ReaderError> {
        let s: Script = toml::from_str(text).map_err(|e| ReaderError::Script(e.to_string()))?;
        s.ready()?;
        Ok(s)
    }

    /// Read and check a script file.
    pub fn load(path: &std::path::Path) -> Result<Script, ReaderError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ReaderError::Script(format!("{}: {e}", path.display())))?;
        Script::parse(&text).map_err(|e| match e {
            ReaderError::Script(m) => ReaderError::Script(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    fn ready(&self) -> Result<Vec<ReadyStep>, ReaderError> {
        if self.step.is_empty() {
            return Err(ReaderError::Script("no [[step]]".into()));
        }
        let ids = self.step.iter().filter(|s| s.id.is_some()).count();
        if ids != 1 {
            return Err(ReaderError::Script(format!(
                "exactly one step must say where the ID is (`id = {{...}}`), found {ids}"
            )));
        }
        self.step
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = i + 1;
                let apdu = parse_hex(&s.apdu)
                    .map_err(|m| ReaderError::Script(format!("step {n}: apdu: {m}")))?;
                if apdu.len() < 4 {
                    return Err(ReaderError::Script(format!(
                        "step {n}: apdu: a command is at least 4 bytes (CLA INS P1 P2)"
                    )));
                }
                if s.expect.is_empty() {
                    return Err(ReaderError::Script(format!(
                        "step {n}: expect: at least one status word"
                    )));
                }
                let expect = s
                    .expect
                    .iter()
                    .map(|e| {
                        parse_sw_pattern(e)
                            .map_err(|m| ReaderError::Script(format!("step {n}: expect: {m}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(id) = &s.id {
                    if id.length == Some(0) {
                        return Err(ReaderError::Script(format!("step {n}: id: length 0")));
                    }
                }
                Ok(ReadyStep {
                    apdu,
                    expect,
                    expect_text: s.expect.iter().map(|e| e.to_uppercase()).collect(),
                    id: s.id.clone(),
                })
            })
            .collect()
    }
}

fn parse_sw_pattern(p: &str) -> Result<(u16, u16), String> {
    if p.len() != 4 {
        return Err(format!("{p:?} is not 4 hex digits"));
    }
    let mut value = 0u16;
    let mut mask = 0u16;
    for c in p.chars() {
        value <<= 4;
        mask <<= 4;
        if c == 'X' || c == 'x' {
            continue;
        }
        let d = c
            .to_digit(16)
            .ok_or_else(|| format!("{p:?} is not hex (X for any digit)"))?;
        value |= d as u16;
        mask |= 0xF;
    }
    Ok((value, mask))
}

fn sw_matches(sw: u16, expect: &[(u16, u16)]) -> bool {
    expect.iter().any(|(v, m)| sw & m == *v)
}

/// Decode the ID bytes in `format`.
pub fn decode_id(bytes: &[u8], format: IdFormat) -> Result<String, String> {
    match format {
        IdFormat::Hex => Ok(hex(bytes)),
        IdFormat::Ascii => {
            let mut end = bytes.len();
            while end > 0 && (bytes[end - 1] == 0 || bytes[end - 1] == b' ') {
                end -= 1;
            }
            let b = &bytes[..end];
            if let Some(p) = b.iter().position(|c| !(0x20..0x7F).contains(c)) {
                return Err(format!(
                    "the ID is not printable ASCII (byte {:02X} at {p})",
                    b[p]
                ));
            }
            if b.is_empty() {
                return Err("the ID is empty (all spaces or NULs)".into());
            }
            Ok(String::from_utf8_lossy(b).into_owned())
        }
        IdFormat::Bcd => {
            let mut s = String::new();
            'outer: for (i, byte) in bytes.iter().enumerate() {
                for nib in [byte >> 4, byte & 0xF] {
                    match nib {
                        0..=9 => s.push((b'0' + nib) as char),
                        0xF => break 'outer,
                        _ => return Err(format!("the ID is not BCD (byte {byte:02X} at {i})")),
                    }
                }
            }
            if s.is_empty() {
                return Err("the ID is empty".into());
            }
            Ok(s)
        }
    }
}

/// The result of [`run_script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientId {
    pub id: String,
    pub reader: String,
}

fn choose_reader(ctx: &Context, wanted: Option<&str>) -> Result<String, ReaderError> {
    let infos = reader_infos(ctx)?;
    if infos.is_empty() {
        return Err(ReaderError::NoReaders);
    }
    let names: Vec<String> = infos.iter().map(|r| r.name.clone()).collect();
    let chosen = match wanted {
        Some(w) => {
            if let Some(r) = infos.iter().find(|r| r.name == w) {
                r
            } else {
                let m: Vec<&ReaderInfo> = infos.iter().filter(|r| r.name.contains(w)).collect();
                match m.len() {
                    0 => {
                        return Err(ReaderError::ReaderNotFound {
                            wanted: w.into(),
                            available: names,
                        })
                    }
                    1 => m[0],
                    _ => {
                        return Err(ReaderError::ReaderAmbiguous {
                            wanted: w.into(),
                            matches: m.iter().map(|r| r.name.clone()).collect(),
                        })
                    }
                }
            }
        }
        None => {
            let with: Vec<&ReaderInfo> = infos.iter().filter(|r| r.card_present).collect();
            match with.len() {
                0 => return Err(ReaderError::NoCard { reader: None }),
                1 => with[0],
                _ => {
                    return Err(ReaderError::SeveralCards {
                        readers: with.iter().map(|r| r.name.clone()).collect(),
                    })
                }
            }
        }
    };
    if !chosen.card_present {
        return Err(ReaderError::NoCard {
            reader: Some(chosen.name.clone()),
        });
    }
    Ok(chosen.name.clone())
}

/// Run `script` against the card in `reader` (or the one reader with a card) inside one
/// PC/SC transaction and return the patient ID.
pub fn run_script(script: &Script, reader: Option<&str>) -> Result<PatientId, ReaderError> {
    let steps = script.ready()?;
    let ctx = establish()?;
    let name = choose_reader(&ctx, reader)?;
    let cname = CString::new(name.clone()).map_err(|_| ReaderError::ReaderNotFound {
        wanted: name.clone(),
        available: Vec::new(),
    })?;
    let removed = |step: Option<usize>| ReaderError::CardRemoved {
        reader: name.clone(),
        step,
    };
    let card_err = |step: Option<usize>, op: &'static str, e: pcsc::Error| match e {
        pcsc::Error::NoSmartcard
        | pcsc::Error::RemovedCard
        | pcsc::Error::ResetCard
        | pcsc::Error::UnresponsiveCard
        | pcsc::Error::UnpoweredCard
        | pcsc::Error::NotTransacted
        | pcsc::Error::CommError => removed(step),
        pcsc::Error::ReaderUnavailable | pcsc::Error::UnknownReader => ReaderError::ReaderGone {
            reader: name.clone(),
        },
        pcsc::Error::SharingViolation => ReaderError::CardBusy {
            reader: name.clone(),
        },
        e => ReaderError::pcsc(op, e),
    };
    let mut card = ctx
        .connect(&cname, ShareMode::Shared, Protocols::ANY)
        .map_err(|e| match e {
            pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => ReaderError::NoCard {
                reader: Some(name.clone()),
            },
            e => card_err(None, "connect to card", e),
        })?;
    let tx = card
        .transaction()
        .map_err(|e| card_err(None, "begin transaction", e))?;
    let mut result = None;
    let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let mut apdu = step.apdu.clone();
        let mut data = Vec::new();
        let sw;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let resp = tx
                .transmit(&apdu, &mut buf)
                .map_err(|e| card_err(Some(n), "transmit", e))?;
            if resp.len() < 2 {
                return Err(removed(Some(n)));
            }
            let (d, s) = resp.split_at(resp.len() - 2);
            data.extend_from_slice(d);
            let this = u16::from_be_bytes([s[0], s[1]]);
            if rounds < 64 && !sw_matches(this, &step.expect) {
                if s[0] == 0x61 {
                    apdu = vec![step.apdu[0] & 0x03, 0xC0, 0x00, 0x00, s[1]];
                    continue;
                }
                if s[0] == 0x6C && data.is_empty() {
                    apdu = step.apdu.clone();
                    if apdu.len() == 4 {
                        apdu.push(s[1]);
                    } else {
                        *apdu.last_mut().unwrap() = s[1];
                    }
                    continue;
                }
            }
            sw = this;
            break;
        }
        if !sw_matches(sw, &step.expect) {
            return Err(ReaderError::StatusWord {
                step: n,
                sw,
                expected: step.expect_text.clone(),
            });
        }
        if let Some(f) = &step.id {
            let end = match f.length {
                Some(l) => f.offset + l,
                None => data.len(),
            };
            if f.offset >= data.len() || end > data.len() {
                return Err(ReaderError::BadId {
                    step: n,
                    detail: format!(
                        "the ID is at bytes {}..{end} but the card answered {} bytes of data",
                        f.offset,
                        data.len()
                    ),
                });
            }
            let id = decode_id(&data[f.offset..end], f.format)
                .map_err(|detail| ReaderError::BadId { step: n, detail })?;
            result = Some(id);
        }
    }
    // Ending the transaction can only fail if the card went away after the last answer;
    // the ID is read by then.
    let _ = tx.end(Disposition::LeaveCard);
    let _ = card.disconnect(Disposition::LeaveCard);
    let id = result.ok_or_else(|| ReaderError::Script("no step read the ID".into()))?;
    Ok(PatientId { id, reader: name })
}

/// `hpki-card patient-id`: print the ID (exit 0); exit 1 for a card or reader problem,
/// 2 for a bad script or no pcscd.
pub fn patient_id(args: PatientIdArgs) -> i32 {
    let res = Script::load(&args.script).and_then(|s| run_script(&s, args.reader.as_deref()));
    match res {
        Ok(p) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"patient_id": p.id, "reader": p.reader})
                );
            } else {
                println!("{}", p.id);
            }
            crate::EXIT_OK
        }
        Err(e) => {
            eprintln!("hpki-card patient-id: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sw_patterns() {
        let p = vec![
            parse_sw_pattern("9000").unwrap(),
            parse_sw_pattern("61XX").unwrap(),
        ];
        assert!(sw_matches(0x9000, &p));
        assert!(sw_matches(0x6110, &p));
        assert!(!sw_matches(0x6A82, &p));
        assert!(parse_sw_pattern("900").is_err());
        assert!(parse_sw_pattern("90G0").is_err());
    }

    #[test]
    fn decode_formats() {
        assert_eq!(decode_id(b"P123  \0\0", IdFormat::Ascii).unwrap(), "P123");
        assert!(decode_id(&[0x41, 0x01], IdFormat::Ascii).is_err());
        assert_eq!(
            decode_id(&[0x12, 0x34, 0x5F, 0xFF], IdFormat::Bcd).unwrap(),
            "12345"
        );
        assert!(decode_id(&[0x1A], IdFormat::Bcd).is_err());
        assert_eq!(decode_id(&[0xAB, 0x01], IdFormat::Hex).unwrap(), "AB01");
    }

    #[test]
    fn script_checks() {
        let ok = "[[step]]\napdu = \"00A4 0400 02 3F00\"\n[[step]]\napdu = \"00B0000010\"\nexpect = [\"9000\", \"6282\"]\nid = { offset = 2, length = 4, format = \"bcd\" }\n";
        let s = Script::parse(ok).unwrap();
        assert_eq!(s.step.len(), 2);
        assert_eq!(s.step[0].expect, vec!["9000".to_string()]);
        let no_id = "[[step]]\napdu = \"00A4040000\"\n";
        assert!(
            matches!(Script::parse(no_id), Err(ReaderError::Script(m)) if m.contains("exactly one"))
        );
        let bad_hex = "[[step]]\napdu = \"00A40\"\nid = { format = \"hex\" }\n";
        assert!(
            matches!(Script::parse(bad_hex), Err(ReaderError::Script(m)) if m.contains("step 1"))
        );
        let bad_fmt = "[[step]]\napdu = \"00A4040000\"\nid = { format = \"base64\" }\n";
        assert!(Script::parse(bad_fmt).is_err());
    }

    #[test]
    fn status_word_message() {
        let e = ReaderError::StatusWord {
            step: 2,
            sw: 0x6A82,
            expected: vec!["9000".into()],
        };
        assert_eq!(
            e.to_string(),
            "step 2: card answered 6A82 (file not found), expected 9000"
        );
    }
}
