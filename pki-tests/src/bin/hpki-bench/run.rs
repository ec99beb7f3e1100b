//! `hpki-bench run`: every scenario, nginx and the gateway alternately, several rounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pki_tests::bench::cards::{BenchPki, Card, CrlFiles, ServerFiles};
use pki_tests::bench::load::{
    self, CpuClock, Handshake, IdleConnections, LoadError, RunResult, Target, TlsClients,
};
use pki_tests::bench::servers::{self, free_addr, ProxySetup, ServerProcess};
use pki_tests::server::ServerKey;

use crate::report::{self, Facts};

/// How much of everything: the full run, or a quick one for developing the harness.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    pub cards: usize,
    pub crl_entries: usize,
    pub rounds: usize,
    /// Length of each measured run.
    pub window: Duration,
    pub keep_alive_connections: usize,
    pub handshake_concurrency: usize,
    pub idle_connections: usize,
    pub big_bytes: u64,
    pub downloads: u64,
}

impl Plan {
    pub const fn full() -> Plan {
        Plan {
            quick: false,
            cards: 2000,
            crl_entries: 1_000_000,
            rounds: 3,
            window: Duration::from_secs(4),
            keep_alive_connections: 32,
            handshake_concurrency: 8,
            idle_connections: 10_000,
            big_bytes: 100_000_000,
            downloads: 2,
        }
    }

    pub const fn quick() -> Plan {
        Plan {
            quick: true,
            cards: 100,
            crl_entries: 100_000,
            rounds: 1,
            window: Duration::from_secs(1),
            keep_alive_connections: 32,
            handshake_concurrency: 8,
            idle_connections: 1000,
            big_bytes: 10_000_000,
            downloads: 1,
        }
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Work directory: the cached PKI, this run's CRLs, configurations and logs.
    #[arg(long)]
    work: PathBuf,
    /// Where a full run writes `<date>.md` (a quick run writes into WORK).
    #[arg(long)]
    results: PathBuf,
    /// Small and short: one round of one second, 100 cards, a 100,000-entry CRL.
    #[arg(long)]
    quick: bool,
    /// The gateway binary (default: `hpki-gateway` beside this program).
    #[arg(long)]
    gateway: Option<PathBuf>,
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// The core the proxies are pinned to (this program should run on another one).
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// The command line that started the run, for the results file.
    #[arg(long, default_value = "bash pki-tests/bench/run.sh")]
    invoked_as: String,
}

/// One measured run, with the serving process's resident set before it and its peak
/// during it.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub run: RunResult,
    pub rss_before_kib: u64,
    pub peak_rss_kib: u64,
}

/// One subject's runs, one per round.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub samples: Vec<Sample>,
}

/// Memory of one server with idle connections open.
#[derive(Debug, Clone, Default)]
pub struct IdleSample {
    pub label: String,
    pub pss_before_kib: u64,
    pub pss_kib: u64,
    pub rss_before_kib: u64,
    pub rss_kib: u64,
    pub opened: usize,
    pub still_open: usize,
    pub failed: u64,
    pub first_error: Option<String>,
    pub open_secs: f64,
}

/// Start-up of one server: time to accept connections, memory once started.
#[derive(Debug, Clone, Default)]
pub struct StartSample {
    pub label: String,
    pub ready_secs: f64,
    pub pss_kib: u64,
}

/// Everything a run measured, for the report.
#[derive(Debug, Default)]
pub struct Measurements {
    pub keep_alive: Vec<Series>,
    pub half_load_rate: f64,
    pub half_load: Vec<Series>,
    pub full: Vec<Series>,
    pub resumed: Vec<Series>,
    pub full_rsa: Vec<Series>,
    pub resumed_rsa: Vec<Series>,
    pub download: Vec<Series>,
    pub idle: Vec<IdleSample>,
    pub starts: Vec<StartSample>,
    pub crl_handshakes: Vec<Series>,
    pub checks: Vec<String>,
    pub warnings: Vec<String>,
}

