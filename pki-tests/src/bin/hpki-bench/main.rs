//! `hpki-bench`: the gateway against nginx, side by side in one run.
//!
//! `bash pki-tests/bench/run.sh` builds the release binaries and calls `hpki-bench pki`
//! (the cached PKI, on every core) then `taskset -c 1 hpki-bench run` (everything else,
//! the load generator on core 1, the proxies pinned to core 0). `upstream` and `load` are
//! the pieces, for profiling one scenario by hand (README of `pki-tests/bench/`).

mod report;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use pki_tests::bench::cards::BenchPki;
use pki_tests::bench::load::{self, Handshake, Target, TlsClients};
use pki_tests::bench::upstream::Upstream;

#[derive(Parser)]
#[command(
    name = "hpki-bench",
    about = "hpki-gateway against nginx, side by side"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate (or find cached) the benchmark PKI under WORK.
    Pki {
        #[arg(long, value_name = "WORK")]
        work: PathBuf,
        /// Distinct client cards.
        #[arg(long, default_value_t = run::Plan::full().cards)]
        cards: usize,
    },
    /// Run every scenario against nginx and the gateway and write the results table.
    Run(run::RunArgs),
    /// Serve the static upstream (small page, `/big`, `/echo`) until killed.
    Upstream {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 100_000_000)]
        big_bytes: u64,
    },
    /// One load run against a running proxy (or, without --server-ca, a plain HTTP
    /// server), printing what it measured.
    Load(LoadArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    KeepAlive,
    Full,
    Resumed,
    Download,
    /// Open `--connections` connections (one request each), hold them `--seconds`.
    Idle,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[arg(long)]
    target: SocketAddr,
    /// The server's CA (PEM); without it the target is plain HTTP.
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// The work directory holding the cached PKI (`hpki-bench pki`).
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = run::Plan::full().cards)]
    cards: usize,
    #[arg(long, value_enum, default_value = "keep-alive")]
    mode: Mode,
    /// Connections (keep-alive) or connections set up at once (handshakes).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most requests or connections.
    #[arg(long, default_value_t = 10_000_000)]
    max: u64,
    /// Requests per second (keep-alive); default as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "/")]
    path: String,
    /// The server's pid, to report its CPU time per operation.
    #[arg(long)]
    pid: Option<u32>,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Pki { work, cards } => {
            BenchPki::load_or_generate(&work, cards, &|line| eprintln!("{line}")).map(|p| {
                println!("{}", p.dir.display());
            })
        }
        Command::Run(args) => run::run(args),
        Command::Upstream { listen, big_bytes } => serve_upstream(listen, big_bytes),
        Command::Load(args) => load_once(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hpki-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The load generator and the upstream run on one thread each: they share the client
/// core.
pub fn single_thread_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

fn serve_upstream(listen: SocketAddr, big_bytes: u64) -> Result<(), String> {
    let rt = single_thread_runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        Upstream { big_bytes }.serve(listener).await;
        Ok(())
    })
}

fn load_once(args: LoadArgs) -> Result<(), String> {
    let tls = match &args.server_ca {
        Some(ca) => {
            let pki = BenchPki::load_or_generate(&args.work, args.cards, &|l| eprintln!("{l}"))?;
            let ca = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            Some(TlsClients::new(&ca, &pki.cards).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let target = Arc::new(Target {
        addr: args.target,
        tls,
    });
    let pid = args.pid;
    let cpu = move || pki_tests::bench::servers::CpuTime::of(pid);
    let duration = Duration::from_secs(args.seconds);
    let rt = single_thread_runtime()?;
    if matches!(args.mode, Mode::Idle) {
        return rt.block_on(async {
            let rss = |label: &str| {
                if let Some(pid) = pid {
                    println!(
                        "server {label}: RSS {} KiB, PSS {} KiB",
                        pki_tests::bench::servers::status_kib(pid, "VmRSS"),
                        pki_tests::bench::servers::pss_kib(pid)
                    );
                }
            };
            rss("before");
            let set = load::IdleConnections::open(&target, args.connections, 32, &args.path)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{} open ({} failed, first: {}) in {:.1} s; holding them {} s",
                set.connections.len(),
                set.failed,
                set.first_error.as_deref().unwrap_or("-"),
                set.secs,
                args.seconds
            );
            tokio::time::sleep(duration).await;
            println!("{} still open", set.still_open());
            rss("with them");
            Ok(())
        });
    }
    let r = rt
        .block_on(async {
            match args.mode {
                Mode::KeepAlive => {
                    let opts = load::KeepAlive {
                        connections: args.connections,
                        duration,
                        max_requests: args.max,
                        path: args.path.clone(),
                        rate: args.rate,
                    };
                    load::keep_alive(&target, &opts, &cpu).await
                }
                Mode::Full | Mode::Resumed => {
                    let mode = if matches!(args.mode, Mode::Full) {
                        Handshake::Full
                    } else {
                        load::warm_sessions(&target, args.connections).await?;
                        Handshake::Resumed
                    };
                    let opts = load::Handshakes {
                        concurrency: args.connections,
                        duration,
                        max_connections: args.max,
                        path: args.path.clone(),
                        mode,
                    };
                    load::handshakes(&target, &opts, &cpu).await
                }
                Mode::Download => load::download(&target, &args.path, args.max, &cpu).await,
                Mode::Idle => unreachable!("handled above"),
            }
        })
        .map_err(|e| e.to_string())?;
    println!(
        "{} ok, {} errors in {:.2} s: {:.0}/s; latency p50 {:.3} ms p99 {:.3} ms p99.9 {:.3} ms; {} resumed; {} body bytes{}",
        r.ops,
        r.errors,
        r.secs,
        r.rate(),
        r.latencies.quantile_ms(0.5),
        r.latencies.quantile_ms(0.99),
        r.latencies.quantile_ms(0.999),
        r.resumed,
        r.bytes,
        if pid.is_some() {
            format!("; server CPU {:.1} µs per operation", r.cpu_per_op())
        } else {
            String::new()
        }
    );
    if let Some(e) = r.first_error {
        println!("first error: {e}");
    }
    Ok(())
}
