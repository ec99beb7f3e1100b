//! PC/SC through the real pcscd with the vsmartcard-vpcd driver; the test is the card
//! (`pki_tests::vcard::VirtualCard`). Needs pcscd started by `scripts/test.sh`
//! (`HPKI_TEST_PCSCD=1`). These tests use the first vpcd slot ("Virtual PCD 00 00", TCP
//! 35963); `tests/agent.rs` uses the second. pcscd is one per machine: the nextest group
//! `pcsc` (.config/nextest.toml) runs them one at a time, and a lock does within this
//! binary under plain `cargo test`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hpki_cardreader::reader::{self, CardEvent};
use pki_tests::vcard::VirtualCard;

const PORT: u16 = 35963;
const READER: &str = "Virtual PCD 00 00";
const ATR: [u8; 13] = [
    0x3B, 0xDF, 0x18, 0x00, 0x81, 0x31, 0xFE, 0x58, 0x80, 0x31, 0x90, 0x52, 0x41,
];
const BIN: &str = env!("CARGO_BIN_EXE_hpki-card");

static LOCK: Mutex<()> = Mutex::new(());

/// Take the pcscd lock and check pcscd with the vpcd reader is there; panic (not skip)
/// when it is not.
fn pcscd_ready() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let hint = "start pcscd with the vsmartcard-vpcd driver: run the tests with \
                scripts/test.sh (it starts one and sets HPKI_TEST_PCSCD=1)";
    if std::env::var_os("HPKI_TEST_PCSCD").is_none()
        && !std::path::Path::new("/run/pcscd/pcscd.comm").exists()
    {
        panic!("pcscd is not running (HPKI_TEST_PCSCD unset, no /run/pcscd/pcscd.comm): {hint}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reader::list_readers() {
            Ok(l) if l.iter().any(|r| r.name == READER) => break,
            other if Instant::now() > deadline => {
                panic!("pcscd has no reader {READER:?} ({other:?}): {hint}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    // A card left over by a failed test elsewhere must be gone first.
    wait_card(false);
    guard
}

fn card_present() -> bool {
    reader::list_readers()
        .unwrap()
        .iter()
        .any(|r| r.name == READER && r.card_present)
}

fn wait_card(present: bool) {
    assert!(
        wait_card_for(present, Duration::from_secs(10)),
        "the card in {READER:?} did not become {}",
        if present { "present" } else { "absent" }
    );
}

fn wait_card_for(present: bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while card_present() != present {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Insert a card and wait until pcscd sees it. After a card vanished mid-command the vpcd
/// driver may miss the next connection: then the card is inserted again.
fn insert(responder: impl FnMut(&[u8]) -> Vec<u8> + Clone + Send + 'static) -> VirtualCard {
    for attempt in 1..=5 {
        let card = VirtualCard::insert(PORT, ATR.to_vec(), responder.clone());
        if wait_card_for(true, Duration::from_secs(3)) {
            return card;
        }
        eprintln!("insertion {attempt} not seen by pcscd; inserting again");
        card.remove();
    }
    panic!("the card in {READER:?} did not become present after 5 insertions");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `hpki-card` and fail the test if it does not end within `limit`.
fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hpki-card {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Output {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

fn reader_json(out: &Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("readers --json: {e}: {:?}", out.stdout));
    v["readers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == READER)
        .unwrap_or_else(|| panic!("no {READER:?} in {v}"))
        .clone()
}

#[test]
fn readers_json_shows_card_and_atr() {
    let _g = pcscd_ready();
    let out = run(&["readers", "--json"], Duration::from_secs(20));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = reader_json(&out);
    assert_eq!(r["card_present"], false, "{r}");
    assert!(r["atr"].is_null(), "{r}");

    let card = insert(|_| vec![0x90, 0x00]);
    let out = run(&["readers", "--json"], Duration::from_secs(20));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = reader_json(&out);
    assert_eq!(r["card_present"], true, "{r}");
    assert_eq!(r["atr"], hex(&ATR), "{r}");

    let text = run(&["readers"], Duration::from_secs(20));
    assert!(
        text.stdout
            .contains(&format!("{READER}: card present, ATR {}", hex(&ATR))),
        "{}",
        text.stdout
    );
    card.remove();
    wait_card(false);
}

/// Next event about our reader (others' readers are ignored), within `limit`.
fn next_event(rx: &mpsc::Receiver<CardEvent>, limit: Duration) -> CardEvent {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if ev.reader() == READER => return ev,
            Ok(_) => {}
            Err(e) => panic!("no event for {READER:?} within {limit:?}: {e}"),
        }
    }
}

#[test]
fn watch_events_sees_insert_and_remove() {
    let _g = pcscd_ready();
    let (tx, rx) = mpsc::channel();
    let watcher = std::thread::spawn(move || reader::watch_events(tx));
    // The current state first: our reader, no card.
    assert_eq!(
        next_event(&rx, Duration::from_secs(10)),
        CardEvent::ReaderAdded {
            reader: READER.into()
        }
    );
    let card = VirtualCard::insert(PORT, ATR.to_vec(), |_| vec![0x90, 0x00]);
    assert_eq!(
        next_event(&rx, Duration::from_secs(10)),
        CardEvent::CardInserted {
            reader: READER.into(),
            atr: ATR.to_vec()
        }
    );
    card.remove();
    assert_eq!(
        next_event(&rx, Duration::from_secs(10)),
        CardEvent::CardRemoved {
            reader: READER.into()
        }
    );
    // Dropping the receiver ends the loop (at the next event).
    drop(rx);
    let card = insert(|_| vec![0x90, 0x00]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !watcher.is_finished() {
        assert!(
            Instant::now() < deadline,
            "watch_events still runs after its receiver was dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(watcher.join().unwrap().is_ok());
    card.remove();
    wait_card(false);
}

#[test]
fn watch_binary_prints_json_lines() {
    let _g = pcscd_ready();
    let mut child = Command::new(BIN)
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |want: &str| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {want} line from watch: {e}"));
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("watch printed non-JSON {line:?}: {e}"));
            if v["reader"] == READER && v["event"] == want {
                return v;
            }
        }
    };
    next("reader_added");
    let card = VirtualCard::insert(PORT, ATR.to_vec(), |_| vec![0x90, 0x00]);
    let v = next("card_inserted");
    assert_eq!(v["atr"], hex(&ATR), "{v}");
    card.remove();
    next("card_removed");
    let _ = child.kill();
    let _ = child.wait();
    wait_card(false);
}

const SCRIPT: &str = r#"
[[step]]            # SELECT by AID
apdu = "00A4040007A0000000031010"
expect = ["9000"]
[[step]]            # READ BINARY
apdu = "00B0000010"
expect = ["9000"]
id = { offset = 0, length = 16, format = "ascii" }
"#;

const SELECT: [u8; 12] = [
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10,
];
const READ: [u8; 5] = [0x00, 0xB0, 0x00, 0x00, 0x10];

fn script_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

/// A patient card: the AID selects, READ BINARY answers the ID padded to 16 bytes.
fn patient_card(apdu: &[u8]) -> Vec<u8> {
    if apdu == SELECT {
        vec![0x90, 0x00]
    } else if apdu == READ {
        let mut r = b"P-0012345678    ".to_vec();
        r.extend_from_slice(&[0x90, 0x00]);
        r
    } else {
        vec![0x6D, 0x00]
    }
}

#[test]
fn patient_id_reads_the_id() {
    let _g = pcscd_ready();
    let script = script_file(SCRIPT);
    let card = insert(patient_card);
    let path = script.path().to_str().unwrap();
    let out = run(
        &["patient-id", "--script", path, "--reader", READER],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "P-0012345678\n");
    assert_eq!(card.apdus(), vec![SELECT.to_vec(), READ.to_vec()]);

    let out = run(
        &["patient-id", "--script", path, "--reader", READER, "--json"],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["patient_id"], "P-0012345678");
    assert_eq!(v["reader"], READER);
    card.remove();
    wait_card(false);
}

#[test]
fn patient_id_t0_get_response_and_bcd() {
    let _g = pcscd_ready();
    // The card answers READ BINARY with 61 08 (8 bytes waiting): GET RESPONSE fetches them.
    let script =
        script_file("[[step]]\napdu = \"00B0000000\"\nid = { offset = 2, format = \"bcd\" }\n");
    let card = insert(|apdu| match apdu {
        [0x00, 0xB0, ..] => vec![0x61, 0x08],
        [0x00, 0xC0, 0x00, 0x00, 0x08] => {
            vec![0xAA, 0xBB, 0x01, 0x23, 0x45, 0x67, 0x89, 0x0F, 0x90, 0x00]
        }
        _ => vec![0x6D, 0x00],
    });
    let out = run(
        &[
            "patient-id",
            "--script",
            script.path().to_str().unwrap(),
            "--reader",
            READER,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "01234567890\n");
    assert_eq!(card.apdus().len(), 2);
    card.remove();
    wait_card(false);
}

#[test]
fn patient_id_wrong_status_word_names_the_step() {
    let _g = pcscd_ready();
    let script = script_file(SCRIPT);
    let card = insert(|_| vec![0x6A, 0x82]);
    let out = run(
        &[
            "patient-id",
            "--script",
            script.path().to_str().unwrap(),
            "--reader",
            READER,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("step 1: card answered 6A82 (file not found), expected 9000"),
        "{}",
        out.stderr
    );
    // The script stopped at step 1.
    assert_eq!(card.apdus(), vec![SELECT.to_vec()]);
    card.remove();
    wait_card(false);
}

#[test]
fn patient_id_card_removed_mid_transaction() {
    let _g = pcscd_ready();
    let script = script_file(SCRIPT);
    // Answers SELECT, then is pulled out while READ BINARY is on its way.
    let card = insert(|apdu| {
        if apdu == SELECT {
            vec![0x90, 0x00]
        } else {
            Vec::new()
        }
    });
    let out = run(
        &[
            "patient-id",
            "--script",
            script.path().to_str().unwrap(),
            "--reader",
            READER,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "the card was removed from {READER:?} during step 2"
        )),
        "{}",
        out.stderr
    );
    assert!(!card.is_connected());
    card.remove();
    wait_card(false);
    // Leave the vpcd slot working for the next test (see `insert`).
    insert(|_| vec![0x90, 0x00]).remove();
    wait_card(false);
}

#[test]
fn patient_id_without_card() {
    let _g = pcscd_ready();
    let script = script_file(SCRIPT);
    let out = run(
        &[
            "patient-id",
            "--script",
            script.path().to_str().unwrap(),
            "--reader",
            READER,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("no card in reader {READER:?}")),
        "{}",
        out.stderr
    );
}

/// Stops the machine's pcscd and starts a new one with the same vpcd reader (these tests
/// are serialized: nothing else uses pcscd meanwhile). The new one is left running for
/// the following tests; scripts/test.sh stops every pcscd it started at the end.
fn restart_pcscd() {
    let _ = Command::new("pkill").args(["-x", "pcscd"]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("pgrep")
        .args(["-x", "pcscd"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "pcscd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("rc")).unwrap();
    std::fs::write(
        dir.join("rc/vpcd"),
        "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x8C7B\n\
         LIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x8C7B\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("pcscd.log")).unwrap();
    // Outlives the test on purpose (the following tests use it); a thread reaps it when
    // scripts/test.sh stops it, so it never lingers as a zombie.
    let mut child = Command::new("pcscd")
        .args(["-f", "-a", "-i", "-c"])
        .arg(dir.join("rc"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start pcscd");
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

#[test]
fn watch_survives_pcscd_restarting() {
    let _g = pcscd_ready();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || reader::watch_events(tx));
    assert_eq!(
        next_event(&rx, Duration::from_secs(10)),
        CardEvent::ReaderAdded {
            reader: READER.into()
        }
    );
    restart_pcscd();
    // The watch says the reader went away with pcscd, then finds it again...
    assert_eq!(
        next_event(&rx, Duration::from_secs(15)),
        CardEvent::ReaderRemoved {
            reader: READER.into()
        }
    );
    assert_eq!(
        next_event(&rx, Duration::from_secs(30)),
        CardEvent::ReaderAdded {
            reader: READER.into()
        }
    );
    // ...and goes on seeing cards.
    let card = insert(|_| vec![0x90, 0x00]);
    assert_eq!(
        next_event(&rx, Duration::from_secs(10)),
        CardEvent::CardInserted {
            reader: READER.into(),
            atr: ATR.to_vec()
        }
    );
    card.remove();
    assert_eq!(
        next_event(&rx, Duration::from_secs(10)),
        CardEvent::CardRemoved {
            reader: READER.into()
        }
    );
}