/// A proxy under test and the load generator's view of it.
struct Proxy {
    label: String,
    server: ServerProcess,
    target: Arc<Target>,
}

impl Proxy {
    fn new(label: &str, server: ServerProcess, ca: &Path, cards: &[Card]) -> Result<Proxy, String> {
        let ca = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        Ok(Proxy {
            label: label.to_owned(),
            target: Arc::new(Target {
                addr: server.addr,
                tls: Some(TlsClients::new(&ca, cards).map_err(|e| e.to_string())?),
            }),
            server,
        })
    }

    fn start_sample(&self) -> StartSample {
        StartSample {
            label: self.label.clone(),
            ready_secs: self.server.ready_after.as_secs_f64(),
            pss_kib: self.server.pss_kib(),
        }
    }
}

/// What one round measures.
#[derive(Clone)]
enum Measure {
    KeepAlive(load::KeepAlive),
    Handshakes(load::Handshakes),
    Download { path: String, count: u64 },
}

/// A subject of a series: a proxy, or the upstream called directly.
struct Subject<'a> {
    label: &'a str,
    target: &'a Arc<Target>,
    server: Option<&'a ServerProcess>,
}

impl<'a> From<&'a Proxy> for Subject<'a> {
    fn from(p: &'a Proxy) -> Subject<'a> {
        Subject {
            label: &p.label,
            target: &p.target,
            server: Some(&p.server),
        }
    }
}

fn log(line: &str) {
    eprintln!("[{:>7.1}s] {line}", started().elapsed().as_secs_f64());
}

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn describe(label: &str, r: &RunResult) -> String {
    format!(
        "{label:<16} {:>9.0}/s  cpu {:>7.1} µs/op  p50 {:.3} p99 {:.3} ms{}{}",
        r.rate(),
        r.cpu_per_op(),
        r.latencies.quantile_ms(0.5),
        r.latencies.quantile_ms(0.99),
        if r.resumed > 0 {
            format!("  resumed {}/{}", r.resumed, r.ops)
        } else {
            String::new()
        },
        if r.errors > 0 {
            format!(
                "  {} ERRORS, first: {}",
                r.errors,
                r.first_error.as_deref().unwrap_or("")
            )
        } else {
            String::new()
        }
    )
}

