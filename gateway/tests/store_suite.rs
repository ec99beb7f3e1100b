//! The store's contract, run against both backends: every case below is an async fn taking
//! a [`Fixture`], and `both_backends!` makes a `sqlite::case` and a `postgres::case` test of
//! it. SQLite gets a fresh file in a temp dir; PostgreSQL a fresh database on the server
//! `HPKI_TEST_POSTGRES_URL` names (scripts/test.sh starts one; see tests/support/postgres.rs).

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use hpki_gateway::store::{
    self, Assistant, Backend, CardKey, ConfirmationSignature, Confirmer, DoctorRef, EmergencyGrant,
    ForwardOutcome, LedgerRow, NewPending, PendingState, SqlStore, Store, StoreError,
};

/// A base time: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000;
const OP: &str = "事務長 山田 (ledger-cli)";

struct Fixture {
    backend: Backend,
    url: String,
    base: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            backend: Backend::Sqlite,
            url: "sqlite://store/hpki.db".into(),
            base: dir.path().to_owned(),
            _dir: dir,
        }
    }

    fn postgres() -> Fixture {
        Fixture {
            backend: Backend::Postgres,
            url: support::postgres::fresh_database(),
            base: PathBuf::from("/nonexistent"),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The store, migrated.
    async fn store(&self) -> Arc<dyn Store> {
        let s = store::open(&self.url, &self.base, true).await.unwrap();
        assert_eq!(s.backend(), self.backend);
        s
    }

    /// A second, independent connection to the same store (another gateway).
    async fn connect(&self) -> SqlStore {
        SqlStore::connect(&self.url, &self.base).await.unwrap()
    }

    /// Plain sqlx access, for what the Store API cannot do (a future schema version).
    async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.base.join("store/hpki.db").display()),
            Backend::Postgres => self.url.clone(),
        };
        sqlx::AnyPool::connect(&url).await.unwrap()
    }
}

async fn migration_count(fx: &Fixture) -> i64 {
    let pool = fx.raw().await;
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM hpki_schema_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.0
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Fixture::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Fixture::postgres()).await
                }
            )*
        }
    };
}

both_backends!(
    migrate_applies_every_version_once,
    version_1_store_upgrades_to_2,
    unmigrated_store_is_refused_without_migrate,
    newer_schema_is_refused,
    concurrent_migrations_apply_once,
    assistants_round_trip_and_ids_are_unique,
    cards_have_one_holder_and_a_history,
    concurrent_assignments_give_one_holder,
    card_keys_by_issuer_and_serial,
    deactivation_releases_cards,
    an_ended_holder_gives_up_the_card,
    supervisors_come_and_go,
    two_holders_of_one_certificate_are_refused,
    import_commits_a_good_ledger,
    import_dry_run_changes_nothing,
    import_with_a_bad_row_commits_nothing,
    pending_round_trips_bytes_and_headers,
    claim_is_exclusive,
    concurrent_claims_have_one_winner,
    delivered_forward_is_final,
    failed_forward_is_retryable,
    reject_only_from_pending_or_failed,
    expiry,
    reclaim_takes_only_lapsed_leases,
    concurrent_reclaims_take_each_entry_once,
    a_signature_is_stored_with_its_claim,
    emergency_window_and_end,
    emergency_listing_and_followup,
    shared_setting_first_value_wins,
);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn assistant(id: &str, kanji: &str) -> Assistant {
    Assistant {
        id: id.into(),
        name_kanji: kanji.into(),
        name_romaji: format!("{id} romaji"),
        facility: "神楽坂クリニック".into(),
        active_from: T0,
        active_until: None,
    }
}

fn sha(n: u8) -> CardKey {
    CardKey::Sha256(format!("{n:02x}").repeat(32))
}

fn doctor(id: &str) -> DoctorRef {
    DoctorRef {
        hpki_id: id.into(),
        issuer: "C=JP, O=MEDIS, CN=HPKI-01-MedisSignCA2-forAuthentication".into(),
    }
}

fn confirmer(id: &str) -> Confirmer {
    Confirmer {
        hpki_id: id.into(),
        issuer: "C=JP, O=MEDIS".into(),
        name: format!("医師 {id}"),
        headers: vec![("X-HPKI-Subject".into(), format!("CN={id}"))],
        claims: serde_json::json!({ "sub": id, "role": "Medical Doctor", "n": 3 }),
    }
}

/// A stand-in for a doctor's verified signature (the store keeps bytes; it does not
/// verify), distinct per `n`.
fn signature(n: u8) -> ConfirmationSignature {
    ConfirmationSignature {
        digest: [n; 32],
        signature: vec![n, 0x00, 0xff, 0x80],
        certificate: vec![0x30, 0x03, 0x02, 0x01, n],
        chain: vec![vec![0x30, 0x01, n], vec![0x30, 0x02, n, n]],
    }
}

fn new_pending(id: &str, created: i64, expires: i64) -> NewPending {
    NewPending {
        id: id.into(),
        route_path: "/emr".into(),
        request_host: Some("emr.clinic.example".into()),
        method: "POST".into(),
        path_and_query: "/emr/orders?patient=42&x=%E3%81%82".into(),
        headers: vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("Content-Length".into(), "9".into()),
            (
                "Content-Disposition".into(),
                "attachment; filename=\"処方.bin\"".into(),
            ),
        ],
        body: vec![0xff, 0xfe, 0x00, 0x80, b'a', 0xc3, 0x28, 0xe3, 0x81],
        assistant_id: "a1".into(),
        assistant_name: "神楽坂\u{3000}花子".into(),
        card_sha256: "ab".repeat(32),
        created_at: created,
        expires_at: expires,
    }
}

async fn state(s: &Arc<dyn Store>, id: &str) -> PendingState {
    s.pending(id).await.unwrap().expect("entry exists").state
}

fn rejected(r: Result<impl Sized, StoreError>) -> String {
    match r {
        Err(StoreError::Rejected(e)) => e,
        Err(e) => panic!("expected Rejected, got {e:?}"),
        Ok(_) => panic!("expected Rejected, got Ok"),
    }
}

fn grant(id: &str, cert: &str, started: i64, expires: i64) -> EmergencyGrant {
    EmergencyGrant {
        id: id.into(),
        doctor: doctor("D-EMERG"),
        doctor_name: "救急\u{3000}太郎".into(),
        cert_sha256: cert.into(),
        reason: "意識不明の患者 / unconscious patient".into(),
        patient_ref: Some("P-0042".into()),
        started_at: started,
        expires_at: expires,
        ended_at: None,
        followup_at: None,
        followup_by: None,
        followup_note: None,
    }
}

// ---------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------

async fn migrate_applies_every_version_once(fx: Fixture) {
    let s = fx.connect().await;
    let first = s.migrate().await.unwrap();
    assert_eq!(first.backend, fx.backend);
    assert_eq!(first.from_version, 0);
    assert_eq!(first.to_version, 2);
    assert_eq!(first.applied.len(), 2, "{:?}", first.applied);
    assert!(first.applied[0].starts_with("1 "), "{:?}", first.applied);
    assert!(first.applied[1].starts_with("2 "), "{:?}", first.applied);

    let again = s.migrate().await.unwrap();
    assert_eq!(again.from_version, 2);
    assert_eq!(again.to_version, 2);
    assert!(again.applied.is_empty(), "{:?}", again.applied);
    s.check_schema().await.unwrap();
    assert_eq!(migration_count(&fx).await, 2);

    // The schema works: the tables exist.
    s.ping().await.unwrap();
    assert_eq!(s.count_pending().await.unwrap(), 0);
    assert!(s.assistants().await.unwrap().is_empty());
}

