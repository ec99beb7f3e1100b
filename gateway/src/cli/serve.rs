//! `hpki-gateway run | check-config | demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_NEGATIVE, EXIT_OK};
use crate::config::Config;
use crate::proxy::Gateway;

#[derive(Args)]
pub struct RunArgs {
    /// The TOML configuration (docs/config.md).
    #[arg(long)]
    config: PathBuf,
    /// Log lines as JSON (for a log shipper) instead of text.
    #[arg(long)]
    log_json: bool,
}

#[derive(Args)]
pub struct CheckConfigArgs {
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo PKI, server certificate and config are written (reused if present).
    #[arg(long, default_value = "hpki-demo")]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Where the built-in demo portal (the upstream) listens.
    #[arg(long = "portal-listen", default_value = "127.0.0.1:9000")]
    portal_listen: SocketAddr,
    /// Regenerate the PKI even if the directory has one.
    #[arg(long)]
    fresh: bool,
}

/// Logging from `[log]` (level, format); `RUST_LOG` overrides the level and
/// `--log-json` the format.
fn init_logging(json: bool) {
    init_logging_with(json, "info")
}

fn init_logging_with(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal, never into a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Loads the configuration, opens its store (migrating it when `migrate`; otherwise
/// only connecting, so that `check-config` changes nothing) and builds the gateway.
fn load(
    config: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    migrate: bool,
) -> Result<Gateway, i32> {
    let mut cfg = Config::load(config).map_err(|e| {
        eprint!("{e}");
        EXIT_NEGATIVE
    })?;
    // `check-config` must not write: a running gateway owns the audit directory (one
    // writer per node), so the check opens its audit log in a scratch directory and only
    // probes that the real one is writable.
    let _scratch = if migrate {
        None
    } else {
        if let Err(e) = probe_writable(&cfg.audit.dir) {
            eprintln!("{}: the configuration cannot be used:", config.display());
            eprintln!("  - audit.dir {}: {e}", cfg.audit.dir.display());
            return Err(EXIT_NEGATIVE);
        }
        let scratch = tempfile_dir().map_err(|e| {
            eprintln!("error: cannot make a scratch directory: {e}");
            EXIT_BAD_INPUT
        })?;
        cfg.audit.dir = scratch.clone();
        Some(ScratchDir(scratch))
    };
    let store = if migrate {
        rt.block_on(crate::proxy::connect_store(&cfg))
    } else {
        rt.block_on(check_store(&cfg))
    };
    let store = store.map_err(|e| {
        eprintln!("{}: the configuration cannot be used:", config.display());
        eprintln!("  - {e}");
        EXIT_NEGATIVE
    })?;
    Gateway::build(cfg, store).map_err(|problems| {
        eprintln!("{}: the configuration cannot be used:", config.display());
        for p in problems {
            eprintln!("  - {p}");
        }
        EXIT_NEGATIVE
    })
}

/// Whether the gateway could create and write files in `dir` (created if missing, as
/// the gateway does).
fn probe_writable(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot be created: {e}"))?;
    let probe = dir.join(format!(".check-config-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| format!("is not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "hpki-gateway-check-{}-{}",
        std::process::id(),
        crate::store::new_id("")
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removed when the check ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects to the store without changing it; an unmigrated store is reported, not
/// refused (the gateway migrates it at start).
async fn check_store(cfg: &Config) -> Result<crate::proxy::StoreContext, String> {
    use crate::store::{SqlStore, Store, StoreError};
    let store = SqlStore::connect(&cfg.store.url, &cfg.base_dir)
        .await
        .map_err(|e| format!("store.url: {e}"))?;
    store.ping().await.map_err(|e| format!("store.url: {e}"))?;
    match store.check_schema().await {
        Ok(()) => {}
        Err(e @ StoreError::SchemaTooNew { .. }) => return Err(format!("store: {e}")),
        Err(e) => println!("  note: {e} (`hpki-gateway run` migrates at start)"),
    }
    Ok(crate::proxy::StoreContext {
        store: std::sync::Arc::new(store),
        csrf_secret: b"check-config".to_vec(),
    })
}

pub fn run(args: RunArgs) -> i32 {
    // The log settings live in the config; a config that cannot be read is reported on
    // stderr by `load` before any logging is needed.
    if let Ok(cfg) = Config::load(&args.config) {
        init_logging_with(
            args.log_json || cfg.log.format == crate::config::LogFormat::Json,
            &cfg.log.level,
        );
    } else {
        init_logging(args.log_json);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let gateway = match load(&args.config, &rt, true) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let listen = gateway.config.server.listen;
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e} (server.listen)");
                return EXIT_NEGATIVE;
            }
        };
        let gateway = Arc::new(gateway);
        match crate::admin::AdminListener::bind(&gateway.config.admin).await {
            Ok(admin) => {
                tracing::info!(admin = %admin.describe(), "admin listener (healthz, readyz, metrics)");
                tokio::spawn(crate::admin::serve(Arc::downgrade(&gateway), admin));
            }
            Err(e) => {
                eprintln!(
                    "error: cannot open the admin listener {}: {e} (admin.listen / admin.socket)",
                    gateway
                        .config
                        .admin
                        .socket
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| gateway.config.admin.listen.to_string())
                );
                return EXIT_NEGATIVE;
            }
        }
        tracing::info!(%listen, profiles = gateway.trust().profiles.len(), routes = gateway.config.routes.len(), "hpki-gateway listening");
        match gateway.serve(listener).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_NEGATIVE
            }
        }
    })
}

pub fn check_config(args: CheckConfigArgs) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    match load(&args.config, &rt, false) {
        Ok(gw) => {
            println!("{}: OK", args.config.display());
            println!(
                "  listen {} ({}, client_auth {})",
                gw.config.server.listen,
                gw.config.server.tls_profile.as_str(),
                gw.config.server.client_auth.as_str()
            );
            for p in &gw.trust().profiles {
                println!(
                    "  trust {:12} kind {:12} anchors {} intermediates {}",
                    p.name,
                    p.kind.as_str(),
                    p.directory.anchors.len(),
                    p.directory.intermediates.len()
                );
            }
            println!(
                "  store {} ({})",
                crate::store::redact_url(&gw.config.store.url),
                gw.store.backend().as_str()
            );
            for r in &gw.config.routes {
                println!(
                    "  route {}{} -> {}",
                    r.host.as_deref().unwrap_or("*"),
                    r.path,
                    r.upstream.authority()
                );
            }
            EXIT_OK
        }
        Err(code) => code,
    }
}

pub fn demo(args: DemoArgs) -> i32 {
    init_logging(false);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let opts = crate::demo::DemoOptions {
        dir: args.dir,
        listen: args.listen,
        portal: args.portal_listen,
        fresh: args.fresh,
    };
    match rt.block_on(crate::demo::run(opts)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_NEGATIVE
        }
    }
}