/// Runs `measure` against every subject, `rounds` times, rotating which goes first.
async fn series(
    title: &str,
    measure: &Measure,
    subjects: &[Subject<'_>],
    rounds: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<Series>, String> {
    let mut out: Vec<Series> = subjects
        .iter()
        .map(|s| Series {
            label: s.label.to_owned(),
            samples: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..subjects.len() {
            let i = (k + round) % subjects.len();
            let subject = &subjects[i];
            let server = subject.server;
            let clock = move || server.map(ServerProcess::cpu).unwrap_or_default();
            let cpu: CpuClock<'_> = &clock;
            let rss_before_kib = server.map(|s| s.rss_kib()).unwrap_or(0);
            if let Some(s) = server {
                s.reset_peak();
            }
            let run = match measure {
                Measure::KeepAlive(o) => load::keep_alive(subject.target, o, cpu).await,
                Measure::Handshakes(o) => load::handshakes(subject.target, o, cpu).await,
                Measure::Download { path, count } => {
                    load::download(subject.target, path, *count, cpu).await
                }
            }
            .map_err(|e: LoadError| format!("{title}, {}: {e}", subject.label))?;
            let peak_rss_kib = server.map(|s| s.peak_rss_kib()).unwrap_or(0);
            log(&format!(
                "{title} round {}: {}",
                round + 1,
                describe(subject.label, &run)
            ));
            if run.errors > 0 {
                warnings.push(format!(
                    "{title}, round {}, {}: {} failed operations (first: {})",
                    round + 1,
                    subject.label,
                    run.errors,
                    run.first_error.as_deref().unwrap_or("")
                ));
            }
            out[i].samples.push(Sample {
                run,
                rss_before_kib,
                peak_rss_kib,
            });
        }
    }
    Ok(out)
}

fn gateway_binary(args: &RunArgs) -> Result<PathBuf, String> {
    match &args.gateway {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe()
            .map(|e| e.with_file_name("hpki-gateway"))
            .map_err(|e| e.to_string()),
    }
}

fn pinned(core: usize, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core.to_string()).arg(program);
    c
}

struct Env<'a> {
    args: &'a RunArgs,
    pki: &'a BenchPki,
    crls: &'a CrlFiles,
    run_dir: &'a Path,
    upstream: SocketAddr,
}

impl Env<'_> {
    fn setup<'b>(
        &'b self,
        dir: &'b Path,
        server: &'b ServerFiles,
        big_crl: bool,
    ) -> Result<ProxySetup<'b>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(ProxySetup {
            dir,
            listen: free_addr().map_err(|e| e.to_string())?,
            upstream: self.upstream,
            server,
            crls: self.crls,
            big_crl,
        })
    }

    fn start_nginx(&self, name: &str, key: ServerKey, big_crl: bool) -> Result<Proxy, String> {
        let dir = self.run_dir.join(name);
        let server = self.pki.server(key);
        let setup = self.setup(&dir, server, big_crl)?;
        let process =
            servers::start_nginx(name, &setup, &self.args.nginx, Some(self.args.server_core))?;
        log(&format!(
            "{name}: pid {} (worker {}), ready in {:.2?}",
            process.pid(),
            process.serving_pid(),
            process.ready_after
        ));
        Proxy::new("nginx", process, &server.ca, &self.pki.cards)
    }

    fn start_gateway(&self, name: &str, key: ServerKey, big_crl: bool) -> Result<Proxy, String> {
        let dir = self.run_dir.join(name);
        let server = self.pki.server(key);
        let setup = self.setup(&dir, server, big_crl)?;
        let admin = free_addr().map_err(|e| e.to_string())?;
        let conf = dir.join("gateway.toml");
        std::fs::write(
            &conf,
            servers::gateway_config(&setup, admin, &self.pki.assertion_key),
        )
        .map_err(|e| e.to_string())?;
        let mut cmd = pinned(self.args.server_core, &gateway_binary(self.args)?);
        // One worker thread, like nginx's one worker process (tokio's own setting; the
        // pinning alone would give the same, since tokio counts the allowed cores).
        cmd.arg("run")
            .arg("--config")
            .arg(&conf)
            .env("TOKIO_WORKER_THREADS", "1");
        let process = ServerProcess::spawn(name, cmd, setup.listen, &dir.join("gateway.log"), 0)?;
        log(&format!(
            "{name}: pid {}, ready in {:.2?}",
            process.pid(),
            process.ready_after
        ));
        Proxy::new("gateway", process, &server.ca, &self.pki.cards)
    }
}