/// A store made by a gateway that knew only version 1, with a held write in it: version
/// 2 is applied on top, the entry survives and has no signature.
async fn version_1_store_upgrades_to_2(fx: Fixture) {
    // Connecting creates the SQLite file (and nothing else).
    drop(fx.connect().await);
    let pool = fx.raw().await;
    let v1 = &store::MIGRATIONS[0];
    assert_eq!(v1.version, 1);
    let sql = match fx.backend {
        Backend::Sqlite => v1.sqlite,
        Backend::Postgres => v1.postgres,
    };
    sqlx::query(
        "CREATE TABLE hpki_schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for statement in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO hpki_schema_migrations (version, name, applied_at) VALUES (1, 'v1', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO pending_writes (id, state, route_path, method, path_and_query, headers, body, \
         assistant_id, assistant_name, card_sha256, created_at, expires_at, attempts) \
         VALUES ('p-old', 'pending', '/', 'POST', '/x', '[]', $1, 'a1', 'n', 'ab', $2, $3, 0)",
    )
    .bind(b"old=1".to_vec())
    .bind(T0)
    .bind(T0 + 600)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // A binary that needs version 2 refuses the old store until it is migrated.
    let err = store::open(&fx.url, &fx.base, false).await.err().unwrap();
    assert!(err.to_string().contains("store migrate"), "{err}");
    let report = fx.connect().await.migrate().await.unwrap();
    assert_eq!((report.from_version, report.to_version), (1, 2));
    assert_eq!(report.applied.len(), 1, "{:?}", report.applied);
    let s = fx.store().await;
    let old = s.pending("p-old").await.unwrap().unwrap();
    assert_eq!(old.body, b"old=1");
    assert_eq!(old.signature, None);
    assert!(claim_signed(&s, "p-old", "D1", Some(7), T0 + 1).await);
    assert_eq!(stored_signature(&s, "p-old").await, Some(signature(7)));
}

async fn unmigrated_store_is_refused_without_migrate(fx: Fixture) {
    let err = store::open(&fx.url, &fx.base, false)
        .await
        .err()
        .expect("an unmigrated store must be refused");
    assert!(
        matches!(err, StoreError::Unavailable(_)),
        "unexpected error {err:?}"
    );
    assert!(err.to_string().contains("store migrate"), "{err}");
    // Refusing did not create the schema behind our back.
    let s = fx.connect().await;
    assert!(s.check_schema().await.is_err());
    // Opening with migrate works, and after that migrate=false opens it too.
    fx.store().await;
    store::open(&fx.url, &fx.base, false).await.unwrap();
}

async fn newer_schema_is_refused(fx: Fixture) {
    fx.store().await;
    let pool = fx.raw().await;
    sqlx::query(
        "INSERT INTO hpki_schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    for migrate in [false, true] {
        match store::open(&fx.url, &fx.base, migrate).await {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (99, 2), "migrate={migrate}")
            }
            Err(e) => panic!("migrate={migrate}: expected SchemaTooNew, got {e:?}"),
            Ok(_) => panic!("migrate={migrate}: a schema from the future was accepted"),
        }
    }
    // Nothing was applied or removed by the refused migrate.
    assert_eq!(migration_count(&fx).await, 3);
}

async fn concurrent_migrations_apply_once(fx: Fixture) {
    let (a, b) = (fx.connect().await, fx.connect().await);
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { a.migrate().await }),
        tokio::spawn(async move { b.migrate().await })
    );
    let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
    assert_eq!(
        ra.applied.len() + rb.applied.len(),
        2,
        "each version is applied once, by one of them: {ra:?} {rb:?}"
    );
    assert_eq!(migration_count(&fx).await, 2);
    let s = fx.store().await;
    s.add_assistant(&assistant("a1", "花子"), OP).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------------------

async fn assistants_round_trip_and_ids_are_unique(fx: Fixture) {
    let s = fx.store().await;
    let mut a = assistant("a1", "神楽坂\u{3000}花子");
    a.name_romaji = "KAGURAZAKA Hanako".into();
    a.active_until = Some(T0 + 86_400 * 365);
    s.add_assistant(&a, OP).await.unwrap();
    assert_eq!(s.assistant("a1").await.unwrap(), Some(a.clone()));
    let got = s.assistant("a1").await.unwrap().unwrap();
    assert_eq!(got.name_kanji.as_bytes(), "神楽坂\u{3000}花子".as_bytes());

    let mut dup = assistant("a1", "別人");
    dup.facility = "other".into();
    let e = rejected(s.add_assistant(&dup, OP).await);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(s.assistant("a1").await.unwrap(), Some(a.clone()));

    rejected(s.add_assistant(&assistant(" ", "空"), OP).await);
    s.add_assistant(&assistant("a0", "一郎"), OP).await.unwrap();
    let ids: Vec<String> = s
        .assistants()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a0", "a1"]);
    assert_eq!(s.assistant("nobody").await.unwrap(), None);

    let changes = s.ledger_changes(0).await.unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes
        .iter()
        .all(|c| c.action == "assistant.add" && c.operator == OP));
    assert!(changes.iter().any(|c| c.subject == "a1"));
}

