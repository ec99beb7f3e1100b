//! `hpki-gateway store migrate`, and what every store-backed command shares: which store
//! (`--config FILE` or `--store-url URL`), who is acting (`--operator NAME`), dates, a
//! tokio runtime for the async [`Store`], and one way of ending with an exit code.
//!
//! The options are global to their command group, so `hpki-gateway ledger --config F
//! assistant list` and `hpki-gateway ledger assistant list --config F` both work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{EXIT_BAD_INPUT, EXIT_NEGATIVE, EXIT_OK};
use crate::config::Config;
use crate::store::{self, Store, StoreError, Timestamp};

/// Which store, and who is acting. Flattened into `ledger`, `store` and `audit`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Store")]
pub struct StoreOptions {
    /// The gateway's TOML configuration: its `[store] url` names the store (a relative
    /// sqlite:// path resolves against the config file's directory).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The store instead of --config: `sqlite://FILE` (relative to the current
    /// directory) or `postgres://USER@HOST/DB`.
    #[arg(long = "store-url", value_name = "URL", global = true)]
    pub store_url: Option<String>,
    /// Who makes the change, recorded with every ledger change. Default: $SUDO_USER,
    /// else $USER, else the numeric uid.
    #[arg(long, value_name = "NAME", global = true)]
    pub operator: Option<String>,
}

/// Why a command did not succeed: `Usage` is bad input (exit 2), `Refused` a negative
/// answer or a refused change (exit 1). The text names the problem and the fix.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Refused(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Refused(e.to_string())
    }
}

pub type CmdResult = Result<i32, Failure>;

/// Prints the failure (if any) and returns the exit code.
pub fn finish(result: CmdResult) -> i32 {
    match result {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            EXIT_BAD_INPUT
        }
        Err(Failure::Refused(m)) => {
            eprintln!("error: {m}");
            EXIT_NEGATIVE
        }
    }
}

/// A store opened for one command, with the runtime its futures run on.
pub struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub store: Arc<dyn Store>,
    pub operator: String,
}

impl Session {
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Refused(format!("cannot start the async runtime: {e}")))
}

impl StoreOptions {
    /// The store URL and the directory a relative sqlite:// path resolves against.
    pub fn location(&self) -> Result<(String, PathBuf), Failure> {
        match (&self.config, &self.store_url) {
            (Some(_), Some(_)) => Err(Failure::Usage(
                "give either --config FILE or --store-url URL, not both".into(),
            )),
            (None, None) => Err(Failure::Usage(
                "which store? give --config FILE (the gateway's configuration, whose [store] url \
                 is used) or --store-url URL (sqlite://FILE or postgres://...)"
                    .into(),
            )),
            (Some(path), None) => {
                let config = Config::load(path).map_err(|e| {
                    Failure::Refused(format!(
                        "{e}\n(the store is named by [store] url in {}; or give --store-url URL)",
                        path.display()
                    ))
                })?;
                Ok((config.store.url.clone(), config.base_dir.clone()))
            }
            (None, Some(url)) => {
                let cwd = std::env::current_dir().map_err(|e| {
                    Failure::Refused(format!("cannot read the current directory: {e}"))
                })?;
                Ok((url.clone(), cwd))
            }
        }
    }

    /// The operator recorded with changes: --operator, $SUDO_USER, $USER, the uid.
    pub fn operator(&self) -> Result<String, Failure> {
        if let Some(given) = &self.operator {
            let given = given.trim();
            if given.is_empty() {
                return Err(Failure::Usage(
                    "--operator is empty: give the name of the person making the change".into(),
                ));
            }
            return Ok(given.to_owned());
        }
        for var in ["SUDO_USER", "USER"] {
            if let Ok(v) = std::env::var(var) {
                if !v.trim().is_empty() {
                    return Ok(v.trim().to_owned());
                }
            }
        }
        Ok(current_uid()
            .map(|u| format!("uid {u}"))
            .unwrap_or_else(|| "unknown".into()))
    }

    /// Opens the store. With `migrate` false an unmigrated (or older) store is refused
    /// with the message naming `hpki-gateway store migrate`.
    pub fn open(&self, migrate: bool) -> Result<Session, Failure> {
        let operator = self.operator()?;
        let (url, base) = self.location()?;
        let runtime = runtime()?;
        let store = runtime.block_on(store::open(&url, &base, migrate))?;
        Ok(Session {
            runtime,
            store,
            operator,
        })
    }
}

#[cfg(unix)]
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(unix))]
fn current_uid() -> Option<u32> {
    None
}

/// `--FLAG DATE` (2026-04-01 or RFC 3339), or now when absent.
pub fn time_arg(value: Option<&str>, flag: &str) -> Result<Timestamp, Failure> {
    match value {
        Some(s) => store::parse_time(s).map_err(|e| Failure::Usage(format!("{flag}: {e}"))),
        None => Ok(store::now()),
    }
}

/// Optional time shown to people: RFC 3339 (UTC) or a word for "none".
pub fn time_or(t: Option<Timestamp>, none: &str) -> String {
    t.map(store::format_time).unwrap_or_else(|| none.to_owned())
}

pub fn print_json(v: &serde_json::Value) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Failure::Refused(format!("cannot encode JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// `store migrate`
// ---------------------------------------------------------------------------------------

#[derive(Args)]
pub struct StoreArgs {
    #[command(flatten)]
    store: StoreOptions,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Create or upgrade the store's schema (safe to run again; several gateways may run
    /// it at once). Run it once after installing or upgrading, before `run`.
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StoreArgs) -> i32 {
    let result = match args.command {
        StoreCommand::Migrate(a) => migrate(&args.store, a),
    };
    finish(result)
}

fn migrate(opts: &StoreOptions, args: MigrateArgs) -> CmdResult {
    let (url, base) = opts.location()?;
    let runtime = runtime()?;
    let report = runtime.block_on(async {
        let store = store::SqlStore::connect(&url, &base).await?;
        store.migrate().await
    })?;
    let shown = store::redact_url(&url);
    if args.json {
        print_json(&json!({
            "store": shown,
            "backend": report.backend.as_str(),
            "from_version": report.from_version,
            "to_version": report.to_version,
            "applied": report.applied,
        }))?;
    } else if report.applied.is_empty() {
        println!(
            "{shown} ({}): already at version {}: nothing to apply",
            report.backend.as_str(),
            report.to_version
        );
    } else {
        println!(
            "{shown} ({}): migrated from version {} to {}",
            report.backend.as_str(),
            report.from_version,
            report.to_version
        );
        for m in &report.applied {
            println!("  applied {m}");
        }
    }
    Ok(EXIT_OK)
}

/// Reads a certificate file (PEM, possibly a bundle whose first block is used, or DER).
pub fn read_certificate(path: &Path, what: &str) -> Result<crate::pki::ParsedCertificate, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Usage(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut certs = crate::pki::parse_certificates(&bytes).map_err(|e| {
        Failure::Usage(format!(
            "{what} {}: {e} (expected a PEM or DER X.509 certificate)",
            path.display()
        ))
    })?;
    Ok(certs.remove(0))
}