/// Checks before measuring: each proxy forwards the card's identity (and the gateway its
/// assertion); with `revoked`, the revoked card is refused where the big CRL is loaded
/// and admitted elsewhere.
async fn check_proxy(
    proxy: &Proxy,
    pki: &BenchPki,
    expect_revoked_refused: Option<bool>,
    checks: &mut Vec<String>,
) -> Result<(), String> {
    let mut conn = load::connect(&proxy.target, 0, Handshake::Full)
        .await
        .map_err(|e| format!("{} ({}): {e}", proxy.label, proxy.server.label))?;
    let (status, body) = conn.get_text("/echo").await.map_err(|e| e.to_string())?;
    let id = &pki.cards[0].hpki_id;
    if status != 200 || !body.contains(id.as_str()) {
        return Err(format!(
            "{}: /echo answered {status} without the card's id {id}:\n{body}",
            proxy.server.label
        ));
    }
    if proxy.label == "gateway" && !body.contains("x-hpki-assertion: ") {
        return Err(format!(
            "{}: no assertion forwarded:\n{body}",
            proxy.server.label
        ));
    }
    let names: Vec<&str> = body.lines().filter_map(|l| l.split(": ").next()).collect();
    checks.push(format!(
        "{} forwards {} identity headers: {}",
        proxy.server.label,
        names.len(),
        names.join(", ")
    ));
    if let Some(refused) = expect_revoked_refused {
        let ca = &pki.server(ServerKey::EcdsaP256).ca;
        let ca = std::fs::read(ca).map_err(|e| e.to_string())?;
        let target = Arc::new(Target {
            addr: proxy.target.addr,
            tls: Some(
                TlsClients::new(&ca, std::slice::from_ref(&pki.revoked))
                    .map_err(|e| e.to_string())?,
            ),
        });
        let answer = match load::connect(&target, 0, Handshake::Full).await {
            Ok(mut c) => match c.get_text("/").await {
                Ok((status, body)) => {
                    format!("{status} {}", body.chars().take(120).collect::<String>())
                }
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("handshake refused: {e}"),
        };
        let was_refused = !answer.starts_with("200");
        if was_refused != refused {
            return Err(format!(
                "{}: the revoked card was {} ({answer})",
                proxy.server.label,
                if was_refused {
                    "refused without the big CRL"
                } else {
                    "admitted despite the big CRL"
                }
            ));
        }
        checks.push(format!(
            "{}: the card on the big CRL is {} ({})",
            proxy.server.label,
            if refused {
                "refused"
            } else {
                "admitted (empty CRL)"
            },
            answer
                .replace('\n', " ")
                .chars()
                .take(100)
                .collect::<String>()
        ));
    }
    Ok(())
}

async fn idle(proxy: &Proxy, plan: &Plan) -> Result<IdleSample, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (pss_before_kib, rss_before_kib) = (proxy.server.pss_kib(), proxy.server.rss_kib());
    let set = IdleConnections::open(&proxy.target, plan.idle_connections, 32, "/")
        .await
        .map_err(|e| format!("idle connections, {}: {e}", proxy.label))?;
    // Let the server finish what it does after a request (audit records, timers).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sample = IdleSample {
        label: proxy.label.clone(),
        pss_before_kib,
        rss_before_kib,
        pss_kib: proxy.server.pss_kib(),
        rss_kib: proxy.server.rss_kib(),
        opened: set.connections.len(),
        still_open: set.still_open(),
        failed: set.failed,
        first_error: set.first_error.clone(),
        open_secs: set.secs,
    };
    drop(set);
    // The server closes its side and frees the connections before the next subject.
    tokio::time::sleep(Duration::from_secs(2)).await;
    log(&format!(
        "idle: {:<8} {} open ({} still open, {} failed) in {:.1} s: PSS {} -> {} KiB, RSS {} -> {} KiB",
        sample.label,
        sample.opened,
        sample.still_open,
        sample.failed,
        sample.open_secs,
        sample.pss_before_kib,
        sample.pss_kib,
        sample.rss_before_kib,
        sample.rss_kib
    ));
    Ok(sample)
}

fn ensure_running(proxies: &[&Proxy]) -> Result<(), String> {
    for p in proxies {
        if !p.server.alive() {
            return Err(format!(
                "{} is no longer running (log: {})",
                p.server.label,
                p.server.log.display()
            ));
        }
    }
    Ok(())
}