async fn cards_have_one_holder_and_a_history(fx: Fixture) {
    let s = fx.store().await;
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    s.add_assistant(&assistant("B", "乙"), OP).await.unwrap();
    let card = sha(0xAB);
    let (t1, t2) = (T0 + 100, T0 + 300);

    // Unknown assistant, malformed key.
    rejected(s.assign_card(&card, "nobody", T0 + 10, OP).await);
    rejected(
        s.assign_card(&CardKey::Sha256("xyz".into()), "A", T0 + 10, OP)
            .await,
    );

    s.assign_card(&card, "A", T0 + 10, "op-assign-A")
        .await
        .unwrap();
    // Held by A: B cannot have it, and A cannot get it twice.
    let e = rejected(s.assign_card(&card, "B", T0 + 20, OP).await);
    assert!(e.contains("\"A\""), "{e}");
    rejected(s.assign_card(&card, "A", T0 + 20, OP).await);

    // Upper-case hex names the same card.
    let upper = CardKey::Sha256("AB".repeat(32));
    let h = s
        .holder_at(std::slice::from_ref(&upper), t1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.assistant.id, "A");
    assert_eq!(h.card, card.encode());

    assert_eq!(
        s.release_card(&card, T0 + 200, "op-release").await.unwrap(),
        "A"
    );
    assert!(matches!(
        s.release_card(&card, T0 + 201, OP).await,
        Err(StoreError::NotFound(_))
    ));
    // History is not rewritten: B cannot get it from before A's release.
    rejected(s.assign_card(&card, "B", T0 + 150, OP).await);
    s.assign_card(&card, "B", T0 + 250, "op-assign-B")
        .await
        .unwrap();

    assert_eq!(
        s.holder_at(std::slice::from_ref(&card), t1)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "A"
    );
    assert_eq!(
        s.holder_at(std::slice::from_ref(&card), t2)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "B"
    );
    assert_eq!(
        s.holder_at(std::slice::from_ref(&card), T0 + 5)
            .await
            .unwrap(),
        None
    );
    // At the moment of release A no longer holds it; B not yet.
    assert_eq!(
        s.holder_at(std::slice::from_ref(&card), T0 + 200)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.holder_at(&[sha(0x01)], t2).await.unwrap(), None);
    assert_eq!(s.holder_at(&[], t2).await.unwrap(), None);

    let hist = s.card_history(Some(&card), None).await.unwrap();
    assert_eq!(hist.len(), 2, "{hist:?}");
    assert_eq!(hist[0].assistant_id, "A");
    assert_eq!(hist[0].assigned_from, T0 + 10);
    assert_eq!(hist[0].assigned_until, Some(T0 + 200));
    assert_eq!(hist[0].assigned_by, "op-assign-A");
    assert_eq!(hist[0].released_by.as_deref(), Some("op-release"));
    assert_eq!(hist[1].assistant_id, "B");
    assert_eq!(hist[1].assigned_until, None);
    assert_eq!(hist[1].released_by, None);
    assert_eq!(s.card_history(None, Some("B")).await.unwrap(), hist[1..]);
    assert_eq!(s.card_history(None, None).await.unwrap(), hist);
    assert!(s
        .card_history(Some(&sha(0x02)), None)
        .await
        .unwrap()
        .is_empty());

    // (assistant.add is recorded at the wall-clock time; the card changes at theirs.)
    let card_changes = |v: Vec<hpki_gateway::store::LedgerChange>| -> Vec<_> {
        v.into_iter()
            .filter(|c| c.action.starts_with("card."))
            .collect()
    };
    let changes = card_changes(s.ledger_changes(T0).await.unwrap());
    let summary: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| (c.action.as_str(), c.subject.as_str(), c.operator.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("card.assign", "A", "op-assign-A"),
            ("card.release", "A", "op-release"),
            ("card.assign", "B", "op-assign-B"),
        ]
    );
    assert!(changes.iter().all(|c| c.detail == card.encode()));
    assert_eq!(changes[1].at, T0 + 200);
    // ledger_changes(since) filters by time.
    assert_eq!(
        card_changes(s.ledger_changes(T0 + 201).await.unwrap()).len(),
        1
    );
}

async fn concurrent_assignments_give_one_holder(fx: Fixture) {
    let s = fx.store().await;
    let ids: Vec<String> = (0..6).map(|i| format!("A{i}")).collect();
    for id in &ids {
        s.add_assistant(&assistant(id, "同時"), OP).await.unwrap();
    }
    for round in 0..5u8 {
        let card = sha(0x70 + round);
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let (s, id, card) = (s.clone(), id.clone(), card.clone());
                tokio::spawn(async move {
                    let r = s.assign_card(&card, &id, T0 + 10, OP).await;
                    (id, r)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (id, r) = t.await.unwrap();
            match r {
                Ok(()) => winners.push(id),
                Err(StoreError::Rejected(e)) => assert!(e.contains(&card.encode()), "{e}"),
                Err(e) => panic!("round {round}, {id}: a lost race must be Rejected, got {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let h = s
            .holder_at(std::slice::from_ref(&card), T0 + 11)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h.assistant.id, winners[0]);
        assert_eq!(s.card_history(Some(&card), None).await.unwrap().len(), 1);
    }
}

async fn card_keys_by_issuer_and_serial(fx: Fixture) {
    let s = fx.store().await;
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    let issuer = "C=JP, O=Clinic Org CA";
    let key = CardKey::IssuerSerial {
        issuer: issuer.into(),
        serial: "00:1A:2B".into(),
    };
    s.assign_card(&key, "A", T0 + 10, OP).await.unwrap();
    // The certificate presents its serial differently; both its keys are looked up.
    let keys = CardKey::of_certificate(&"cd".repeat(32), issuer, "1a2b");
    let h = s.holder_at(&keys, T0 + 20).await.unwrap().unwrap();
    assert_eq!(h.assistant.id, "A");
    assert_eq!(h.card, format!("serial:1a2b@{issuer}"));
    // Another issuer with the same serial is another card.
    let other = CardKey::of_certificate(&"cd".repeat(32), "C=JP, O=Other CA", "1a2b");
    assert_eq!(s.holder_at(&other, T0 + 20).await.unwrap(), None);
    rejected(
        s.assign_card(
            &CardKey::IssuerSerial {
                issuer: " ".into(),
                serial: "01".into(),
            },
            "A",
            T0,
            OP,
        )
        .await,
    );
    assert_eq!(
        s.card_history(None, Some("A")).await.unwrap()[0].card,
        format!("serial:1a2b@{issuer}")
    );
}

async fn deactivation_releases_cards(fx: Fixture) {
    let s = fx.store().await;
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    s.add_assistant(&assistant("B", "乙"), OP).await.unwrap();
    let (c1, c2) = (sha(1), sha(2));
    s.assign_card(&c1, "A", T0 + 10, OP).await.unwrap();
    s.assign_card(&c2, "A", T0 + 10, OP).await.unwrap();

    s.deactivate_assistant("A", T0 + 100, "人事 佐藤")
        .await
        .unwrap();
    let a = s.assistant("A").await.unwrap().unwrap();
    assert_eq!(a.active_until, Some(T0 + 100));
    assert!(!a.is_active(T0 + 100));

    assert_eq!(
        s.holder_at(std::slice::from_ref(&c1), T0 + 50)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "A"
    );
    assert_eq!(
        s.holder_at(std::slice::from_ref(&c1), T0 + 150)
            .await
            .unwrap(),
        None
    );
    let hist = s.card_history(None, Some("A")).await.unwrap();
    assert_eq!(hist.len(), 2);
    for h in &hist {
        assert_eq!(h.assigned_until, Some(T0 + 100), "{h:?}");
        assert_eq!(h.released_by.as_deref(), Some("人事 佐藤"));
    }
    // Released: B can take a card, A cannot get one back, nor be deactivated twice.
    s.assign_card(&c1, "B", T0 + 120, OP).await.unwrap();
    assert_eq!(
        s.holder_at(std::slice::from_ref(&c1), T0 + 150)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "B"
    );
    rejected(s.assign_card(&c2, "A", T0 + 130, OP).await);
    rejected(s.deactivate_assistant("A", T0 + 140, OP).await);
    assert!(matches!(
        s.deactivate_assistant("nobody", T0, OP).await,
        Err(StoreError::NotFound(_))
    ));

    let change = s
        .ledger_changes(0)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.action == "assistant.deactivate")
        .expect("deactivation recorded");
    assert_eq!(change.operator, "人事 佐藤");
    assert_eq!(change.subject, "A");
    assert!(change.detail.starts_with("2 "), "{}", change.detail);
}

async fn supervisors_come_and_go(fx: Fixture) {
    let s = fx.store().await;
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    s.add_assistant(&assistant("B", "乙"), OP).await.unwrap();
    let (d1, d2) = (doctor("D1"), doctor("D2"));
    s.add_supervisor("A", &d1, T0 + 1, "op-1").await.unwrap();
    s.add_supervisor("A", &d2, T0 + 2, "op-1").await.unwrap();
    s.add_supervisor("B", &d1, T0 + 3, "op-1").await.unwrap();
    rejected(s.add_supervisor("A", &d1, T0 + 4, OP).await);
    rejected(s.add_supervisor("nobody", &d1, T0 + 4, OP).await);
    rejected(
        s.add_supervisor(
            "A",
            &DoctorRef {
                hpki_id: "".into(),
                issuer: "x".into(),
            },
            T0 + 4,
            OP,
        )
        .await,
    );
    // Same HPKI id from another issuer is another doctor.
    let d1_other = DoctorRef {
        hpki_id: "D1".into(),
        issuer: "C=JP, O=Other".into(),
    };
    assert!(s.supervised_by(&d1_other).await.unwrap().is_empty());

    assert_eq!(s.supervisors("A").await.unwrap(), [d1.clone(), d2.clone()]);
    assert_eq!(s.supervised_by(&d1).await.unwrap(), ["A", "B"]);

    // The card holder comes with their supervisors.
    s.assign_card(&sha(9), "A", T0 + 5, OP).await.unwrap();
    let h = s.holder_at(&[sha(9)], T0 + 6).await.unwrap().unwrap();
    assert_eq!(h.supervisors, [d1.clone(), d2.clone()]);

    s.remove_supervisor("A", &d1, T0 + 10, "op-2")
        .await
        .unwrap();
    assert!(matches!(
        s.remove_supervisor("A", &d1, T0 + 11, "op-2").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.supervisors("A").await.unwrap(), vec![d2.clone()]);
    assert_eq!(s.supervised_by(&d1).await.unwrap(), ["B"]);
    let hist = s.supervision_history("A").await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].doctor, d1);
    assert_eq!(hist[0].added_by, "op-1");
    assert_eq!(hist[0].removed_at, Some(T0 + 10));
    assert_eq!(hist[0].removed_by.as_deref(), Some("op-2"));
    assert_eq!(hist[1].removed_at, None);
    // Removed, then added again: a new period.
    s.add_supervisor("A", &d1, T0 + 20, "op-3").await.unwrap();
    assert_eq!(s.supervision_history("A").await.unwrap().len(), 3);
    assert_eq!(s.supervisors("A").await.unwrap().len(), 2);

    let sup: Vec<(String, String, String)> = s
        .ledger_changes(T0)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.action.starts_with("supervisor."))
        .map(|c| (c.action, c.subject, c.operator))
        .collect();
    let expect = |a: &str, s: &str, o: &str| (a.to_owned(), s.to_owned(), o.to_owned());
    assert_eq!(
        sup,
        [
            expect("supervisor.add", "A", "op-1"),
            expect("supervisor.add", "A", "op-1"),
            expect("supervisor.add", "B", "op-1"),
            expect("supervisor.remove", "A", "op-2"),
            expect("supervisor.add", "A", "op-3"),
        ]
    );
}

