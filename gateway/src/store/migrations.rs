//! Versioned schema migrations, one SQL text per dialect. Applied in order, each in its
//! own transaction, and recorded in `hpki_schema_migrations`. A migration is never edited
//! once released: a change is a new version.
//!
//! Times are Unix seconds (BIGINT); ids are text made by the gateway, so neither dialect's
//! auto-increment is needed.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Tables whose SQL is the same in both dialects.
macro_rules! v1_common {
    () => {
        r#"
CREATE TABLE hpki_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    name_kanji TEXT NOT NULL,
    name_romaji TEXT NOT NULL,
    facility TEXT NOT NULL,
    active_from BIGINT NOT NULL,
    active_until BIGINT
);
CREATE TABLE card_assignments (
    id TEXT PRIMARY KEY,
    card TEXT NOT NULL,
    assistant_id TEXT NOT NULL REFERENCES assistants(id),
    assigned_from BIGINT NOT NULL,
    assigned_until BIGINT,
    assigned_by TEXT NOT NULL,
    released_by TEXT
);
CREATE UNIQUE INDEX card_assignments_one_holder ON card_assignments(card) WHERE assigned_until IS NULL;
CREATE INDEX card_assignments_by_assistant ON card_assignments(assistant_id);
CREATE TABLE supervisions (
    id TEXT PRIMARY KEY,
    assistant_id TEXT NOT NULL REFERENCES assistants(id),
    doctor_hpki_id TEXT NOT NULL,
    doctor_issuer TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL,
    removed_at BIGINT,
    removed_by TEXT
);
CREATE UNIQUE INDEX supervisions_current ON supervisions(assistant_id, doctor_hpki_id, doctor_issuer) WHERE removed_at IS NULL;
CREATE INDEX supervisions_by_doctor ON supervisions(doctor_hpki_id, doctor_issuer);
CREATE TABLE ledger_changes (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX ledger_changes_by_time ON ledger_changes(at);
CREATE TABLE emergency_grants (
    id TEXT PRIMARY KEY,
    doctor_hpki_id TEXT NOT NULL,
    doctor_issuer TEXT NOT NULL,
    doctor_name TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    reason TEXT NOT NULL,
    patient_ref TEXT,
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    followup_at BIGINT,
    followup_by TEXT,
    followup_note TEXT
);
CREATE INDEX emergency_grants_by_cert ON emergency_grants(cert_sha256, expires_at);
CREATE INDEX emergency_grants_by_start ON emergency_grants(started_at);
"#
    };
}

/// `pending_writes` differs only in the binary type.
macro_rules! pending_table {
    ($blob:literal) => {
        concat!(
            r#"
CREATE TABLE pending_writes (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    route_path TEXT NOT NULL,
    request_host TEXT,
    method TEXT NOT NULL,
    path_and_query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body "#,
            $blob,
            r#" NOT NULL,
    assistant_id TEXT NOT NULL,
    assistant_name TEXT NOT NULL,
    card_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    confirmer TEXT,
    decided_at BIGINT,
    reject_reason TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL,
    upstream_status BIGINT,
    upstream_content_type TEXT,
    upstream_body "#,
            $blob,
            r#",
    last_error TEXT,
    forwarded_at BIGINT
);
CREATE INDEX pending_writes_by_assistant ON pending_writes(assistant_id, created_at);
CREATE INDEX pending_writes_by_state ON pending_writes(state, expires_at);
"#
        )
    };
}

/// The doctor's signature on a confirmation (docs/confirmation-signature.md), written in
/// the same statement as the claim it belongs to: the signature, the signing certificate
/// (DER), the SHA-256 of the confirmation text (hex) and the CA certificates that
/// validated it (PEM, anchor last). One column per statement: SQLite's ALTER TABLE adds
/// one at a time.
macro_rules! confirmation_signature_columns {
    ($blob:literal) => {
        concat!(
            "ALTER TABLE pending_writes ADD COLUMN confirmation_signature ",
            $blob,
            ";\n",
            "ALTER TABLE pending_writes ADD COLUMN confirmation_certificate ",
            $blob,
            ";\n",
            "ALTER TABLE pending_writes ADD COLUMN confirmation_digest TEXT;\n",
            "ALTER TABLE pending_writes ADD COLUMN confirmation_chain TEXT;\n",
        )
    };
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger, held writes, emergency grants",
        sqlite: concat!(v1_common!(), pending_table!("BLOB")),
        postgres: concat!(v1_common!(), pending_table!("BYTEA")),
    },
    Migration {
        version: 2,
        name: "doctors' signatures on confirmations",
        sqlite: confirmation_signature_columns!("BLOB"),
        postgres: confirmation_signature_columns!("BYTEA"),
    },
];

/// The statements of a migration, split on `;` at line ends (no statement here contains
/// one inside a literal).
pub fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n").map(str::trim).filter(|s| !s.is_empty())
}

pub fn sql_for(m: &Migration, backend: super::Backend) -> &'static str {
    match backend {
        super::Backend::Sqlite => m.sqlite,
        super::Backend::Postgres => m.postgres,
    }
}