pub fn run(mut args: RunArgs) -> Result<(), String> {
    started();
    // nginx resolves relative paths against its prefix, not the working directory.
    args.work =
        std::path::absolute(&args.work).map_err(|e| format!("{}: {e}", args.work.display()))?;
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let facts = Facts::gather(&args.nginx, &gateway_binary(&args)?, args.server_core);
    log(&format!("load average at start: {}", facts.load_start));
    let pki = BenchPki::load_or_generate(&args.work, plan.cards, &|l| log(l))?;
    let run_dir = args.work.join(if plan.quick { "run-quick" } else { "run" });
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    log(&format!(
        "signing this run's CRLs ({} entries in the big one)...",
        plan.crl_entries
    ));
    let crls = pki.write_crls(&run_dir.join("crls"), plan.crl_entries)?;
    log(&format!(
        "  big CRL: {} entries, {:.1} MiB DER, generated and signed in {:.2?}",
        crls.big_entries,
        crls.big_der_bytes as f64 / 1048576.0,
        crls.big_generate
    ));

    let upstream_addr = free_addr().map_err(|e| e.to_string())?;
    let mut up_cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    up_cmd
        .arg("upstream")
        .arg("--listen")
        .arg(upstream_addr.to_string())
        .arg("--big-bytes")
        .arg(plan.big_bytes.to_string());
    let upstream = ServerProcess::spawn(
        "upstream",
        up_cmd,
        upstream_addr,
        &run_dir.join("upstream.log"),
        0,
    )?;
    let env = Env {
        args: &args,
        pki: &pki,
        crls: &crls,
        run_dir: &run_dir,
        upstream: upstream_addr,
    };
    let rt = crate::single_thread_runtime()?;
    let mut m = Measurements::default();
    let result = rt.block_on(measure_all(&env, &plan, &mut m));
    drop(upstream);
    result?;
    let facts = facts.finish();
    log(&format!("load average at the end: {}", facts.load_end));
    let text = report::markdown(&plan, &facts, &m, &args.invoked_as, &crls);
    let out = if plan.quick {
        args.work.join("quick-results.md")
    } else {
        report::results_path(&args.results)
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{text}");
    log(&format!("results written to {}", out.display()));
    Ok(())
}

async fn measure_all(env: &Env<'_>, plan: &Plan, m: &mut Measurements) -> Result<(), String> {
    let window = plan.window;
    let direct = Arc::new(Target {
        addr: env.upstream,
        tls: None,
    });

    // ---- phase A: ECDSA server certificate, empty CRLs: scenarios 1-5 and 7.
    let nginx = env.start_nginx("nginx-ecdsa", ServerKey::EcdsaP256, false)?;
    let gateway = env.start_gateway("gateway-ecdsa", ServerKey::EcdsaP256, false)?;
    for p in [&nginx, &gateway] {
        check_proxy(p, env.pki, Some(false), &mut m.checks).await?;
        let mut s = p.start_sample();
        s.label = p.server.label.clone();
        m.starts.push(s);
    }
    let subjects = |with_direct: bool| -> Vec<Subject<'_>> {
        let mut v: Vec<Subject<'_>> = vec![(&nginx).into(), (&gateway).into()];
        if with_direct {
            v.push(Subject {
                label: "direct",
                target: &direct,
                server: None,
            });
        }
        v
    };
    let keep_alive = load::KeepAlive {
        connections: plan.keep_alive_connections,
        duration: window,
        max_requests: 50_000_000,
        path: "/".into(),
        rate: None,
    };
    // Warm-up: connections, the upstream pools, caches, the allocator.
    series(
        "warm-up",
        &Measure::KeepAlive(load::KeepAlive {
            duration: Duration::from_secs(1),
            ..keep_alive.clone()
        }),
        &subjects(true),
        1,
        &mut m.warnings,
    )
    .await?;
    m.keep_alive = series(
        "1 keep-alive",
        &Measure::KeepAlive(keep_alive.clone()),
        &subjects(true),
        plan.rounds,
        &mut m.warnings,
    )
    .await?;
    let gateway_rate = report::median(
        m.keep_alive[1]
            .samples
            .iter()
            .map(|s| s.run.rate())
            .collect(),
    );
    m.half_load_rate = (gateway_rate / 2.0).max(100.0);
    m.half_load = series(
        "1 half load",
        &Measure::KeepAlive(load::KeepAlive {
            rate: Some(m.half_load_rate),
            ..keep_alive.clone()
        }),
        &subjects(true),
        plan.rounds,
        &mut m.warnings,
    )
    .await?;
    ensure_running(&[&nginx, &gateway])?;
    let handshakes = load::Handshakes {
        concurrency: plan.handshake_concurrency,
        duration: window,
        max_connections: 10_000_000,
        path: "/".into(),
        mode: Handshake::Full,
    };
    m.full = series(
        "2 full handshakes",
        &Measure::Handshakes(handshakes.clone()),
        &subjects(false),
        plan.rounds,
        &mut m.warnings,
    )
    .await?;
    for p in [&nginx, &gateway] {
        load::warm_sessions(&p.target, plan.handshake_concurrency)
            .await
            .map_err(|e| format!("{}: {e}", p.label))?;
    }
    let resumed = load::Handshakes {
        mode: Handshake::Resumed,
        ..handshakes.clone()
    };
    m.resumed = series(
        "3 resumed handshakes",
        &Measure::Handshakes(resumed.clone()),
        &subjects(false),
        plan.rounds,
        &mut m.warnings,
    )
    .await?;
    m.download = series(
        "4 download",
        &Measure::Download {
            path: "/big".into(),
            count: plan.downloads,
        },
        &subjects(false),
        plan.rounds,
        &mut m.warnings,
    )
    .await?;
    ensure_running(&[&nginx, &gateway])?;
    for p in [&nginx, &gateway] {
        let sample = idle(p, plan).await?;
        if sample.failed > 0 || sample.still_open < sample.opened {
            m.warnings.push(format!(
                "5 idle connections, {}: {} failed to open (first: {}), {} of {} still open when measured",
                sample.label,
                sample.failed,
                sample.first_error.as_deref().unwrap_or("-"),
                sample.still_open,
                sample.opened
            ));
        }
        m.idle.push(sample);
    }
    ensure_running(&[&nginx, &gateway])?;

    // ---- phase B: RSA-2048 server certificate: scenarios 2 and 3 again (the others do
    // not depend on the server's key).
    {
        let nginx_rsa = env.start_nginx("nginx-rsa", ServerKey::Rsa2048, false)?;
        let gateway_rsa = env.start_gateway("gateway-rsa", ServerKey::Rsa2048, false)?;
        let rsa: Vec<Subject<'_>> = vec![(&nginx_rsa).into(), (&gateway_rsa).into()];
        m.full_rsa = series(
            "2 full handshakes, RSA server",
            &Measure::Handshakes(handshakes.clone()),
            &rsa,
            plan.rounds,
            &mut m.warnings,
        )
        .await?;
        for p in [&nginx_rsa, &gateway_rsa] {
            load::warm_sessions(&p.target, plan.handshake_concurrency)
                .await
                .map_err(|e| format!("{}: {e}", p.label))?;
        }
        m.resumed_rsa = series(
            "3 resumed handshakes, RSA server",
            &Measure::Handshakes(resumed.clone()),
            &rsa,
            plan.rounds,
            &mut m.warnings,
        )
        .await?;
        nginx_rsa.server.stop();
        gateway_rsa.server.stop();
    }

    // ---- phase C: the big CRL (scenario 6), against the empty-CRL servers of phase A.
    let nginx_big = env.start_nginx("nginx-big-crl", ServerKey::EcdsaP256, true)?;
    let gateway_big = env.start_gateway("gateway-big-crl", ServerKey::EcdsaP256, true)?;
    for p in [&nginx_big, &gateway_big] {
        let mut s = p.start_sample();
        s.label = p.server.label.clone();
        m.starts.push(s);
        check_proxy(p, env.pki, Some(true), &mut m.checks).await?;
    }
    let crl_subjects: Vec<Subject<'_>> = vec![
        Subject {
            label: "nginx, empty CRL",
            target: &nginx.target,
            server: Some(&nginx.server),
        },
        Subject {
            label: "nginx, big CRL",
            target: &nginx_big.target,
            server: Some(&nginx_big.server),
        },
        Subject {
            label: "gateway, empty CRL",
            target: &gateway.target,
            server: Some(&gateway.server),
        },
        Subject {
            label: "gateway, big CRL",
            target: &gateway_big.target,
            server: Some(&gateway_big.server),
        },
    ];
    m.crl_handshakes = series(
        "6 full handshakes, CRLs",
        &Measure::Handshakes(handshakes.clone()),
        &crl_subjects,
        plan.rounds,
        &mut m.warnings,
    )
    .await?;
    drop(crl_subjects);
    for p in [nginx_big, gateway_big, nginx, gateway] {
        p.server.stop();
    }
    Ok(())
}