async fn two_holders_of_one_certificate_are_refused(fx: Fixture) {
    let s = fx.store().await;
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    s.add_assistant(&assistant("B", "乙"), OP).await.unwrap();
    let sha_hex = "ef".repeat(32);
    let issuer = "C=JP, O=Clinic Org CA";
    s.assign_card(&CardKey::Sha256(sha_hex.clone()), "A", T0 + 10, OP)
        .await
        .unwrap();
    s.assign_card(
        &CardKey::IssuerSerial {
            issuer: issuer.into(),
            serial: "77".into(),
        },
        "B",
        T0 + 10,
        OP,
    )
    .await
    .unwrap();
    let keys = CardKey::of_certificate(&sha_hex, issuer, "77");
    let e = rejected(s.holder_at(&keys, T0 + 20).await);
    assert!(e.contains("two holders"), "{e}");
    // One key alone is unambiguous.
    assert_eq!(
        s.holder_at(&keys[..1], T0 + 20)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "A"
    );
    assert_eq!(
        s.holder_at(&keys[1..], T0 + 20)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "B"
    );
    // Both keys recorded for the same assistant is fine.
    s.release_card(&keys[1], T0 + 30, OP).await.unwrap();
    s.assign_card(&keys[1], "A", T0 + 40, OP).await.unwrap();
    assert_eq!(
        s.holder_at(&keys, T0 + 50)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "A"
    );
}

fn ledger_row(line: usize, id: &str, kanji: &str, cards: Vec<CardKey>, docs: &[&str]) -> LedgerRow {
    LedgerRow {
        line,
        assistant: assistant(id, kanji),
        cards,
        supervisors: docs.iter().map(|d| doctor(d)).collect(),
    }
}

async fn import_commits_a_good_ledger(fx: Fixture) {
    let s = fx.store().await;
    let rows = vec![
        ledger_row(
            2,
            "I1",
            "神楽坂\u{3000}花子",
            vec![sha(0x11)],
            &["D1", "D2"],
        ),
        ledger_row(
            3,
            "I2",
            "早稲田\u{3000}次郎",
            vec![sha(0x12), sha(0x13)],
            &["D1"],
        ),
    ];
    let r = s
        .import_ledger(&rows, T0 + 100, "csv-import", false)
        .await
        .unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.committed);
    assert_eq!(
        (
            r.assistants_added,
            r.assistants_updated,
            r.cards_assigned,
            r.supervisors_added
        ),
        (2, 0, 3, 3)
    );
    assert_eq!(
        s.assistant("I1").await.unwrap(),
        Some(rows[0].assistant.clone())
    );
    let h = s.holder_at(&[sha(0x13)], T0 + 101).await.unwrap().unwrap();
    assert_eq!(h.assistant.id, "I2");
    assert_eq!(h.supervisors, [doctor("D1")]);
    assert_eq!(s.supervised_by(&doctor("D1")).await.unwrap(), ["I1", "I2"]);
    let changes = s.ledger_changes(0).await.unwrap();
    assert_eq!(changes.len(), 2 + 3 + 3, "{changes:?}");
    assert!(changes.iter().all(|c| c.operator == "csv-import"));

    // The same ledger again changes nothing; an edited name is an update.
    let r = s
        .import_ledger(&rows, T0 + 200, "csv-import", false)
        .await
        .unwrap();
    assert!(r.committed && r.problems.is_empty(), "{r:?}");
    assert_eq!(
        (
            r.assistants_added,
            r.assistants_updated,
            r.cards_assigned,
            r.supervisors_added
        ),
        (0, 0, 0, 0)
    );
    let mut edited = rows.clone();
    edited[1].assistant.name_kanji = "早稲田\u{3000}二郎".into();
    let r = s
        .import_ledger(&edited, T0 + 300, "csv-import-2", false)
        .await
        .unwrap();
    assert_eq!((r.assistants_added, r.assistants_updated), (0, 1), "{r:?}");
    assert_eq!(
        s.assistant("I2").await.unwrap().unwrap().name_kanji,
        "早稲田\u{3000}二郎"
    );
    assert_eq!(s.ledger_changes(0).await.unwrap().len(), 2 + 3 + 3 + 1);
}

