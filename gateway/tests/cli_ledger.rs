//! The clinic's ledger and audit commands through the real binary, on SQLite (a file in a
//! temp dir, named relative to the working directory) and on PostgreSQL (a fresh
//! database per test from `HPKI_TEST_POSTGRES_URL`; scripts/test.sh starts a server):
//!
//! - `store migrate` (twice), and an unmigrated store refused naming `store migrate`;
//! - assistants add/list/show/deactivate; cards assign/release/reassign, a second holder
//!   refused, `card holder --at` at several times, `card history`; supervisors by
//!   `--doctor-cert` (HPKI id read from the certificate) and by id + issuer; the change
//!   log with operators;
//! - CSV import: every bad row reported with its line (file and store problems), nothing
//!   written, dry run; export → import into an empty store → export byte-identical; a
//!   BOM-prefixed file; a Shift_JIS file refused;
//! - `audit emergency` list / `done`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use hpki_gateway::pki::{name, parse_certificates, read_identity, ParsedCertificate};
use hpki_gateway::store::{self, DoctorRef, EmergencyGrant};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// One store under test, and a working directory for files and SQLite.
struct Ctx {
    url: String,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn sqlite() -> Ctx {
    Ctx {
        // Relative: --store-url resolves against the working directory (the temp dir).
        url: "sqlite://var/ledger.db".into(),
        dir: tempfile::tempdir().unwrap(),
    }
}

fn postgres() -> Ctx {
    Ctx {
        url: support::postgres::fresh_database(),
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Ctx {
    /// Another empty store of the same backend.
    fn sibling(&self) -> Ctx {
        if self.url.starts_with("sqlite://") {
            sqlite()
        } else {
            postgres()
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Runs `hpki-gateway ARGS --store-url URL` in the temp dir as operator "tester"
    /// (unless `--operator` is given); `USER` is set to "env-user" and `SUDO_USER` removed.
    fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"));
        cmd.args(args)
            .arg("--store-url")
            .arg(&self.url)
            .current_dir(self.dir.path())
            .env_remove("SUDO_USER")
            .env("USER", "env-user");
        if !args.contains(&"--operator") {
            cmd.args(["--operator", "tester"]);
        }
        let out = cmd.output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{args:?}\n{}", out.text());
        out.stdout
    }

    /// Runs and asserts the exit code; returns the output.
    fn fails(&self, code: i32, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, code, "{args:?}\n{}", out.text());
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
    }

    fn migrated(self) -> Ctx {
        self.ok(&["store", "migrate"]);
        self
    }

    fn export(&self) -> String {
        self.ok(&["ledger", "export"])
    }

    fn write(&self, file: &str, bytes: &[u8]) -> String {
        let p = self.path(file);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    fn add_assistant(&self, id: &str, kanji: &str, romaji: &str, from: &str) {
        self.ok(&[
            "ledger",
            "assistant",
            "add",
            "--id",
            id,
            "--name-kanji",
            kanji,
            "--name-romaji",
            romaji,
            "--facility",
            "本院",
            "--from",
            from,
        ]);
    }

    /// The store through the library (for emergency grants: their HTTP endpoint is not
    /// the subject here).
    fn store(&self) -> std::sync::Arc<dyn store::Store> {
        block_on(store::open(&self.url, self.dir.path(), false)).unwrap()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn certificate(path: &Path) -> ParsedCertificate {
    parse_certificates(&std::fs::read(path).unwrap())
        .unwrap()
        .remove(0)
}

fn cert_path(name: &str) -> String {
    support::pki().cert(name).display().to_string()
}

fn sha256_of(cert: &str) -> String {
    name::hex(certificate(&support::pki().cert(cert)).sha256())
}

fn doctor_of(cert: &str) -> DoctorRef {
    let c = certificate(&support::pki().cert(cert));
    DoctorRef {
        hpki_id: read_identity(&c).unwrap().hpki_id.unwrap(),
        issuer: name::display(c.issuer()),
    }
}

fn t(s: &str) -> i64 {
    store::parse_time(s).unwrap()
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_owned())
        .collect()
}

const HEADER: &str = "assistant_id,name_kanji,name_romaji,facility,active_from,active_until,card_sha256,card_issuer,card_serial,supervisors\n";

// ---------------------------------------------------------------------------------------
// store migrate
// ---------------------------------------------------------------------------------------

fn migrate_scenario(ctx: &Ctx) {
    // Unmigrated: every other command refuses, naming the fix.
    for args in [
        &["ledger", "assistant", "list"][..],
        &["audit", "emergency", "--since", "2026-01-01"][..],
    ] {
        let out = ctx.fails(1, args);
        assert!(
            out.stderr.contains("hpki-gateway store migrate"),
            "{}",
            out.text()
        );
    }
    let first = ctx.ok(&["store", "migrate"]);
    assert!(first.contains("migrated from version 0 to 2"), "{first}");
    assert!(first.contains("applied 1 "), "{first}");
    assert!(first.contains("applied 2 "), "{first}");
    let second = ctx.ok(&["store", "migrate"]);
    assert!(
        second.contains("already at version 2: nothing to apply"),
        "{second}"
    );
    assert!(!second.contains("applied"), "{second}");
    let json = ctx.json(&["store", "migrate"]);
    assert_eq!(json["applied"], Value::Array(vec![]));
    assert_eq!(json["to_version"], 2);
    // Now the ledger commands work.
    let list = ctx.ok(&["ledger", "assistant", "list"]);
    assert!(list.contains("no assistants"), "{list}");
}

#[test]
fn migrate_sqlite() {
    let ctx = sqlite();
    migrate_scenario(&ctx);
    // The relative sqlite:// URL named a file under the working directory.
    assert!(ctx.path("var/ledger.db").is_file());
}

#[test]
fn migrate_postgres() {
    migrate_scenario(&postgres());
}

#[test]
fn config_names_the_store_and_bad_selection_is_usage() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let text = support::config(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        "hpki-card",
        "required",
        "",
    );
    std::fs::write(&config, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_hpki-gateway");
    let out = Command::new(bin)
        .args(["store", "migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The default [store] url, relative to the config file's directory.
    assert!(dir.path().join("var/hpki-gateway.db").is_file());
    let out = Command::new(bin)
        .args(["ledger", "assistant", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Neither, or both: usage (2), naming the options.
    let out = Command::new(bin)
        .args(["ledger", "assistant", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store-url URL"));
    let out = Command::new(bin)
        .args([
            "ledger",
            "assistant",
            "list",
            "--store-url",
            "sqlite://x.db",
        ])
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}

// ---------------------------------------------------------------------------------------
// Assistants, cards, supervisors, change log
// ---------------------------------------------------------------------------------------

fn ledger_scenario(ctx: Ctx) {
    let ctx = ctx.migrated();
    let org = cert_path("org-clinic");
    let org_sha = sha256_of("org-clinic");
    let doctor = doctor_of("doctor");

    ctx.add_assistant("A1", "山田 花子", "Yamada Hanako", "2026-01-01");
    ctx.add_assistant("A2", "佐藤 一郎", "Sato Ichiro", "2026-01-01");
    // Ids are never reused.
    let dup = ctx.fails(
        1,
        &[
            "ledger",
            "assistant",
            "add",
            "--id",
            "A1",
            "--name-kanji",
            "x",
            "--name-romaji",
            "x",
            "--facility",
            "x",
        ],
    );
    assert!(dup.stderr.contains("already exists"), "{}", dup.text());
    // A bad date is bad input, naming the accepted forms.
    let bad = ctx.fails(
        2,
        &[
            "ledger",
            "assistant",
            "add",
            "--id",
            "A9",
            "--name-kanji",
            "x",
            "--name-romaji",
            "x",
            "--facility",
            "x",
            "--from",
            "2026/04/01",
        ],
    );
    assert!(bad.stderr.contains("--from") && bad.stderr.contains("2026-04-01"));

    let list = ctx.json(&["ledger", "assistant", "list"]);
    assert_eq!(ids(&list, "id"), ["A1", "A2"]);
    assert_eq!(list[0]["name_kanji"], "山田 花子");
    assert_eq!(list[0]["name_romaji"], "Yamada Hanako");
    assert_eq!(list[0]["facility"], "本院");
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["active_from"], "2026-01-01T00:00:00+09:00");
    assert_eq!(list[0]["cards"], Value::Array(vec![]));

    // Assign by certificate: recorded by its SHA-256, and the output says so.
    let assigned = ctx.ok(&[
        "ledger",
        "card",
        "assign",
        "--assistant",
        "A1",
        "--cert",
        &org,
        "--at",
        "2026-02-01",
    ]);
    assert!(
        assigned.contains(&format!("sha256:{org_sha}"))
            && assigned.contains("recorded by the certificate's SHA-256"),
        "{assigned}"
    );
    // A second holder is refused, naming the holder and the fix; nothing changes.
    let second = ctx.fails(
        1,
        &[
            "ledger",
            "card",
            "assign",
            "--assistant",
            "A2",
            "--sha256",
            &org_sha,
            "--at",
            "2026-02-15",
        ],
    );
    assert!(
        second.stderr.contains("held by \"A1\"") && second.stderr.contains("ledger card release"),
        "{}",
        second.text()
    );
    let refused = ctx.fails(
        1,
        &[
            "ledger",
            "card",
            "assign",
            "--assistant",
            "A2",
            "--cert",
            &org,
        ],
    );
    assert!(
        refused.stderr.contains("held by \"A1\""),
        "{}",
        refused.text()
    );
    // A card recorded by issuer + serial is found by --cert too (the CLI looks under
    // both of the certificate's keys).
    let clerk_path = cert_path("clerk");
    let clerk = certificate(Path::new(&clerk_path));
    ctx.ok(&[
        "ledger",
        "card",
        "assign",
        "--assistant",
        "A1",
        "--issuer",
        &name::display(clerk.issuer()),
        "--serial",
        &clerk.serial_hex(),
    ]);
    let other_key = ctx.fails(
        1,
        &[
            "ledger",
            "card",
            "assign",
            "--assistant",
            "A2",
            "--cert",
            &clerk_path,
        ],
    );
    assert!(
        other_key.stderr.contains("recorded as serial:")
            && other_key.stderr.contains("held by \"A1\""),
        "{}",
        other_key.text()
    );
    let released = ctx.ok(&["ledger", "card", "release", "--cert", &clerk_path]);
    assert!(
        released.contains("card serial:") && released.contains("released from A1"),
        "{released}"
    );

    // Release, then reassign to A2.
    let released = ctx.ok(&[
        "ledger",
        "card",
        "release",
        "--cert",
        &org,
        "--at",
        "2026-03-01",
    ]);
    assert!(released.contains("released from A1"), "{released}");
    ctx.ok(&[
        "ledger",
        "card",
        "assign",
        "--assistant",
        "A2",
        "--sha256",
        &org_sha,
        "--at",
        "2026-03-01",
    ]);
    // Who held the card when.
    let at_feb = ctx.ok(&[
        "ledger",
        "card",
        "holder",
        "--cert",
        &org,
        "--at",
        "2026-02-10",
    ]);
    assert!(at_feb.contains("held by A1 山田 花子"), "{at_feb}");
    let at_mar = ctx.json(&[
        "ledger",
        "card",
        "holder",
        "--sha256",
        &org_sha,
        "--at",
        "2026-03-10",
    ]);
    assert_eq!(at_mar["holder"]["assistant_id"], "A2");
    let before = ctx.fails(
        1,
        &[
            "ledger",
            "card",
            "holder",
            "--cert",
            &org,
            "--at",
            "2026-01-15",
        ],
    );
    assert!(before.stdout.contains("nobody"), "{}", before.text());
    let history = ctx.json(&["ledger", "card", "history", "--cert", &org]);
    let holders: Vec<(&str, &str, Option<&str>)> = history["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["assistant_id"].as_str().unwrap(),
                a["from"].as_str().unwrap(),
                a["until"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        holders,
        [
            (
                "A1",
                "2026-02-01T00:00:00+09:00",
                Some("2026-03-01T00:00:00+09:00")
            ),
            ("A2", "2026-03-01T00:00:00+09:00", None),
        ],
        "{history:#}"
    );

    // Supervisors: by the doctor's certificate (HPKI id and issuer read from it).
    let added = ctx.ok(&[
        "ledger",
        "supervisor",
        "add",
        "--assistant",
        "A2",
        "--doctor-cert",
        &cert_path("doctor"),
    ]);
    assert!(added.contains(&doctor.hpki_id), "{added}");
    let show = ctx.json(&["ledger", "assistant", "show", "A2"]);
    assert_eq!(show["supervisors"][0]["hpki_id"], doctor.hpki_id.as_str());
    assert_eq!(show["supervisors"][0]["issuer"], doctor.issuer.as_str());
    assert_eq!(
        show["cards"],
        serde_json::json!([format!("sha256:{org_sha}")])
    );
    // A certificate without an HPKI id, or a signing certificate, is refused by name.
    let server = support::pki().server_cert().display().to_string();
    let no_id = ctx.fails(
        2,
        &[
            "ledger",
            "supervisor",
            "add",
            "--assistant",
            "A2",
            "--doctor-cert",
            &server,
        ],
    );
    assert!(no_id.stderr.contains("has no HPKI id"), "{}", no_id.text());
    let signing = ctx.fails(
        2,
        &[
            "ledger",
            "supervisor",
            "add",
            "--assistant",
            "A2",
            "--doctor-cert",
            &cert_path("signing-card"),
        ],
    );
    assert!(signing.stderr.contains("signing"), "{}", signing.text());
    // By id + issuer, and removal.
    let other = doctor_of("doctor-g2");
    ctx.ok(&[
        "ledger",
        "supervisor",
        "add",
        "--assistant",
        "A1",
        "--hpki-id",
        &other.hpki_id,
        "--issuer",
        &other.issuer,
    ]);
    ctx.ok(&[
        "ledger",
        "supervisor",
        "remove",
        "--assistant",
        "A1",
        "--hpki-id",
        &other.hpki_id,
        "--issuer",
        &other.issuer,
        "--operator",
        "remover",
    ]);
    let again = ctx.fails(
        1,
        &[
            "ledger",
            "supervisor",
            "remove",
            "--assistant",
            "A1",
            "--hpki-id",
            &other.hpki_id,
            "--issuer",
            &other.issuer,
        ],
    );
    assert!(
        again.stderr.contains("does not supervise"),
        "{}",
        again.text()
    );
    let a1 = ctx.json(&["ledger", "assistant", "show", "A1"]);
    assert_eq!(a1["supervisors"], Value::Array(vec![]));
    assert_eq!(a1["supervision_history"][0]["removed_by"], "remover");
    // A1's cards: the organization card and the clerk's, both released.
    let a1_cards = a1["card_history"].as_array().unwrap();
    assert_eq!(a1_cards.len(), 2, "{a1:#}");
    assert!(a1_cards.iter().all(|c| c["until"].is_string()), "{a1:#}");

    // Deactivation releases the card; the default operator comes from $USER.
    let deactivated = ctx.run(&["ledger", "assistant", "deactivate", "A2"]);
    assert_eq!(deactivated.code, 0, "{}", deactivated.text());
    assert!(
        deactivated
            .stdout
            .contains(&format!("released card sha256:{org_sha}")),
        "{}",
        deactivated.text()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"));
    let default_op = cmd
        .args([
            "ledger",
            "assistant",
            "add",
            "--id",
            "A3",
            "--name-kanji",
            "鈴木",
        ])
        .args([
            "--name-romaji",
            "Suzuki",
            "--facility",
            "分院",
            "--store-url",
            &ctx.url,
        ])
        .current_dir(ctx.dir.path())
        .env_remove("SUDO_USER")
        .env("USER", "env-user")
        .output()
        .unwrap();
    assert!(default_op.status.success(), "{default_op:?}");
    let list = ctx.json(&["ledger", "assistant", "list"]);
    let a2 = &list[1];
    assert_eq!(a2["id"], "A2");
    assert_eq!(a2["active"], false);
    assert_eq!(a2["cards"], Value::Array(vec![]));
    assert!(a2["active_until"].is_string());
    let again = ctx.fails(1, &["ledger", "assistant", "deactivate", "A2"]);
    assert!(
        again.stderr.contains("already deactivated"),
        "{}",
        again.text()
    );
    let unknown = ctx.fails(1, &["ledger", "assistant", "show", "NOPE"]);
    assert!(unknown.stderr.contains("no assistant \"NOPE\""));
    let nobody = ctx.fails(1, &["ledger", "card", "holder", "--sha256", &org_sha]);
    assert!(nobody.stdout.contains("nobody"));

    // The change log names the operators.
    let changes = ctx.json(&["ledger", "changes"]);
    let entries: Vec<(String, String, String)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["operator"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
                c["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let has = |op: &str, action: &str, subject: &str| {
        entries
            .iter()
            .any(|e| e.0 == op && e.1 == action && e.2 == subject)
    };
    assert!(has("tester", "assistant.add", "A1"), "{entries:?}");
    assert!(has("tester", "card.assign", "A1"), "{entries:?}");
    assert!(has("tester", "card.release", "A1"), "{entries:?}");
    assert!(has("tester", "supervisor.add", "A2"), "{entries:?}");
    assert!(has("remover", "supervisor.remove", "A1"), "{entries:?}");
    assert!(has("tester", "assistant.deactivate", "A2"), "{entries:?}");
    assert!(has("env-user", "assistant.add", "A3"), "{entries:?}");
    // --since filters by time (assignment changes are recorded at their --at).
    let since = ctx.json(&["ledger", "changes", "--since", "2026-02-20"]);
    assert!(since
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["at"].as_str().unwrap() >= "2026-02-20"));
    assert!(since.as_array().unwrap().len() < entries.len());
    let text = ctx.ok(&["ledger", "changes"]);
    assert!(text.contains("remover  supervisor.remove  A1"), "{text}");
}

#[test]
fn ledger_sqlite() {
    ledger_scenario(sqlite());
}

#[test]
fn ledger_postgres() {
    ledger_scenario(postgres());
}

// ---------------------------------------------------------------------------------------
// CSV import / export
// ---------------------------------------------------------------------------------------

fn import_scenario(ctx: Ctx) {
    let ctx = ctx.migrated();
    let org_sha = sha256_of("org-clinic");
    let doctor = doctor_of("doctor");
    let doctor2 = doctor_of("doctor-g2");
    // The store already has A1 holding the organization card.
    ctx.add_assistant("A1", "山田 花子", "Yamada Hanako", "2026-01-01");
    ctx.ok(&[
        "ledger",
        "card",
        "assign",
        "--assistant",
        "A1",
        "--sha256",
        &org_sha,
        "--at",
        "2026-02-01",
    ]);
    let before = ctx.export();

    // Every bad row reported with its line; the store checks the good ones too.
    let bad = format!(
        "{HEADER}\
         B1,伊藤 次郎,Ito Jiro,本院,2026-04-01,,,,,\n\
         B2,加藤 三郎,Kato Saburo,本院,2026-02-30,,,,,\n\
         B3,木村 四郎,Kimura Shiro,本院,2026-04-01,,xyz,,,\n\
         B4,林 五郎,Hayashi Goro,本院,2026-04-01,,,,,{id}\n\
         B1,伊藤 次郎,Ito Jiro,本院,2026-04-01,,,,,\n\
         B5,清水 六郎,Shimizu Rokuro,本院,2026-04-01,,,,\n\
         B6,森 七郎,Mori Shichiro,本院,2026-04-01,,{org_sha},,,\n\
         B7,池田 八郎,Ikeda Hachiro,,2026-04-01,2026-03-01,,,abc,\n",
        id = doctor.hpki_id,
    );
    let file = ctx.write("bad.csv", bad.as_bytes());
    for dry in [true, false] {
        let mut args = vec!["ledger", "import", file.as_str()];
        if dry {
            args.push("--dry-run");
        }
        let out = ctx.fails(1, &args);
        let report = &out.stdout;
        let expect: [(usize, &str); 8] = [
            (3, "active_from: \"2026-02-30\" is not a date"),
            (4, "card SHA-256 \"xyz\" is not 64 hex digits"),
            (5, "has no issuer"),
            (6, "also on line 2"),
            (7, "has 9 values but the header has 10 columns"),
            (8, "is held by \"A1\""),
            (9, "facility is empty"),
            (9, "card_serial is given without card_issuer"),
        ];
        for (line, text) in expect {
            assert!(
                report
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("line {line}: "))
                        && l.contains(text)),
                "line {line} should report {text:?}\n{}",
                out.text()
            );
        }
        assert!(report.contains("active_until 2026-03-01 is not after active_from"));
        assert!(
            !report
                .lines()
                .any(|l| l.trim_start().starts_with("line 2:")),
            "the good row has no problem\n{report}"
        );
        assert!(report.contains("nothing was written"), "{report}");
        assert_eq!(ctx.export(), before, "a refused import writes nothing");
    }

    // A clean dry run says what it would do and writes nothing.
    let good = format!(
        "{HEADER}\
         B1,伊藤 次郎,Ito Jiro,本院,2026-04-01,,,,,\"{d1}|{i1}\"\n\
         B2,\"加藤, 三郎\",Kato Saburo,分院,2026-04-01T09:30:00+09:00,2026-12-31,,\"{i0}\",0A:1b,\"{d1}|{i1} ; {d2}|{i2}\"\n\
         A1,山田 花子,Yamada Hanako,本院,2026-01-01,,{org_sha},,,\n",
        d1 = doctor.hpki_id,
        i1 = doctor.issuer,
        d2 = doctor2.hpki_id,
        i2 = doctor2.issuer,
        i0 = "C=JP, O=Card Issuer \\; Test, CN=Org CA",
    );
    let file = ctx.write("good.csv", good.as_bytes());
    let dry = ctx.ok(&["ledger", "import", &file, "--dry-run"]);
    assert!(
        dry.contains(
            "dry run: would add 2, update 0, assign 1 cards, add 3 supervisors; nothing written"
        ),
        "{dry}"
    );
    assert_eq!(ctx.export(), before);
    let done = ctx.ok(&["ledger", "import", &file]);
    assert!(
        done.contains("added 2, updated 0, assigned 1 cards, added 3 supervisors"),
        "{done}"
    );
    let exported = ctx.export();
    assert_ne!(exported, before);
    assert!(exported.starts_with(HEADER), "{exported}");
    let b2 = exported.lines().find(|l| l.starts_with("B2,")).unwrap();
    assert_eq!(
        b2,
        format!(
            "B2,\"加藤, 三郎\",Kato Saburo,分院,2026-04-01T09:30:00+09:00,2026-12-31,,\"C=JP, O=Card Issuer \\; Test, CN=Org CA\",a1b,\"{d1}|{i1};{d2}|{i2}\"",
            d1 = doctor.hpki_id,
            i1 = doctor.issuer,
            d2 = doctor2.hpki_id,
            i2 = doctor2.issuer,
        )
    );
    // Importing the same file again changes nothing.
    let again = ctx.ok(&["ledger", "import", &file]);
    assert!(
        again.contains("added 0, updated 0, assigned 0 cards, added 0 supervisors"),
        "{again}"
    );
    assert_eq!(ctx.export(), exported);

    // Round trip: export → import into an empty store → export, byte-identical.
    let export_file = ctx.write("export.csv", exported.as_bytes());
    let empty = ctx.sibling().migrated();
    empty.ok(&["ledger", "import", &export_file]);
    assert_eq!(empty.export(), exported);
    // --out writes the same bytes; --bom prefixes a BOM.
    let out_file = ctx.path("out.csv");
    ctx.ok(&["ledger", "export", "--out", out_file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), exported);
    let with_bom = ctx.ok(&["ledger", "export", "--bom"]);
    assert_eq!(with_bom, format!("\u{feff}{exported}"));

    // A BOM-prefixed file (as Excel writes "CSV UTF-8") imports.
    let bom = ctx.sibling().migrated();
    let bom_file = bom.write(
        "bom.csv",
        format!("\u{feff}{HEADER}C1,高橋 九子,Takahashi Kuko,本院,2026-05-01,,,,,\r\n").as_bytes(),
    );
    let out = bom.ok(&["ledger", "import", &bom_file]);
    assert!(out.contains("added 1"), "{out}");
    let list = bom.json(&["ledger", "assistant", "list"]);
    assert_eq!(ids(&list, "id"), ["C1"]);
    assert_eq!(list[0]["name_kanji"], "高橋 九子");

    // Shift_JIS (Excel's plain "CSV") is refused as unreadable, naming the fix.
    let mut sjis = HEADER.as_bytes().to_vec();
    sjis.extend_from_slice(b"C2,\x8eR\x93c,Yamada,x,2026-05-01,,,,,\n");
    let sjis_file = bom.write("sjis.csv", &sjis);
    let out = bom.fails(2, &["ledger", "import", &sjis_file]);
    assert!(
        out.stderr.contains("not UTF-8 (line 2)") && out.stderr.contains("Shift_JIS"),
        "{}",
        out.text()
    );
    // A file that does not start with the header.
    let headless = bom.write("headless.csv", b"C3,x,y,z,2026-05-01,,,,,\n");
    let out = bom.fails(1, &["ledger", "import", &headless]);
    assert!(
        out.stdout.contains("line 1: line 1 is not the header"),
        "{}",
        out.text()
    );
    let missing = bom.fails(2, &["ledger", "import", "no-such-file.csv"]);
    assert!(missing.stderr.contains("cannot read"), "{}", missing.text());
    assert_eq!(
        ids(&bom.json(&["ledger", "assistant", "list"]), "id"),
        ["C1"]
    );
}

#[test]
fn import_export_sqlite() {
    import_scenario(sqlite());
}

#[test]
fn import_export_postgres() {
    import_scenario(postgres());
}

// ---------------------------------------------------------------------------------------
// audit emergency
// ---------------------------------------------------------------------------------------

fn grant(id: &str, started: &str, reason: &str, patient: Option<&str>) -> EmergencyGrant {
    let doctor = doctor_of("doctor");
    EmergencyGrant {
        id: id.into(),
        doctor,
        doctor_name: "Taro Kagurazaka".into(),
        cert_sha256: sha256_of("doctor"),
        reason: reason.into(),
        patient_ref: patient.map(str::to_owned),
        started_at: t(started),
        expires_at: t(started) + 3600,
        ended_at: None,
        followup_at: None,
        followup_by: None,
        followup_note: None,
    }
}

fn audit_scenario(ctx: Ctx) {
    let ctx = ctx.migrated();
    let store = ctx.store();
    block_on(async {
        for g in [
            grant("e-old", "2025-12-01", "old", None),
            grant(
                "e-one",
                "2026-04-02T10:00:00+09:00",
                "心肺停止 cardiac arrest",
                Some("P-001"),
            ),
            grant("e-two", "2026-04-03", "unconscious patient", None),
        ] {
            store.insert_emergency(&g).await.unwrap();
        }
    });
    drop(store);
    let open = ctx.json(&["audit", "emergency", "--since", "2026-04-01"]);
    assert_eq!(ids(&open, "id"), ["e-one", "e-two"]);
    assert_eq!(
        open[0]["doctor_hpki_id"],
        doctor_of("doctor").hpki_id.as_str()
    );
    assert_eq!(open[0]["patient_ref"], "P-001");
    assert_eq!(open[0]["started_at"], "2026-04-02T10:00:00+09:00");
    let text = ctx.ok(&["audit", "emergency", "--since", "2026-04-01"]);
    assert!(
        text.contains("e-one")
            && text.contains("Taro Kagurazaka")
            && text.contains("心肺停止 cardiac arrest")
            && text.contains("P-001")
            && !text.contains("e-old"),
        "{text}"
    );

    let done = ctx.ok(&[
        "audit",
        "emergency",
        "done",
        "e-one",
        "--note",
        "consent obtained 4/3",
        "--operator",
        "auditor",
    ]);
    assert!(done.contains("e-one") && done.contains("auditor"), "{done}");
    let open = ctx.json(&["audit", "emergency", "--since", "2026-04-01"]);
    assert_eq!(ids(&open, "id"), ["e-two"]);
    let all = ctx.json(&["audit", "emergency", "--since", "2026-04-01", "--all"]);
    assert_eq!(ids(&all, "id"), ["e-one", "e-two"]);
    assert_eq!(all[0]["followup_by"], "auditor");
    assert_eq!(all[0]["followup_note"], "consent obtained 4/3");
    assert_eq!(all[1]["followup_at"], Value::Null);
    let everything = ctx.json(&["audit", "emergency", "--since", "2025-01-01", "--all"]);
    assert_eq!(ids(&everything, "id"), ["e-old", "e-one", "e-two"]);

    let twice = ctx.fails(
        1,
        &["audit", "emergency", "done", "e-one", "--note", "again"],
    );
    assert!(
        twice.stderr.contains("already recorded") && twice.stderr.contains("auditor"),
        "{}",
        twice.text()
    );
    let unknown = ctx.fails(1, &["audit", "emergency", "done", "e-nope", "--note", "x"]);
    assert!(unknown.stderr.contains("no emergency grant \"e-nope\""));
    let empty_note = ctx.fails(2, &["audit", "emergency", "done", "e-two", "--note", " "]);
    assert!(empty_note.stderr.contains("--note is empty"));
    // The refused attempts changed nothing.
    let all = ctx.json(&["audit", "emergency", "--since", "2026-04-01", "--all"]);
    assert_eq!(all[0]["followup_note"], "consent obtained 4/3");
    assert_eq!(all[1]["followup_at"], Value::Null);
}

#[test]
fn audit_sqlite() {
    audit_scenario(sqlite());
}

#[test]
fn audit_postgres() {
    audit_scenario(postgres());
}
