//! PostgreSQL for tests: `HPKI_TEST_POSTGRES_URL` names a server (scripts/test.sh starts
//! a throwaway one); every call of [`fresh_database`] creates a new, empty database in it,
//! so tests never share one.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const URL_VAR: &str = "HPKI_TEST_POSTGRES_URL";

/// The server's URL, or a panic that says how to get one.
pub fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "{URL_VAR} is not set: these tests need a PostgreSQL server. Run the whole suite \
             with scripts/test.sh (it starts a throwaway one), or start one yourself:\n  \
             D=$(mktemp -d); export {URL_VAR}=$(scripts/pg-throwaway.sh start $D 55432)\n\
             and stop it afterwards with scripts/pg-throwaway.sh stop $D"
        ),
    }
}

/// Creates a new database (`t_<pid>_<n>_<random>`) on the test server and returns its URL.
pub fn fresh_database() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let server = server_url();
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hpki_gateway::store::new_id("")
    );
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(&server)
        .arg("-c")
        .arg(format!("CREATE DATABASE {name}"))
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run psql (install postgresql-client, deploy/setup.sh): {e}")
        });
    assert!(
        out.status.success(),
        "psql could not create database {name} on {server}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    with_database(&server, &name)
}

/// `url` with its database replaced by `name` (any `?query` kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[host_start..]
        .find('/')
        .map(|i| host_start + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// [`fresh_database`], or None after saying the test is skipped: only outside CI, when no
/// server is named (`scripts/test.sh` always names one; in CI a missing one fails).
pub fn fresh_database_or_skip(test: &str) -> Option<String> {
    let named = std::env::var(URL_VAR).is_ok_and(|u| !u.trim().is_empty());
    if !named && std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED {test}: {URL_VAR} is not set (it needs PostgreSQL; scripts/test.sh starts one)"
        );
        return None;
    }
    Some(fresh_database())
}