async fn import_dry_run_changes_nothing(fx: Fixture) {
    let s = fx.store().await;
    let rows = vec![
        ledger_row(2, "I1", "花子", vec![sha(0x11)], &["D1"]),
        ledger_row(3, "I2", "次郎", vec![sha(0x12)], &[]),
    ];
    let r = s.import_ledger(&rows, T0, "csv", true).await.unwrap();
    assert!(!r.committed);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // The report says what would have happened ...
    assert_eq!(
        (r.assistants_added, r.cards_assigned, r.supervisors_added),
        (2, 2, 1)
    );
    // ... and nothing did.
    assert!(s.assistants().await.unwrap().is_empty());
    assert!(s.card_history(None, None).await.unwrap().is_empty());
    assert!(s.supervised_by(&doctor("D1")).await.unwrap().is_empty());
    assert!(s.ledger_changes(0).await.unwrap().is_empty());
    // And the real import afterwards goes through.
    assert!(
        s.import_ledger(&rows, T0, "csv", false)
            .await
            .unwrap()
            .committed
    );
    assert_eq!(s.assistants().await.unwrap().len(), 2);
}

async fn import_with_a_bad_row_commits_nothing(fx: Fixture) {
    let s = fx.store().await;
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    s.assign_card(&sha(0x50), "A", T0, OP).await.unwrap();
    let before = s.ledger_changes(0).await.unwrap().len();

    let rows = vec![
        ledger_row(2, "I1", "花子", vec![sha(0x11)], &["D1"]),
        // Card already held by A.
        ledger_row(5, "I2", "次郎", vec![sha(0x50)], &[]),
        ledger_row(6, "I3", "三郎", vec![sha(0x13)], &[]),
        // Not a card key.
        ledger_row(9, "I4", "四郎", vec![CardKey::Sha256("zz".into())], &[]),
        // The same card as line 2.
        ledger_row(11, "I5", "五郎", vec![sha(0x11)], &[]),
        // A supervisor without an id.
        ledger_row(12, "I6", "六郎", vec![], &[""]),
    ];
    let r = s
        .import_ledger(&rows, T0 + 100, "csv", false)
        .await
        .unwrap();
    assert!(!r.committed);
    let lines: Vec<usize> = r.problems.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [5, 9, 11, 12], "{:?}", r.problems);
    assert!(r.problems[0].1.contains("\"A\""), "{:?}", r.problems[0]);

    // Nothing of the good rows either.
    for id in ["I1", "I2", "I3", "I4", "I5", "I6"] {
        assert_eq!(s.assistant(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(s.holder_at(&[sha(0x11)], T0 + 200).await.unwrap(), None);
    assert_eq!(
        s.holder_at(&[sha(0x50)], T0 + 200)
            .await
            .unwrap()
            .unwrap()
            .assistant
            .id,
        "A"
    );
    assert_eq!(s.ledger_changes(0).await.unwrap().len(), before);
    assert!(s.supervised_by(&doctor("D1")).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Held writes
// ---------------------------------------------------------------------------------------

async fn pending_round_trips_bytes_and_headers(fx: Fixture) {
    let s = fx.store().await;
    let p = new_pending("p-1", T0, T0 + 600);
    s.insert_pending(&p).await.unwrap();
    let got = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Pending);
    assert_eq!(got.id, p.id);
    assert_eq!(got.route_path, p.route_path);
    assert_eq!(got.request_host, p.request_host);
    assert_eq!(got.method, p.method);
    assert_eq!(got.path_and_query, p.path_and_query);
    assert_eq!(got.headers, p.headers);
    assert_eq!(got.body, p.body);
    assert_eq!(got.assistant_id, p.assistant_id);
    assert_eq!(got.assistant_name, "神楽坂\u{3000}花子");
    assert_eq!(got.card_sha256, p.card_sha256);
    assert_eq!((got.created_at, got.expires_at), (T0, T0 + 600));
    assert_eq!(got.attempts, 0);
    assert_eq!(got.confirmer, None);
    assert_eq!(got.lease_until, None);
    assert_eq!(got.upstream_body, None);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));

    // No host, empty body, every byte value.
    let mut q = new_pending("p-2", T0 + 1, T0 + 600);
    q.request_host = None;
    q.body = (0..=255u8).collect();
    q.headers.clear();
    s.insert_pending(&q).await.unwrap();
    let got = s.pending("p-2").await.unwrap().unwrap();
    assert_eq!(got.request_host, None);
    assert_eq!(got.body, q.body);
    assert!(got.headers.is_empty());
    let mut e = new_pending("p-3", T0 + 2, T0 + 600);
    e.body.clear();
    e.assistant_id = "other".into();
    s.insert_pending(&e).await.unwrap();
    assert!(s.pending("p-3").await.unwrap().unwrap().body.is_empty());

    // The same id twice is refused.
    assert!(s.insert_pending(&p).await.is_err());
    assert_eq!(s.pending("nope").await.unwrap(), None);
    assert_eq!(s.count_pending().await.unwrap(), 3);

    // pending_of: these assistants' entries, newest first, at most `limit`.
    let ids = |v: Vec<hpki_gateway::store::PendingWrite>| -> Vec<String> {
        v.into_iter().map(|p| p.id).collect()
    };
    let a1 = vec!["a1".to_owned()];
    assert_eq!(ids(s.pending_of(&a1, 10).await.unwrap()), ["p-2", "p-1"]);
    assert_eq!(ids(s.pending_of(&a1, 1).await.unwrap()), ["p-2"]);
    let both = vec!["a1".to_owned(), "other".to_owned()];
    assert_eq!(
        ids(s.pending_of(&both, 10).await.unwrap()),
        ["p-3", "p-2", "p-1"]
    );
    assert!(s.pending_of(&[], 10).await.unwrap().is_empty());
}

async fn claim_is_exclusive(fx: Fixture) {
    let s = fx.store().await;
    s.insert_pending(&new_pending("p-1", T0, T0 + 600))
        .await
        .unwrap();
    let (d1, d2) = (confirmer("D1"), confirmer("D2"));
    assert!(s
        .claim_for_forwarding("p-1", &d1, None, T0 + 10, T0 + 70)
        .await
        .unwrap());
    assert!(!s
        .claim_for_forwarding("p-1", &d2, None, T0 + 11, T0 + 71)
        .await
        .unwrap());
    assert!(!s
        .claim_for_forwarding("p-1", &d1, None, T0 + 12, T0 + 72)
        .await
        .unwrap());
    assert!(!s
        .claim_for_forwarding("nope", &d1, None, T0 + 12, T0 + 72)
        .await
        .unwrap());
    let got = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Forwarding);
    assert_eq!(got.confirmer, Some(d1));
    assert_eq!(got.decided_at, Some(T0 + 10));
    assert_eq!(got.lease_until, Some(T0 + 70));
    assert_eq!(got.attempts, 1);
    assert_eq!(s.count_pending().await.unwrap(), 0);
}

