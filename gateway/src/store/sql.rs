//! The SQL implementation of [`Store`], for SQLite and PostgreSQL through sqlx's `Any`
//! driver. Queries use `$n` placeholders, which both dialects accept.

use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyConnection;
use sqlx::{AnyPool, Executor, Row};

use super::migrations::{self, MIGRATIONS};
use super::*;

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

/// `BEGIN` that takes SQLite's write lock up front: a deferred transaction that reads and
/// then writes can fail with SQLITE_BUSY instead of waiting for the busy timeout.
fn begin_statement(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    }
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlStore {
    /// Connects; for SQLite the file (and its directory) is created if missing.
    pub async fn connect(url: &str, base_dir: &Path) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::Unavailable(
                    "store.url sqlite:// needs a file path, like sqlite://var/hpki-gateway.db"
                        .into(),
                ));
            }
            let file = base_dir.join(path);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot create the store directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            (
                Backend::Sqlite,
                format!("sqlite://{}?mode=rwc", file.display()),
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Unavailable(format!(
                "store.url {:?} is neither sqlite://FILE nor postgres://...",
                redact_url(url)
            )));
        };
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the CLI read while a gateway writes; FULL makes a commit
                        // durable before we answer "accepted".
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            });
        let pool = options.connect(&url).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", redact_url(&url)))
        })?;
        Ok(SqlStore { pool, backend })
    }

    async fn schema_version(conn: &mut AnyConnection) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM hpki_schema_migrations")
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Refuses a store that is not migrated to exactly what this binary knows.
    pub async fn check_schema(&self) -> StoreResult<()> {
        let known = MIGRATIONS.last().map(|m| m.version).unwrap_or(0);
        let mut conn = self.pool.acquire().await?;
        let found = Self::schema_version(&mut conn).await.map_err(|_| {
            StoreError::Unavailable(
                "the store has no schema yet: run `hpki-gateway store migrate`".into(),
            )
        })?;
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        if found < known {
            return Err(StoreError::Unavailable(format!(
                "the store's schema is version {found}, this binary needs {known}: \
                 run `hpki-gateway store migrate`"
            )));
        }
        Ok(())
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin_with(begin_statement(self.backend)).await?)
    }
}