async fn concurrent_claims_have_one_winner(fx: Fixture) {
    let s = fx.store().await;
    for round in 0..3 {
        let id = format!("p-{round}");
        s.insert_pending(&new_pending(&id, T0, T0 + 600))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (s, id) = (s.clone(), id.clone());
                tokio::spawn(async move {
                    let won = s
                        .claim_for_forwarding(
                            &id,
                            &confirmer(&format!("D{i}")),
                            None,
                            T0 + 10,
                            T0 + 70,
                        )
                        .await
                        .unwrap();
                    (i, won)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, won) = t.await.unwrap();
            if won {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let got = s.pending(&id).await.unwrap().unwrap();
        assert_eq!(got.state, PendingState::Forwarding);
        assert_eq!(got.attempts, 1);
        assert_eq!(
            got.confirmer.map(|c| c.hpki_id),
            Some(format!("D{}", winners[0]))
        );
    }
}

async fn delivered_forward_is_final(fx: Fixture) {
    let s = fx.store().await;
    s.insert_pending(&new_pending("p-1", T0, T0 + 600))
        .await
        .unwrap();
    // Finishing an entry nobody claimed changes nothing.
    let delivered = ForwardOutcome::Delivered {
        status: 201,
        content_type: Some("application/fhir+json".into()),
        body: vec![b'{', 0xff, 0x00, b'}'],
    };
    s.finish_forwarding("p-1", &delivered, T0 + 5)
        .await
        .unwrap();
    assert_eq!(state(&s, "p-1").await, PendingState::Pending);

    assert!(s
        .claim_for_forwarding("p-1", &confirmer("D1"), None, T0 + 10, T0 + 70)
        .await
        .unwrap());
    s.finish_forwarding("p-1", &delivered, T0 + 20)
        .await
        .unwrap();
    let got = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Forwarded);
    assert_eq!(got.upstream_status, Some(201));
    assert_eq!(
        got.upstream_content_type.as_deref(),
        Some("application/fhir+json")
    );
    assert_eq!(got.upstream_body, Some(vec![b'{', 0xff, 0x00, b'}']));
    assert_eq!(got.forwarded_at, Some(T0 + 20));
    assert_eq!(got.lease_until, None);
    assert_eq!(got.last_error, None);
    assert_eq!(got.attempts, 1);

    // Final: no second claim, no reject, no second finish.
    assert!(!s
        .claim_for_forwarding("p-1", &confirmer("D2"), None, T0 + 30, T0 + 90)
        .await
        .unwrap());
    assert!(!s
        .reject_pending("p-1", &confirmer("D2"), "late", T0 + 30)
        .await
        .unwrap());
    let failed = ForwardOutcome::Failed {
        error: "boom".into(),
        status: None,
        body: vec![],
    };
    s.finish_forwarding("p-1", &failed, T0 + 40).await.unwrap();
    let again = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(again.state, PendingState::Forwarded);
    assert_eq!(again.forwarded_at, Some(T0 + 20));
    assert_eq!(again.last_error, None);
    assert!(s
        .reclaim_forwarding(T0 + 10_000, T0 + 10_060)
        .await
        .unwrap()
        .is_empty());
}

async fn failed_forward_is_retryable(fx: Fixture) {
    let s = fx.store().await;
    s.insert_pending(&new_pending("p-1", T0, T0 + 600))
        .await
        .unwrap();
    assert!(s
        .claim_for_forwarding("p-1", &confirmer("D1"), None, T0 + 10, T0 + 70)
        .await
        .unwrap());
    let failed = ForwardOutcome::Failed {
        error: "upstream answered 503".into(),
        status: Some(503),
        body: b"busy \xe3\x81".to_vec(),
    };
    s.finish_forwarding("p-1", &failed, T0 + 20).await.unwrap();
    let got = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Failed);
    assert!(got.state.confirmable());
    assert_eq!(got.last_error.as_deref(), Some("upstream answered 503"));
    assert_eq!(got.upstream_status, Some(503));
    assert_eq!(got.upstream_body, Some(b"busy \xe3\x81".to_vec()));
    assert_eq!(got.lease_until, None);
    assert_eq!(got.attempts, 1);

    // Retry, by another supervising doctor.
    assert!(s
        .claim_for_forwarding("p-1", &confirmer("D2"), None, T0 + 30, T0 + 90)
        .await
        .unwrap());
    assert!(!s
        .claim_for_forwarding("p-1", &confirmer("D3"), None, T0 + 31, T0 + 91)
        .await
        .unwrap());
    let got = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Forwarding);
    assert_eq!(got.attempts, 2);
    assert_eq!(got.last_error, None, "a new attempt clears the old error");
    assert_eq!(got.confirmer.map(|c| c.hpki_id).as_deref(), Some("D2"));

    s.finish_forwarding(
        "p-1",
        &ForwardOutcome::Delivered {
            status: 200,
            content_type: None,
            body: b"ok".to_vec(),
        },
        T0 + 40,
    )
    .await
    .unwrap();
    let got = s.pending("p-1").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Forwarded);
    assert_eq!(got.upstream_status, Some(200));
    assert_eq!(got.upstream_content_type, None);
    assert_eq!(got.attempts, 2);
}

async fn reject_only_from_pending_or_failed(fx: Fixture) {
    let s = fx.store().await;
    let d = confirmer("D1");
    for id in ["pending", "failed", "forwarding", "forwarded", "late"] {
        s.insert_pending(&new_pending(id, T0, T0 + 600))
            .await
            .unwrap();
    }
    for id in ["failed", "forwarding", "forwarded"] {
        assert!(s
            .claim_for_forwarding(id, &d, None, T0 + 1, T0 + 61)
            .await
            .unwrap());
    }
    let fail = ForwardOutcome::Failed {
        error: "refused".into(),
        status: None,
        body: vec![],
    };
    s.finish_forwarding("failed", &fail, T0 + 2).await.unwrap();
    let ok = ForwardOutcome::Delivered {
        status: 204,
        content_type: None,
        body: vec![],
    };
    s.finish_forwarding("forwarded", &ok, T0 + 2).await.unwrap();

    assert!(s
        .reject_pending("pending", &d, "二重登録", T0 + 3)
        .await
        .unwrap());
    assert!(s
        .reject_pending("failed", &d, "give up", T0 + 3)
        .await
        .unwrap());
    assert!(!s
        .reject_pending("forwarding", &d, "x", T0 + 3)
        .await
        .unwrap());
    assert!(!s
        .reject_pending("forwarded", &d, "x", T0 + 3)
        .await
        .unwrap());
    assert!(!s.reject_pending("late", &d, "x", T0 + 600).await.unwrap());
    assert!(!s
        .reject_pending("pending", &d, "again", T0 + 4)
        .await
        .unwrap());
    assert!(!s.reject_pending("nope", &d, "x", T0 + 4).await.unwrap());

    let got = s.pending("pending").await.unwrap().unwrap();
    assert_eq!(got.state, PendingState::Rejected);
    assert_eq!(got.reject_reason.as_deref(), Some("二重登録"));
    assert_eq!(got.confirmer, Some(d.clone()));
    assert_eq!(got.decided_at, Some(T0 + 3));
    assert_eq!(state(&s, "failed").await, PendingState::Rejected);
    assert_eq!(state(&s, "forwarding").await, PendingState::Forwarding);
    assert_eq!(state(&s, "forwarded").await, PendingState::Forwarded);
    assert_eq!(state(&s, "late").await, PendingState::Pending);
    // A rejected entry cannot be claimed.
    assert!(!s
        .claim_for_forwarding("pending", &d, None, T0 + 5, T0 + 65)
        .await
        .unwrap());
}

async fn expiry(fx: Fixture) {
    let s = fx.store().await;
    s.insert_pending(&new_pending("soon", T0, T0 + 10))
        .await
        .unwrap();
    s.insert_pending(&new_pending("later", T0, T0 + 100))
        .await
        .unwrap();
    s.insert_pending(&new_pending("claimed", T0, T0 + 10))
        .await
        .unwrap();
    let d = confirmer("D1");
    assert!(s
        .claim_for_forwarding("claimed", &d, None, T0 + 1, T0 + 61)
        .await
        .unwrap());

    assert_eq!(s.expire_pending(T0 + 9).await.unwrap(), 0);
    assert_eq!(s.expire_pending(T0 + 50).await.unwrap(), 1);
    assert_eq!(state(&s, "soon").await, PendingState::Expired);
    assert_eq!(state(&s, "later").await, PendingState::Pending);
    assert_eq!(state(&s, "claimed").await, PendingState::Forwarding);
    assert_eq!(s.count_pending().await.unwrap(), 1);
    assert_eq!(s.expire_pending(T0 + 50).await.unwrap(), 0);
    assert!(!s
        .claim_for_forwarding("soon", &d, None, T0 + 51, T0 + 111)
        .await
        .unwrap());
    assert!(!s.reject_pending("soon", &d, "x", T0 + 51).await.unwrap());
    assert_eq!(state(&s, "soon").await, PendingState::Expired);

    // Past its expiry but not yet swept: still not claimable.
    assert!(!s
        .claim_for_forwarding("later", &d, None, T0 + 100, T0 + 160)
        .await
        .unwrap());
    assert!(s
        .claim_for_forwarding("later", &d, None, T0 + 99, T0 + 159)
        .await
        .unwrap());
}

async fn reclaim_takes_only_lapsed_leases(fx: Fixture) {
    let s = fx.store().await;
    s.insert_pending(&new_pending("lapsed", T0, T0 + 600))
        .await
        .unwrap();
    s.insert_pending(&new_pending("leased", T0, T0 + 600))
        .await
        .unwrap();
    s.insert_pending(&new_pending("waiting", T0, T0 + 600))
        .await
        .unwrap();
    let d = confirmer("D1");
    assert!(s
        .claim_for_forwarding("lapsed", &d, None, T0 + 1, T0 + 30)
        .await
        .unwrap());
    assert!(s
        .claim_for_forwarding("leased", &d, None, T0 + 1, T0 + 300)
        .await
        .unwrap());

    assert!(s
        .reclaim_forwarding(T0 + 29, T0 + 89)
        .await
        .unwrap()
        .is_empty());
    let got = s.reclaim_forwarding(T0 + 30, T0 + 90).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, "lapsed");
    assert_eq!(got[0].state, PendingState::Forwarding);
    assert_eq!(got[0].lease_until, Some(T0 + 90));
    assert_eq!(got[0].attempts, 2);
    // The original confirmer is kept, to forward again with the same confirmation.
    assert_eq!(got[0].confirmer, Some(d.clone()));
    // The new lease protects it.
    assert!(s
        .reclaim_forwarding(T0 + 31, T0 + 91)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(state(&s, "waiting").await, PendingState::Pending);
    let leased = s.pending("leased").await.unwrap().unwrap();
    assert_eq!((leased.lease_until, leased.attempts), (Some(T0 + 300), 1));
}

async fn concurrent_reclaims_take_each_entry_once(fx: Fixture) {
    let s = fx.store().await;
    let d = confirmer("D1");
    let lapsed: Vec<String> = (0..6).map(|i| format!("lapsed-{i}")).collect();
    for id in &lapsed {
        s.insert_pending(&new_pending(id, T0, T0 + 600))
            .await
            .unwrap();
        assert!(s
            .claim_for_forwarding(id, &d, None, T0 + 1, T0 + 30)
            .await
            .unwrap());
    }
    s.insert_pending(&new_pending("leased", T0, T0 + 600))
        .await
        .unwrap();
    assert!(s
        .claim_for_forwarding("leased", &d, None, T0 + 1, T0 + 300)
        .await
        .unwrap());

    for round in 0..3i64 {
        // Each round, the leases taken in the previous one have lapsed again.
        let now = T0 + 100 + round * 100;
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.reclaim_forwarding(now, now + 60).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for r in racers {
            seen.extend(r.await.unwrap().into_iter().map(|p| p.id));
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "round {round}: an entry twice: {seen:?}"
        );
        // Every lapsed lease, and the long one only once it has lapsed too.
        let mut expected: HashSet<String> = lapsed.iter().cloned().collect();
        if now >= T0 + 300 {
            expected.insert("leased".into());
        }
        assert_eq!(unique, expected, "round {round}");
    }
    for id in &lapsed {
        let p = s.pending(id).await.unwrap().unwrap();
        assert_eq!(p.attempts, 4, "{id}: one claim and three reclaims");
        assert_eq!(p.lease_until, Some(T0 + 300 + 60));
    }
}

// ---------------------------------------------------------------------------------------
// Emergency access
// ---------------------------------------------------------------------------------------

async fn emergency_window_and_end(fx: Fixture) {
    let s = fx.store().await;
    let cert = "9a".repeat(32);
    let g = grant("e-1", &cert, T0, T0 + 3600);
    s.insert_emergency(&g).await.unwrap();
    assert!(s.insert_emergency(&g).await.is_err(), "same id twice");

    assert_eq!(
        s.active_emergency(&cert, T0).await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(
        s.active_emergency(&cert, T0 + 3599).await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(s.active_emergency(&cert, T0 - 1).await.unwrap(), None);
    assert_eq!(s.active_emergency(&cert, T0 + 3600).await.unwrap(), None);
    assert_eq!(
        s.active_emergency(&"00".repeat(32), T0 + 1).await.unwrap(),
        None
    );

    // Only the certificate that started it can end it.
    assert!(!s
        .end_emergency("e-1", &"00".repeat(32), T0 + 60)
        .await
        .unwrap());
    assert!(s.active_emergency(&cert, T0 + 61).await.unwrap().is_some());
    assert!(s.end_emergency("e-1", &cert, T0 + 120).await.unwrap());
    assert!(!s.end_emergency("e-1", &cert, T0 + 121).await.unwrap());
    assert_eq!(s.active_emergency(&cert, T0 + 130).await.unwrap(), None);
    let listed = s.emergencies(0, false).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].ended_at, Some(T0 + 120));

    // An expired grant cannot be ended any more; a new one is active on its own.
    let g2 = grant("e-2", &cert, T0 + 4000, T0 + 4100);
    s.insert_emergency(&g2).await.unwrap();
    assert!(!s.end_emergency("e-2", &cert, T0 + 4100).await.unwrap());
    assert_eq!(
        s.active_emergency(&cert, T0 + 4050)
            .await
            .unwrap()
            .map(|g| g.id),
        Some("e-2".into())
    );
}