async fn record_change(
    conn: &mut AnyConnection,
    at: Timestamp,
    operator: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO ledger_changes (id, at, recorded_at, operator, action, subject, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(change_id())
    .bind(at)
    .bind(now())
    .bind(operator)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Change ids sort in recording order (changes made in the same second list in the
/// order they happened): nanoseconds since the epoch, then randomness.
fn change_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    new_id(&format!("l-{nanos:016x}-"))
}

const ASSISTANT_COLUMNS: &str = "id, name_kanji, name_romaji, facility, active_from, active_until";

fn assistant_from(row: &AnyRow) -> StoreResult<Assistant> {
    Ok(Assistant {
        id: row.try_get("id")?,
        name_kanji: row.try_get("name_kanji")?,
        name_romaji: row.try_get("name_romaji")?,
        facility: row.try_get("facility")?,
        active_from: row.try_get("active_from")?,
        active_until: row.try_get("active_until")?,
    })
}

async fn find_assistant(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<Assistant>> {
    let row = sqlx::query(&format!(
        "SELECT {ASSISTANT_COLUMNS} FROM assistants WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(assistant_from).transpose()
}

async fn insert_assistant(conn: &mut AnyConnection, a: &Assistant) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO assistants (id, name_kanji, name_romaji, facility, active_from, active_until) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&a.id)
    .bind(&a.name_kanji)
    .bind(&a.name_romaji)
    .bind(&a.facility)
    .bind(a.active_from)
    .bind(a.active_until)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The current holder of one stored card key.
async fn current_holder(conn: &mut AnyConnection, card: &str) -> StoreResult<Option<String>> {
    let row = sqlx::query(
        "SELECT assistant_id FROM card_assignments WHERE card = $1 AND assigned_until IS NULL",
    )
    .bind(card)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
}

async fn assign_in(
    conn: &mut AnyConnection,
    card: &CardKey,
    assistant_id: &str,
    at: Timestamp,
    operator: &str,
) -> StoreResult<bool> {
    card.validate().map_err(StoreError::Rejected)?;
    let Some(a) = find_assistant(conn, assistant_id).await? else {
        return Err(StoreError::Rejected(format!(
            "no assistant {assistant_id:?} in the ledger: add them first with \
             `hpki-gateway ledger assistant add`"
        )));
    };
    if a.active_until.is_some_and(|u| u <= at) {
        return Err(StoreError::Rejected(format!(
            "assistant {assistant_id:?} is deactivated: a card cannot be assigned to them"
        )));
    }
    let key = card.encode();
    // Two assignments of one card at once on PostgreSQL (READ COMMITTED): the second waits
    // here for the first to commit and then sees its holder, instead of failing on the
    // unique index as "store unavailable". SQLite's BEGIN IMMEDIATE already serializes.
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(7340916, hashtext($1))) AS l")
            .bind(&key)
            .execute(&mut *conn)
            .await?;
    }
    match current_holder(conn, &key).await? {
        Some(holder) if holder == assistant_id => return Ok(false),
        Some(holder) => match ended_before(conn, &holder, at).await? {
            // The holder's time at the clinic has ended: their holding ended with it.
            Some(end) => {
                sqlx::query(
                    "UPDATE card_assignments SET assigned_until = $2, released_by = $3 \
                     WHERE card = $1 AND assigned_until IS NULL",
                )
                .bind(&key)
                .bind(end)
                .bind(operator)
                .execute(&mut *conn)
                .await?;
                record_change(conn, end, operator, "card.release", &holder, &key).await?;
            }
            None => {
                return Err(StoreError::Rejected(format!(
                    "card {key} is held by {holder:?}: release it first with \
                     `hpki-gateway ledger card release`"
                )))
            }
        },
        None => {}
    }
    let last_until: Option<i64> =
        sqlx::query("SELECT MAX(assigned_until) FROM card_assignments WHERE card = $1")
            .bind(&key)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    if last_until.is_some_and(|u| u > at) {
        return Err(StoreError::Rejected(format!(
            "card {key} was held until {}, after the requested start: history is not rewritten",
            crate::store::format_time(last_until.unwrap_or(0))
        )));
    }
    sqlx::query(
        "INSERT INTO card_assignments (id, card, assistant_id, assigned_from, assigned_by) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id("c-"))
    .bind(&key)
    .bind(assistant_id)
    .bind(at)
    .bind(operator)
    .execute(&mut *conn)
    .await?;
    record_change(conn, at, operator, "card.assign", assistant_id, &key).await?;
    Ok(true)
}

/// When an assistant's time at the clinic ended, if it ended by `at`.
async fn ended_before(
    conn: &mut AnyConnection,
    assistant_id: &str,
    at: Timestamp,
) -> StoreResult<Option<Timestamp>> {
    Ok(find_assistant(conn, assistant_id)
        .await?
        .and_then(|a| a.active_until)
        .filter(|u| *u <= at))
}

async fn add_supervisor_in(
    conn: &mut AnyConnection,
    assistant_id: &str,
    doctor: &DoctorRef,
    at: Timestamp,
    operator: &str,
) -> StoreResult<bool> {
    if doctor.hpki_id.trim().is_empty() || doctor.issuer.trim().is_empty() {
        return Err(StoreError::Rejected(
            "a supervising doctor needs both an HPKI id and the issuer of their \
             authentication certificate (or give --doctor-cert FILE)"
                .into(),
        ));
    }
    if find_assistant(conn, assistant_id).await?.is_none() {
        return Err(StoreError::Rejected(format!(
            "no assistant {assistant_id:?} in the ledger"
        )));
    }
    let exists = sqlx::query(
        "SELECT id FROM supervisions WHERE assistant_id = $1 AND doctor_hpki_id = $2 \
         AND doctor_issuer = $3 AND removed_at IS NULL",
    )
    .bind(assistant_id)
    .bind(&doctor.hpki_id)
    .bind(&doctor.issuer)
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_some() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO supervisions (id, assistant_id, doctor_hpki_id, doctor_issuer, added_at, added_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id("s-"))
    .bind(assistant_id)
    .bind(&doctor.hpki_id)
    .bind(&doctor.issuer)
    .bind(at)
    .bind(operator)
    .execute(&mut *conn)
    .await?;
    record_change(
        conn,
        at,
        operator,
        "supervisor.add",
        assistant_id,
        &format!("{} ({})", doctor.hpki_id, doctor.issuer),
    )
    .await?;
    Ok(true)
}

const PENDING_COLUMNS: &str =
    "id, state, route_path, request_host, method, path_and_query, headers, body, \
     assistant_id, assistant_name, card_sha256, created_at, expires_at, confirmer, decided_at, \
     reject_reason, lease_until, attempts, upstream_status, upstream_content_type, upstream_body, \
     last_error, forwarded_at, confirmation_signature, confirmation_certificate, \
     confirmation_digest, confirmation_chain";

fn pending_from(row: &AnyRow) -> StoreResult<PendingWrite> {
    let state: String = row.try_get("state")?;
    let headers: String = row.try_get("headers")?;
    let confirmer: Option<String> = row.try_get("confirmer")?;
    Ok(PendingWrite {
        id: row.try_get("id")?,
        state: PendingState::parse(&state)
            .ok_or_else(|| StoreError::Unavailable(format!("unknown pending state {state:?}")))?,
        route_path: row.try_get("route_path")?,
        request_host: row.try_get("request_host")?,
        method: row.try_get("method")?,
        path_and_query: row.try_get("path_and_query")?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: row.try_get("body")?,
        assistant_id: row.try_get("assistant_id")?,
        assistant_name: row.try_get("assistant_name")?,
        card_sha256: row.try_get("card_sha256")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        confirmer: confirmer.and_then(|c| serde_json::from_str(&c).ok()),
        decided_at: row.try_get("decided_at")?,
        reject_reason: row.try_get("reject_reason")?,
        lease_until: row.try_get("lease_until")?,
        attempts: row.try_get("attempts")?,
        upstream_status: row.try_get("upstream_status")?,
        upstream_content_type: row.try_get("upstream_content_type")?,
        upstream_body: row.try_get("upstream_body")?,
        last_error: row.try_get("last_error")?,
        forwarded_at: row.try_get("forwarded_at")?,
        signature: signature_from(row)?,
    })
}

/// The stored confirmation signature: all four columns or none.
fn signature_from(row: &AnyRow) -> StoreResult<Option<ConfirmationSignature>> {
    let signature: Option<Vec<u8>> = row.try_get("confirmation_signature")?;
    let certificate: Option<Vec<u8>> = row.try_get("confirmation_certificate")?;
    let digest: Option<String> = row.try_get("confirmation_digest")?;
    let chain: Option<String> = row.try_get("confirmation_chain")?;
    let (Some(signature), Some(certificate), Some(digest), Some(chain)) =
        (signature, certificate, digest, chain)
    else {
        return Ok(None);
    };
    let unreadable =
        |what: &str| StoreError::Unavailable(format!("stored confirmation {what} is unreadable"));
    let digest = crate::pki::name::parse_sha256_hex(&digest).ok_or_else(|| unreadable("digest"))?;
    let chain = crate::pki::pem_blocks(&chain)
        .map_err(|_| unreadable("chain"))?
        .into_iter()
        .map(|b| b.der)
        .collect();
    Ok(Some(ConfirmationSignature {
        digest,
        signature,
        certificate,
        chain,
    }))
}

const CHANGE_COLUMNS: &str = "id, at, recorded_at, operator, action, subject, detail";

fn change_from(row: &AnyRow) -> StoreResult<LedgerChange> {
    Ok(LedgerChange {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        recorded_at: row.try_get("recorded_at")?,
        operator: row.try_get("operator")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
    })
}

const GRANT_COLUMNS: &str = "id, doctor_hpki_id, doctor_issuer, doctor_name, cert_sha256, reason, \
     patient_ref, started_at, expires_at, ended_at, followup_at, followup_by, followup_note";

fn grant_from(row: &AnyRow) -> StoreResult<EmergencyGrant> {
    Ok(EmergencyGrant {
        id: row.try_get("id")?,
        doctor: DoctorRef {
            hpki_id: row.try_get("doctor_hpki_id")?,
            issuer: row.try_get("doctor_issuer")?,
        },
        doctor_name: row.try_get("doctor_name")?,
        cert_sha256: row.try_get("cert_sha256")?,
        reason: row.try_get("reason")?,
        patient_ref: row.try_get("patient_ref")?,
        started_at: row.try_get("started_at")?,
        expires_at: row.try_get("expires_at")?,
        ended_at: row.try_get("ended_at")?,
        followup_at: row.try_get("followup_at")?,
        followup_by: row.try_get("followup_by")?,
        followup_note: row.try_get("followup_note")?,
    })
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> StoreResult<MigrationReport> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            // Two gateways starting together: the second waits for the first's migration.
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(7340915)) AS l")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS hpki_schema_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let from = SqlStore::schema_version(&mut tx).await?;
        let known = MIGRATIONS.last().map(|m| m.version).unwrap_or(0);
        if from > known {
            return Err(StoreError::SchemaTooNew { found: from, known });
        }
        let mut applied = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| m.version > from) {
            for statement in migrations::statements(migrations::sql_for(m, self.backend)) {
                tx.execute(statement).await.map_err(|e| {
                    StoreError::Unavailable(format!("migration {} ({}): {e}", m.version, m.name))
                })?;
            }
            sqlx::query(
                "INSERT INTO hpki_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            applied.push(format!("{} {}", m.version, m.name));
        }
        tx.commit().await?;
        Ok(MigrationReport {
            backend: self.backend,
            from_version: from,
            to_version: known,
            applied,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn shared_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        sqlx::query(
            "INSERT INTO hpki_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM hpki_settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn add_assistant(&self, a: &Assistant, operator: &str) -> StoreResult<()> {
        if a.id.trim().is_empty() {
            return Err(StoreError::Rejected("an assistant needs an id".into()));
        }
        let mut tx = self.begin().await?;
        if find_assistant(&mut tx, &a.id).await?.is_some() {
            return Err(StoreError::Rejected(format!(
                "assistant {:?} already exists: ids are never reused (history refers to them)",
                a.id
            )));
        }
        insert_assistant(&mut tx, a).await?;
        record_change(
            &mut tx,
            now(),
            operator,
            "assistant.add",
            &a.id,
            &serde_json::to_string(a).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn assistant(&self, id: &str) -> StoreResult<Option<Assistant>> {
        let mut conn = self.pool.acquire().await?;
        find_assistant(&mut conn, id).await
    }

    async fn assistants(&self) -> StoreResult<Vec<Assistant>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASSISTANT_COLUMNS} FROM assistants ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(assistant_from).collect()
    }

    async fn deactivate_assistant(
        &self,
        id: &str,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let Some(a) = find_assistant(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("assistant {id:?}")));
        };
        if a.active_until.is_some_and(|u| u <= at) {
            return Err(StoreError::Rejected(format!(
                "assistant {id:?} is already deactivated"
            )));
        }
        sqlx::query("UPDATE assistants SET active_until = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        // A deactivated assistant holds no card: their cards are released with them.
        let released = sqlx::query(
            "UPDATE card_assignments SET assigned_until = $2, released_by = $3 \
             WHERE assistant_id = $1 AND assigned_until IS NULL",
        )
        .bind(id)
        .bind(at)
        .bind(operator)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        record_change(
            &mut tx,
            at,
            operator,
            "assistant.deactivate",
            id,
            &format!("{released} card(s) released"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn assign_card(
        &self,
        card: &CardKey,
        assistant_id: &str,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if !assign_in(&mut tx, card, assistant_id, at, operator).await? {
            return Err(StoreError::Rejected(format!(
                "card {card} is already held by {assistant_id:?}"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release_card(
        &self,
        card: &CardKey,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<String> {
        let key = card.encode();
        let mut tx = self.begin().await?;
        let Some(holder) = current_holder(&mut tx, &key).await? else {
            return Err(StoreError::NotFound(format!(
                "card {key} is not held by anyone"
            )));
        };
        sqlx::query(
            "UPDATE card_assignments SET assigned_until = $2, released_by = $3 \
             WHERE card = $1 AND assigned_until IS NULL",
        )
        .bind(&key)
        .bind(at)
        .bind(operator)
        .execute(&mut *tx)
        .await?;
        record_change(&mut tx, at, operator, "card.release", &holder, &key).await?;
        tx.commit().await?;
        Ok(holder)
    }

    async fn card_history(
        &self,
        card: Option<&CardKey>,
        assistant_id: Option<&str>,
    ) -> StoreResult<Vec<CardAssignment>> {
        let rows = sqlx::query(
            "SELECT id, card, assistant_id, assigned_from, assigned_until, assigned_by, released_by \
             FROM card_assignments WHERE ($1 IS NULL OR card = $1) AND ($2 IS NULL OR assistant_id = $2) \
             ORDER BY assigned_from, id",
        )
        .bind(card.map(CardKey::encode))
        .bind(assistant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CardAssignment {
                    id: r.try_get("id")?,
                    card: r.try_get("card")?,
                    assistant_id: r.try_get("assistant_id")?,
                    assigned_from: r.try_get("assigned_from")?,
                    assigned_until: r.try_get("assigned_until")?,
                    assigned_by: r.try_get("assigned_by")?,
                    released_by: r.try_get("released_by")?,
                })
            })
            .collect()
    }

    async fn holder_at(&self, cards: &[CardKey], at: Timestamp) -> StoreResult<Option<CardHolder>> {
        if cards.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT c.card AS card, a.id AS id, a.name_kanji AS name_kanji, a.name_romaji AS name_romaji, \
             a.facility AS facility, a.active_from AS active_from, a.active_until AS active_until \
             FROM card_assignments c JOIN assistants a ON a.id = c.assistant_id \
             WHERE c.card IN ({}) AND c.assigned_from <= $1 \
             AND (c.assigned_until IS NULL OR c.assigned_until > $1)",
            placeholders(2, cards.len())
        );
        let mut query = sqlx::query(&sql).bind(at);
        for c in cards {
            query = query.bind(c.encode());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut found: Option<(String, Assistant)> = None;
        for row in &rows {
            let a = assistant_from(row)?;
            let card: String = row.try_get("card")?;
            match &found {
                Some((_, prev)) if prev.id != a.id => {
                    return Err(StoreError::Rejected(format!(
                        "the ledger gives this card two holders ({} and {}): release one",
                        prev.id, a.id
                    )))
                }
                Some(_) => {}
                None => found = Some((card, a)),
            }
        }
        let Some((card, assistant)) = found else {
            return Ok(None);
        };
        if !assistant.is_active(at) {
            return Ok(None);
        }
        let supervisors = self.supervisors(&assistant.id).await?;
        Ok(Some(CardHolder {
            assistant,
            card,
            supervisors,
        }))
    }

    async fn add_supervisor(
        &self,
        assistant_id: &str,
        doctor: &DoctorRef,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if !add_supervisor_in(&mut tx, assistant_id, doctor, at, operator).await? {
            return Err(StoreError::Rejected(format!(
                "{} already supervises {assistant_id:?}",
                doctor.hpki_id
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_supervisor(
        &self,
        assistant_id: &str,
        doctor: &DoctorRef,
        at: Timestamp,
        operator: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE supervisions SET removed_at = $4, removed_by = $5 WHERE assistant_id = $1 \
             AND doctor_hpki_id = $2 AND doctor_issuer = $3 AND removed_at IS NULL",
        )
        .bind(assistant_id)
        .bind(&doctor.hpki_id)
        .bind(&doctor.issuer)
        .bind(at)
        .bind(operator)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "{} does not supervise {assistant_id:?} (issuer {})",
                doctor.hpki_id, doctor.issuer
            )));
        }
        record_change(
            &mut tx,
            at,
            operator,
            "supervisor.remove",
            assistant_id,
            &format!("{} ({})", doctor.hpki_id, doctor.issuer),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn supervisors(&self, assistant_id: &str) -> StoreResult<Vec<DoctorRef>> {
        let rows = sqlx::query(
            "SELECT doctor_hpki_id, doctor_issuer FROM supervisions \
             WHERE assistant_id = $1 AND removed_at IS NULL ORDER BY doctor_hpki_id",
        )
        .bind(assistant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DoctorRef {
                    hpki_id: r.try_get(0)?,
                    issuer: r.try_get(1)?,
                })
            })
            .collect()
    }

    async fn supervision_history(&self, assistant_id: &str) -> StoreResult<Vec<Supervision>> {
        let rows = sqlx::query(
            "SELECT assistant_id, doctor_hpki_id, doctor_issuer, added_at, added_by, removed_at, removed_by \
             FROM supervisions WHERE assistant_id = $1 ORDER BY added_at, id",
        )
        .bind(assistant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Supervision {
                    assistant_id: r.try_get("assistant_id")?,
                    doctor: DoctorRef {
                        hpki_id: r.try_get("doctor_hpki_id")?,
                        issuer: r.try_get("doctor_issuer")?,
                    },
                    added_at: r.try_get("added_at")?,
                    added_by: r.try_get("added_by")?,
                    removed_at: r.try_get("removed_at")?,
                    removed_by: r.try_get("removed_by")?,
                })
            })
            .collect()
    }

    async fn supervised_by(&self, doctor: &DoctorRef) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT assistant_id FROM supervisions WHERE doctor_hpki_id = $1 \
             AND doctor_issuer = $2 AND removed_at IS NULL ORDER BY assistant_id",
        )
        .bind(&doctor.hpki_id)
        .bind(&doctor.issuer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    async fn ledger_changes(&self, since: Timestamp) -> StoreResult<Vec<LedgerChange>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM ledger_changes WHERE at >= $1 ORDER BY at, id"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from).collect()
    }

    async fn ledger_changes_after(
        &self,
        after_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<LedgerChange>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM ledger_changes WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from).collect()
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO hpki_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn import_ledger(
        &self,
        rows: &[LedgerRow],
        at: Timestamp,
        operator: &str,
        dry_run: bool,
    ) -> StoreResult<ImportReport> {
        let mut report = ImportReport::default();
        let mut tx = self.begin().await?;
        for row in rows {
            let a = &row.assistant;
            // A problem in one row is reported and the import goes on, so that a dry run
            // lists every bad row at once; nothing is committed then.
            let outcome: StoreResult<()> = async {
                match find_assistant(&mut tx, &a.id).await? {
                    None => {
                        insert_assistant(&mut tx, a).await?;
                        record_change(&mut tx, at, operator, "assistant.import", &a.id, "added")
                            .await?;
                        report.assistants_added += 1;
                    }
                    Some(existing) if existing != *a => {
                        sqlx::query(
                            "UPDATE assistants SET name_kanji = $2, name_romaji = $3, facility = $4, \
                             active_from = $5, active_until = $6 WHERE id = $1",
                        )
                        .bind(&a.id)
                        .bind(&a.name_kanji)
                        .bind(&a.name_romaji)
                        .bind(&a.facility)
                        .bind(a.active_from)
                        .bind(a.active_until)
                        .execute(&mut *tx)
                        .await?;
                        record_change(&mut tx, at, operator, "assistant.import", &a.id, "updated")
                            .await?;
                        report.assistants_updated += 1;
                    }
                    Some(_) => {}
                }
                for card in &row.cards {
                    if assign_in(&mut tx, card, &a.id, at, operator).await? {
                        report.cards_assigned += 1;
                    }
                }
                for doctor in &row.supervisors {
                    if add_supervisor_in(&mut tx, &a.id, doctor, at, operator).await? {
                        report.supervisors_added += 1;
                    }
                }
                // An assistant the file ends holds no card, as with `deactivate_assistant`
                // (a future end is left to `holder_at`, which asks whether the holder
                // is active, and to `assign_in`, which takes a card from an ended holder).
                if let Some(until) = a.active_until.filter(|u| *u <= at) {
                    sqlx::query(
                        "UPDATE card_assignments SET assigned_until = $2, released_by = $3 \
                         WHERE assistant_id = $1 AND assigned_until IS NULL",
                    )
                    .bind(&a.id)
                    .bind(until)
                    .bind(operator)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(())
            }
            .await;
            match outcome {
                Ok(()) => {}
                Err(StoreError::Rejected(e)) | Err(StoreError::NotFound(e)) => {
                    report.problems.push((row.line, e))
                }
                Err(e) => return Err(e),
            }
        }
        if dry_run || !report.problems.is_empty() {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
            report.committed = true;
        }
        Ok(report)
    }

    async fn insert_pending(&self, p: &NewPending) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO pending_writes (id, state, route_path, request_host, method, path_and_query, \
             headers, body, assistant_id, assistant_name, card_sha256, created_at, expires_at, attempts) \
             VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0)",
        )
        .bind(&p.id)
        .bind(&p.route_path)
        .bind(&p.request_host)
        .bind(&p.method)
        .bind(&p.path_and_query)
        .bind(serde_json::to_string(&p.headers).unwrap_or_else(|_| "[]".into()))
        .bind(&p.body)
        .bind(&p.assistant_id)
        .bind(&p.assistant_name)
        .bind(&p.card_sha256)
        .bind(p.created_at)
        .bind(p.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pending(&self, id: &str) -> StoreResult<Option<PendingWrite>> {
        let row = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending_writes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pending_from).transpose()
    }

    async fn pending_of(
        &self,
        assistant_ids: &[String],
        limit: i64,
    ) -> StoreResult<Vec<PendingWrite>> {
        if assistant_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM pending_writes WHERE assistant_id IN ({}) \
             ORDER BY created_at DESC, id DESC LIMIT $1",
            placeholders(2, assistant_ids.len())
        );
        let mut query = sqlx::query(&sql).bind(limit);
        for id in assistant_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(pending_from).collect()
    }

    async fn claim_for_forwarding(
        &self,
        id: &str,
        confirmer: &Confirmer,
        signature: Option<&ConfirmationSignature>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<bool> {
        let chain_pem = signature.map(|s| {
            s.chain
                .iter()
                .map(|der| crate::pki::pem_encode("CERTIFICATE", der))
                .collect::<String>()
        });
        let n = sqlx::query(
            "UPDATE pending_writes SET state = 'forwarding', confirmer = $2, decided_at = $3, \
             lease_until = $4, attempts = attempts + 1, last_error = NULL, \
             confirmation_signature = $5, confirmation_certificate = $6, \
             confirmation_digest = $7, confirmation_chain = $8 \
             WHERE id = $1 AND ((state = 'pending' AND expires_at > $3) OR state = 'failed')",
        )
        .bind(id)
        .bind(serde_json::to_string(confirmer).unwrap_or_default())
        .bind(now)
        .bind(lease_until)
        .bind(signature.map(|s| s.signature.clone()))
        .bind(signature.map(|s| s.certificate.clone()))
        .bind(signature.map(|s| crate::pki::name::hex(&s.digest)))
        .bind(chain_pem)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn finish_forwarding(
        &self,
        id: &str,
        outcome: &ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (state, status, content_type, body, error) = match outcome {
            ForwardOutcome::Delivered {
                status,
                content_type,
                body,
            } => (
                PendingState::Forwarded,
                Some(i64::from(*status)),
                content_type.clone(),
                body.clone(),
                None,
            ),
            ForwardOutcome::Failed {
                error,
                status,
                body,
            } => (
                PendingState::Failed,
                status.map(i64::from),
                None,
                body.clone(),
                Some(error.clone()),
            ),
        };
        sqlx::query(
            "UPDATE pending_writes SET state = $2, upstream_status = $3, upstream_content_type = $4, \
             upstream_body = $5, last_error = $6, forwarded_at = $7, lease_until = NULL \
             WHERE id = $1 AND state = 'forwarding'",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(status)
        .bind(content_type)
        .bind(body)
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reject_pending(
        &self,
        id: &str,
        confirmer: &Confirmer,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE pending_writes SET state = 'rejected', confirmer = $2, decided_at = $3, \
             reject_reason = $4 WHERE id = $1 AND ((state = 'pending' AND expires_at > $3) OR state = 'failed')",
        )
        .bind(id)
        .bind(serde_json::to_string(confirmer).unwrap_or_default())
        .bind(now)
        .bind(reason)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn expire_pending(&self, now: Timestamp) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE pending_writes SET state = 'expired' WHERE state = 'pending' AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn reclaim_forwarding(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<PendingWrite>> {
        let ids: Vec<String> = sqlx::query(
            "SELECT id FROM pending_writes WHERE state = 'forwarding' AND lease_until <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        let mut reclaimed = Vec::new();
        for id in ids {
            let won = sqlx::query(
                "UPDATE pending_writes SET lease_until = $3, attempts = attempts + 1 \
                 WHERE id = $1 AND state = 'forwarding' AND lease_until <= $2",
            )
            .bind(&id)
            .bind(now)
            .bind(lease_until)
            .execute(&self.pool)
            .await?
            .rows_affected()
                == 1;
            if won {
                if let Some(p) = self.pending(&id).await? {
                    reclaimed.push(p);
                }
            }
        }
        Ok(reclaimed)
    }

    async fn count_pending(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM pending_writes WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn insert_emergency(&self, g: &EmergencyGrant) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO emergency_grants ({GRANT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&g.id)
        .bind(&g.doctor.hpki_id)
        .bind(&g.doctor.issuer)
        .bind(&g.doctor_name)
        .bind(&g.cert_sha256)
        .bind(&g.reason)
        .bind(&g.patient_ref)
        .bind(g.started_at)
        .bind(g.expires_at)
        .bind(g.ended_at)
        .bind(g.followup_at)
        .bind(&g.followup_by)
        .bind(&g.followup_note)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn active_emergency(
        &self,
        cert_sha256: &str,
        now: Timestamp,
    ) -> StoreResult<Option<EmergencyGrant>> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM emergency_grants WHERE cert_sha256 = $1 \
             AND started_at <= $2 AND expires_at > $2 AND ended_at IS NULL \
             ORDER BY started_at DESC LIMIT 1"
        ))
        .bind(cert_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant_from).transpose()
    }

    async fn end_emergency(
        &self,
        id: &str,
        cert_sha256: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE emergency_grants SET ended_at = $3 WHERE id = $1 AND cert_sha256 = $2 \
             AND ended_at IS NULL AND expires_at > $3",
        )
        .bind(id)
        .bind(cert_sha256)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn emergencies(
        &self,
        since: Timestamp,
        open_only: bool,
    ) -> StoreResult<Vec<EmergencyGrant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM emergency_grants WHERE started_at >= $1 \
             AND ($2 = 0 OR followup_at IS NULL) ORDER BY started_at, id"
        ))
        .bind(since)
        .bind(i64::from(open_only))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from).collect()
    }

    async fn emergency_followup(
        &self,
        id: &str,
        operator: &str,
        note: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE emergency_grants SET followup_at = $2, followup_by = $3, followup_note = $4 \
             WHERE id = $1 AND followup_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(operator)
        .bind(note)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