async fn emergency_listing_and_followup(fx: Fixture) {
    let s = fx.store().await;
    let cert = "9b".repeat(32);
    let mut g3 = grant("e-3", &cert, T0 + 300, T0 + 400);
    g3.patient_ref = None;
    for g in [
        grant("e-1", &cert, T0 + 100, T0 + 200),
        grant("e-2", &cert, T0 + 200, T0 + 300),
        g3.clone(),
    ] {
        s.insert_emergency(&g).await.unwrap();
    }
    let ids = |v: Vec<EmergencyGrant>| -> Vec<String> { v.into_iter().map(|g| g.id).collect() };
    assert_eq!(
        ids(s.emergencies(0, false).await.unwrap()),
        ["e-1", "e-2", "e-3"]
    );
    assert_eq!(
        ids(s.emergencies(T0 + 200, false).await.unwrap()),
        ["e-2", "e-3"]
    );
    assert_eq!(
        ids(s.emergencies(T0 + 301, false).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(s.emergencies(0, false).await.unwrap()[2], g3);

    assert!(s
        .emergency_followup("e-2", "consent-desk", "同意書 受領", T0 + 1000)
        .await
        .unwrap());
    assert!(!s
        .emergency_followup("e-2", "someone-else", "again", T0 + 2000)
        .await
        .unwrap());
    assert!(!s.emergency_followup("e-404", "x", "y", T0).await.unwrap());
    assert_eq!(ids(s.emergencies(0, true).await.unwrap()), ["e-1", "e-3"]);
    let e2 = s
        .emergencies(0, false)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id == "e-2")
        .unwrap();
    assert_eq!(e2.followup_at, Some(T0 + 1000));
    assert_eq!(e2.followup_by.as_deref(), Some("consent-desk"));
    assert_eq!(e2.followup_note.as_deref(), Some("同意書 受領"));
}

// ---------------------------------------------------------------------------------------
// Shared settings
// ---------------------------------------------------------------------------------------

async fn shared_setting_first_value_wins(fx: Fixture) {
    let s = fx.store().await;
    assert_eq!(s.shared_setting("cookie-key", "v1").await.unwrap(), "v1");
    assert_eq!(s.shared_setting("cookie-key", "v2").await.unwrap(), "v1");
    assert_eq!(s.shared_setting("other", "値").await.unwrap(), "値");

    // Several gateways starting at once agree on one value.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.shared_setting("race", &format!("r{i}")).await.unwrap() })
        })
        .collect();
    let mut values = HashSet::new();
    for t in tasks {
        values.insert(t.await.unwrap());
    }
    assert_eq!(values.len(), 1, "{values:?}");
    // A second connection (another gateway) sees the same.
    let other = fx.connect().await;
    assert_eq!(
        other.shared_setting("cookie-key", "v3").await.unwrap(),
        "v1"
    );
}

/// A holder whose `active_until` has passed (set by an import, not by `deactivate`)
/// holds nothing: nobody is the card's holder after that, and the card can be given to
/// someone else without a manual release; the history shows when the holding ended.
async fn an_ended_holder_gives_up_the_card(fx: Fixture) {
    let s = fx.store().await;
    let card = sha(0xE1);
    s.add_assistant(&assistant("A", "甲"), OP).await.unwrap();
    s.add_assistant(&assistant("B", "乙"), OP).await.unwrap();
    s.assign_card(&card, "A", T0 + 10, OP).await.unwrap();
    let mut ended = assistant("A", "甲");
    ended.active_until = Some(T0 + 50);
    let mut row = ledger_row(2, "A", "甲", vec![], &[]);
    row.assistant = ended;
    let report = s
        .import_ledger(&[row], T0 + 40, "csv", false)
        .await
        .unwrap();
    assert!(report.committed, "{report:?}");
    assert_eq!(
        s.holder_at(std::slice::from_ref(&card), T0 + 30)
            .await
            .unwrap()
            .map(|h| h.assistant.id),
        Some("A".into())
    );
    assert!(s
        .holder_at(std::slice::from_ref(&card), T0 + 70)
        .await
        .unwrap()
        .is_none());
    s.assign_card(&card, "B", T0 + 80, OP).await.unwrap();
    let history = s.card_history(Some(&card), None).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].assistant_id, "A");
    assert_eq!(history[0].assigned_until, Some(T0 + 50));
    assert_eq!(history[1].assistant_id, "B");
    assert_eq!(history[1].assigned_until, None);
}

/// The doctor's signature is written by the claim itself, survives a crash (a reclaimed
/// entry carries it), and a later claim replaces or clears it.
/// Claims `id` for `doctor` with signature `n` (None: unsigned); whether it won.
async fn claim_signed(s: &Arc<dyn Store>, id: &str, doctor: &str, n: Option<u8>, now: i64) -> bool {
    let signature = n.map(signature);
    s.claim_for_forwarding(id, &confirmer(doctor), signature.as_ref(), now, now + 29)
        .await
        .unwrap()
}

async fn stored_signature(s: &Arc<dyn Store>, id: &str) -> Option<ConfirmationSignature> {
    s.pending(id).await.unwrap().unwrap().signature
}

async fn delivery_failed(s: &Arc<dyn Store>, id: &str, now: i64) {
    let outcome = ForwardOutcome::Failed {
        error: "down".into(),
        status: None,
        body: Vec::new(),
    };
    s.finish_forwarding(id, &outcome, now).await.unwrap();
}

/// The doctor's signature is written by the claim itself, survives a crash (a reclaimed
/// entry carries it), and a later claim replaces or clears it.
async fn a_signature_is_stored_with_its_claim(fx: Fixture) {
    let s = fx.store().await;
    s.insert_pending(&new_pending("p-1", T0, T0 + 600))
        .await
        .unwrap();
    assert_eq!(stored_signature(&s, "p-1").await, None);
    assert!(claim_signed(&s, "p-1", "D1", Some(1), T0 + 1).await);
    assert_eq!(stored_signature(&s, "p-1").await, Some(signature(1)));
    // A losing claim writes nothing.
    assert!(!claim_signed(&s, "p-1", "D2", Some(2), T0 + 2).await);
    // The gateway died: another reclaims the entry, signature and all.
    let reclaimed = s.reclaim_forwarding(T0 + 31, T0 + 90).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].signature, Some(signature(1)));
    // Delivery failed (the outcome keeps the signature); a retry signed by another
    // doctor replaces it...
    delivery_failed(&s, "p-1", T0 + 40).await;
    assert_eq!(stored_signature(&s, "p-1").await, Some(signature(1)));
    assert!(claim_signed(&s, "p-1", "D2", Some(2), T0 + 41).await);
    assert_eq!(stored_signature(&s, "p-1").await, Some(signature(2)));
    // ...and an unsigned one clears it: a signature always belongs to its claim.
    delivery_failed(&s, "p-1", T0 + 50).await;
    assert!(claim_signed(&s, "p-1", "D3", None, T0 + 51).await);
    assert_eq!(stored_signature(&s, "p-1").await, None);
}
