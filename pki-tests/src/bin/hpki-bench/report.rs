//! The results file: the table (medians over rounds, ratios), each round, the machine, the
//! checks, and how to profile where the gateway loses.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pki_tests::bench::cards::CrlFiles;

use crate::run::{IdleSample, Measurements, Plan, Sample, Series};

/// The machine and software the figures were measured on.
#[derive(Debug, Clone)]
pub struct Facts {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub nginx: String,
    pub openssl: String,
    pub rustc: String,
    pub gateway: String,
    pub commit: String,
    pub client_cpus: String,
    pub server_core: usize,
    pub load_start: String,
    pub load_end: String,
    started: Instant,
    pub minutes: f64,
}

fn command_text(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .trim()
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "(unknown)".into())
}

fn proc_field(file: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| {
            l.split_once(':')
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "(unknown)".into())
}

impl Facts {
    pub fn gather(nginx: &Path, gateway: &Path, server_core: usize) -> Facts {
        let now = time::OffsetDateTime::now_utc();
        Facts {
            date: format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute()
            ),
            cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "(unknown)".into()),
            cores: std::fs::read_to_string("/proc/cpuinfo")
                .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
                .unwrap_or(0),
            memory_gib: proc_field("/proc/meminfo", "MemTotal")
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| kib / 1048576.0)
                .unwrap_or(0.0),
            kernel: command_text("uname", &["-sr"]),
            nginx: command_text(&nginx.display().to_string(), &["-v"]),
            openssl: command_text("openssl", &["version"]),
            rustc: command_text("rustc", &["--version"]),
            gateway: command_text(&gateway.display().to_string(), &["--version"]),
            commit: command_text("git", &["describe", "--always", "--dirty"]),
            client_cpus: proc_field("/proc/self/status", "Cpus_allowed_list")
                .unwrap_or_else(|| "(unknown)".into()),
            server_core,
            load_start: load_average(),
            load_end: String::new(),
            started: Instant::now(),
            minutes: 0.0,
        }
    }

    pub fn finish(mut self) -> Facts {
        self.load_end = load_average();
        self.minutes = self.started.elapsed().as_secs_f64() / 60.0;
        self
    }
}

/// `DIR/<date>.md`, or `DIR/<date>-<HHMM>.md` when a run of the same day is there.
pub fn results_path(dir: &Path) -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let day = format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let plain = dir.join(format!("{day}.md"));
    if plain.exists() {
        dir.join(format!("{day}-{:02}{:02}.md", now.hour(), now.minute()))
    } else {
        plain
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn med(s: &Series, f: impl Fn(&Sample) -> f64) -> f64 {
    median(s.samples.iter().map(f).collect())
}

/// Median over rounds of `f(a) / f(b)`, round by round.
fn ratio(a: &Series, b: &Series, f: impl Fn(&Sample) -> f64) -> f64 {
    median(
        a.samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| f(x) / f(y))
            .collect(),
    )
}

/// Median over rounds of `f(a) - f(b)`.
fn difference(a: &Series, b: &Series, f: impl Fn(&Sample) -> f64) -> f64 {
    median(
        a.samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| f(x) - f(y))
            .collect(),
    )
}

fn find<'a>(series: &'a [Series], label: &str) -> Option<&'a Series> {
    series.iter().find(|s| s.label == label)
}

fn rate(s: &Sample) -> f64 {
    s.run.rate()
}
fn cpu(s: &Sample) -> f64 {
    s.run.cpu_per_op()
}
fn p(q: f64) -> impl Fn(&Sample) -> f64 {
    move |s| s.run.latencies.quantile_ms(q)
}

fn n0(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("−{out}")
    } else {
        out
    }
}

fn f1(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "–".into()
    }
}

fn f2(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".into()
    }
}

fn mib(kib: f64) -> String {
    f1(kib / 1024.0)
}

/// A target's verdict.
struct Verdict {
    scenario: String,
    target: String,
    value: String,
    met: bool,
    hint: Option<String>,
}

fn mark(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

struct Table {
    text: String,
}

impl Table {
    fn new() -> Table {
        let mut text = String::new();
        text.push_str("| # | scenario | measure | nginx | gateway | gateway vs nginx | target |\n");
        text.push_str("|---|---|---|---:|---:|---:|---|\n");
        Table { text }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        n: &str,
        scenario: &str,
        measure: &str,
        nginx: String,
        gateway: String,
        vs: String,
        target: String,
    ) {
        let _ = writeln!(
            self.text,
            "| {n} | {scenario} | {measure} | {nginx} | {gateway} | {vs} | {target} |"
        );
    }
}

/// The rate row and the server-CPU row of a scenario; returns nginx's CPU per operation ÷
/// the gateway's.
#[allow(clippy::too_many_arguments)]
fn rate_and_cpu_rows(
    t: &mut Table,
    n: &str,
    title: &str,
    rate_name: &str,
    cpu_name: &str,
    ng: &Series,
    gw: &Series,
    digits: fn(f64) -> String,
) -> f64 {
    let efficiency = ratio(ng, gw, cpu);
    t.row(
        n,
        title,
        rate_name,
        n0(med(ng, rate)),
        n0(med(gw, rate)),
        format!("{}× (rate)", f2(ratio(gw, ng, rate))),
        String::new(),
    );
    t.row(
        "",
        "",
        cpu_name,
        digits(med(ng, cpu)),
        digits(med(gw, cpu)),
        format!("**{}×** (CPU)", f2(efficiency)),
        format!("≥ 1.2× — {}", mark(efficiency >= 1.2)),
    );
    efficiency
}

/// Rows of one handshake scenario; returns the CPU efficiency (nginx CPU ÷ gateway CPU).
fn handshake_rows(
    t: &mut Table,
    n: &str,
    title: &str,
    series: &[Series],
    verdicts: &mut Vec<Verdict>,
    hint: &str,
) {
    let (Some(ng), Some(gw)) = (find(series, "nginx"), find(series, "gateway")) else {
        return;
    };
    let efficiency = rate_and_cpu_rows(
        t,
        n,
        title,
        "handshakes/s (one request each)",
        "server CPU µs per handshake + request",
        ng,
        gw,
        n0,
    );
    t.row(
        "",
        "",
        "connect+handshake+request p50 / p99 ms",
        format!("{} / {}", f2(med(ng, p(0.5))), f2(med(ng, p(0.99)))),
        format!("{} / {}", f2(med(gw, p(0.5))), f2(med(gw, p(0.99)))),
        String::new(),
        String::new(),
    );
    let resumed: u64 = gw.samples.iter().map(|s| s.run.resumed).sum();
    if resumed > 0 {
        let total: u64 = gw
            .samples
            .iter()
            .chain(&ng.samples)
            .map(|s| s.run.ops)
            .sum();
        let all: u64 = gw
            .samples
            .iter()
            .chain(&ng.samples)
            .map(|s| s.run.resumed)
            .sum();
        t.row(
            "",
            "",
            "connections resumed",
            String::new(),
            String::new(),
            format!("{:.1} %", 100.0 * all as f64 / total.max(1) as f64),
            String::new(),
        );
    }
    verdicts.push(Verdict {
        scenario: format!("{n} {title}"),
        target: "gateway ≥ 1.2× nginx (server CPU per handshake)".into(),
        value: format!(
            "{}× ({} vs {} µs)",
            f2(efficiency),
            n0(med(gw, cpu)),
            n0(med(ng, cpu))
        ),
        met: efficiency >= 1.2,
        hint: Some(hint.to_owned()),
    });
}

fn rounds_table(out: &mut String, title: &str, series: &[Series], per_op: &str) {
    if series.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n**{title}** — per round: rate /s, server CPU µs per {per_op}, p99 ms\n"
    );
    let rounds = series.iter().map(|s| s.samples.len()).max().unwrap_or(0);
    let mut header = "| subject |".to_owned();
    let mut rule = "|---|".to_owned();
    for r in 0..rounds {
        let _ = write!(header, " round {} |", r + 1);
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for s in series {
        let _ = write!(out, "| {} |", s.label);
        for x in &s.samples {
            let errors = if x.run.errors > 0 {
                format!(" ({} errors)", x.run.errors)
            } else {
                String::new()
            };
            let _ = write!(
                out,
                " {} · {} · {}{errors} |",
                n0(x.run.rate()),
                if x.run.server_cpu_us > 0 {
                    f1(x.run.cpu_per_op())
                } else {
                    "–".into()
                },
                f2(x.run.latencies.quantile_ms(0.99))
            );
        }
        out.push('\n');
    }
}

fn idle_of<'a>(idle: &'a [IdleSample], label: &str) -> Option<&'a IdleSample> {
    idle.iter().find(|s| s.label == label)
}

pub fn markdown(
    plan: &Plan,
    facts: &Facts,
    m: &Measurements,
    invoked_as: &str,
    crls: &CrlFiles,
) -> String {
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut t = Table::new();
    let secs = plan.window.as_secs_f64();
    let run_dir = if plan.quick {
        "target/bench/run-quick"
    } else {
        "target/bench/run"
    };
    let profile_hint = |config: &str, mode: &str| {
        format!(
            "start the gateway of this run by hand, pinned: `taskset -c 0 target/release/hpki-gateway run --config {run_dir}/{config}/gateway.toml` (with `hpki-bench upstream --listen <the route's upstream>`), load it from the other core: `taskset -c 1 target/release/hpki-bench load --work target/bench --cards {} --server-ca {} --target <server.listen> --mode {mode} --pid $GW_PID --seconds 20`, and meanwhile `perf record -e cpu-clock -F 999 -g -p $GW_PID -- sleep 15; perf report --no-children`",
            plan.cards,
            if config.ends_with("rsa") { "target/bench/pki-v1-*/server-rsa/server-ca.pem" } else { "target/bench/pki-v1-*/server-ecdsa/server-ca.pem" }
        )
    };

    // 1 and 7: keep-alive, and the upstream directly.
    if let (Some(ng), Some(gw), Some(direct)) = (
        find(&m.keep_alive, "nginx"),
        find(&m.keep_alive, "gateway"),
        find(&m.keep_alive, "direct"),
    ) {
        let efficiency = rate_and_cpu_rows(
            &mut t,
            "1",
            &format!("keep-alive, {} connections", plan.keep_alive_connections),
            "requests/s",
            "server CPU µs per request",
            ng,
            gw,
            f1,
        );
        t.row(
            "",
            "",
            "latency p50 / p99 / p99.9 ms",
            format!(
                "{} / {} / {}",
                f2(med(ng, p(0.5))),
                f2(med(ng, p(0.99))),
                f2(med(ng, p(0.999)))
            ),
            format!(
                "{} / {} / {}",
                f2(med(gw, p(0.5))),
                f2(med(gw, p(0.99))),
                f2(med(gw, p(0.999)))
            ),
            String::new(),
            String::new(),
        );
        verdicts.push(Verdict {
            scenario: "1 keep-alive".into(),
            target: "gateway ≥ 1.2× nginx (server CPU per request)".into(),
            value: format!(
                "{}× ({} vs {} µs)",
                f2(efficiency),
                f1(med(gw, cpu)),
                f1(med(ng, cpu))
            ),
            met: efficiency >= 1.2,
            hint: Some(profile_hint("gateway-ecdsa", "keep-alive")),
        });
        if let (Some(hng), Some(hgw), Some(hdirect)) = (
            find(&m.half_load, "nginx"),
            find(&m.half_load, "gateway"),
            find(&m.half_load, "direct"),
        ) {
            let added_gw = difference(hgw, hdirect, p(0.99));
            let added_ng = difference(hng, hdirect, p(0.99));
            t.row(
                "1",
                &format!(
                    "half load: {} requests/s (½ of the gateway's rate)",
                    n0(m.half_load_rate)
                ),
                "latency p50 / p99 / p99.9 ms",
                format!(
                    "{} / {} / {}",
                    f2(med(hng, p(0.5))),
                    f2(med(hng, p(0.99))),
                    f2(med(hng, p(0.999)))
                ),
                format!(
                    "{} / {} / {}",
                    f2(med(hgw, p(0.5))),
                    f2(med(hgw, p(0.99))),
                    f2(med(hgw, p(0.999)))
                ),
                format!(
                    "direct: {} / {} / {}",
                    f2(med(hdirect, p(0.5))),
                    f2(med(hdirect, p(0.99))),
                    f2(med(hdirect, p(0.999)))
                ),
                String::new(),
            );
            t.row(
                "",
                "",
                "p99 added to the direct call, ms",
                f2(added_ng),
                f2(added_gw),
                String::new(),
                format!("< 1 ms — {}", mark(added_gw < 1.0)),
            );
            verdicts.push(Verdict {
                scenario: "1 half load".into(),
                target: "p99 added latency < 1 ms".into(),
                value: format!("{} ms", f2(added_gw)),
                met: added_gw < 1.0,
                hint: Some(profile_hint("gateway-ecdsa", "keep-alive --rate <half>")),
            });
        }
        t.row(
            "7",
            "the upstream directly (no proxy): the ceiling",
            "requests/s; p50 / p99 ms",
            String::new(),
            String::new(),
            format!(
                "direct {} /s; {} / {} ms; gateway/direct {}×, nginx/direct {}×",
                n0(med(direct, rate)),
                f2(med(direct, p(0.5))),
                f2(med(direct, p(0.99))),
                f2(ratio(gw, direct, rate)),
                f2(ratio(ng, direct, rate))
            ),
            String::new(),
        );
    }

    handshake_rows(
        &mut t,
        "2",
        &format!(
            "full mutual-TLS handshakes, {} cards, {} at once",
            plan.cards, plan.handshake_concurrency
        ),
        &m.full,
        &mut verdicts,
        &profile_hint("gateway-ecdsa", "full"),
    );
    handshake_rows(
        &mut t,
        "3",
        "resumed handshakes (session IDs)",
        &m.resumed,
        &mut verdicts,
        &profile_hint("gateway-ecdsa", "resumed"),
    );
    handshake_rows(
        &mut t,
        "2r",
        "full handshakes, RSA-2048 server certificate",
        &m.full_rsa,
        &mut verdicts,
        &profile_hint("gateway-rsa", "full"),
    );
    handshake_rows(
        &mut t,
        "3r",
        "resumed handshakes, RSA-2048 server certificate",
        &m.resumed_rsa,
        &mut verdicts,
        &profile_hint("gateway-rsa", "resumed"),
    );

    // 4: a big download.
    if let (Some(ng), Some(gw)) = (find(&m.download, "nginx"), find(&m.download, "gateway")) {
        let mbps = |s: &Sample| s.run.bytes as f64 / 1e6 / s.run.secs.max(1e-9);
        let cpu_per_mb =
            |s: &Sample| s.run.server_cpu_us as f64 / (s.run.bytes as f64 / 1e6).max(1e-9);
        let peak = |s: &Sample| s.peak_rss_kib as f64;
        let gw_peak = gw.samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0) as f64;
        let title = format!("{} MB response streamed", plan.big_bytes / 1_000_000);
        t.row(
            "4",
            &title,
            "MB/s",
            n0(med(ng, mbps)),
            n0(med(gw, mbps)),
            format!("{}× (rate)", f2(ratio(gw, ng, mbps))),
            String::new(),
        );
        t.row(
            "",
            "",
            "server CPU µs per MB",
            n0(med(ng, cpu_per_mb)),
            n0(med(gw, cpu_per_mb)),
            format!("{}× (CPU)", f2(ratio(ng, gw, cpu_per_mb))),
            String::new(),
        );
        t.row(
            "",
            "",
            "peak RSS of the serving process, MiB",
            mib(med(ng, peak)),
            mib(gw_peak),
            String::new(),
            format!("gateway < 64 MiB — {}", mark(gw_peak < 64.0 * 1024.0)),
        );
        let growth = |s: &Sample| s.peak_rss_kib.saturating_sub(s.rss_before_kib) as f64;
        t.row(
            "",
            "",
            "of which the download: peak − RSS before it, MiB",
            mib(med(ng, growth)),
            mib(med(gw, growth)),
            String::new(),
            String::new(),
        );
        verdicts.push(Verdict {
            scenario: "4 download".into(),
            target: "gateway peak RSS < 64 MiB".into(),
            value: format!("{} MiB", mib(gw_peak)),
            met: gw_peak < 64.0 * 1024.0,
            hint: Some(profile_hint(
                "gateway-ecdsa",
                "download --path /big --max 5",
            )),
        });
    }

    // 5: idle connections.
    if let (Some(ng), Some(gw)) = (idle_of(&m.idle, "nginx"), idle_of(&m.idle, "gateway")) {
        let per = |s: &IdleSample| {
            (s.pss_kib.saturating_sub(s.pss_before_kib)) as f64 / s.opened.max(1) as f64
        };
        t.row(
            "5",
            &format!(
                "{} idle mutual-TLS connections (after one request each)",
                plan.idle_connections
            ),
            "memory, PSS of all processes, MiB (before → with the connections)",
            format!(
                "{} → {}",
                mib(ng.pss_before_kib as f64),
                mib(ng.pss_kib as f64)
            ),
            format!(
                "{} → {}",
                mib(gw.pss_before_kib as f64),
                mib(gw.pss_kib as f64)
            ),
            format!(
                "{}× (memory)",
                f2(ng.pss_kib as f64 / gw.pss_kib.max(1) as f64)
            ),
            format!("gateway < nginx — {}", mark(gw.pss_kib < ng.pss_kib)),
        );
        t.row(
            "",
            "",
            "growth per connection, KiB",
            f1(per(ng)),
            f1(per(gw)),
            String::new(),
            String::new(),
        );
        t.row(
            "",
            "",
            "connections open when measured / opened",
            format!("{} / {}", ng.still_open, ng.opened),
            format!("{} / {}", gw.still_open, gw.opened),
            String::new(),
            String::new(),
        );
        verdicts.push(Verdict {
            scenario: "5 idle connections".into(),
            target: "gateway memory < nginx's".into(),
            value: format!("{} vs {} MiB", mib(gw.pss_kib as f64), mib(ng.pss_kib as f64)),
            met: gw.pss_kib < ng.pss_kib,
            hint: Some("`valgrind --tool=massif` on the gateway while `hpki-bench load --mode idle --connections 400` holds connections open (pki-tests/bench/README.md)".into()),
        });
    }

    // 6: the big CRL.
    let start = |label: &str| m.starts.iter().find(|s| s.label == label);
    if let (Some(ng_e), Some(ng_b), Some(gw_e), Some(gw_b)) = (
        find(&m.crl_handshakes, "nginx, empty CRL"),
        find(&m.crl_handshakes, "nginx, big CRL"),
        find(&m.crl_handshakes, "gateway, empty CRL"),
        find(&m.crl_handshakes, "gateway, big CRL"),
    ) {
        let title = format!("{}-entry CRL", n0(crls.big_entries as f64));
        if let (Some(sne), Some(snb), Some(sge), Some(sgb)) = (
            start("nginx-ecdsa"),
            start("nginx-big-crl"),
            start("gateway-ecdsa"),
            start("gateway-big-crl"),
        ) {
            t.row(
                "6",
                &format!(
                    "{title} ({:.1} MiB DER)",
                    crls.big_der_bytes as f64 / 1048576.0
                ),
                "start until listening, s (empty CRL → big CRL)",
                format!("{} → {}", f2(sne.ready_secs), f2(snb.ready_secs)),
                format!("{} → {}", f2(sge.ready_secs), f2(sgb.ready_secs)),
                format!("{}× (time)", f2(snb.ready_secs / sgb.ready_secs.max(1e-9))),
                String::new(),
            );
            t.row(
                "",
                "",
                "memory after start, PSS MiB (empty → big)",
                format!("{} → {}", mib(sne.pss_kib as f64), mib(snb.pss_kib as f64)),
                format!("{} → {}", mib(sge.pss_kib as f64), mib(sgb.pss_kib as f64)),
                format!(
                    "{}× (memory)",
                    f2(snb.pss_kib as f64 / sgb.pss_kib.max(1) as f64)
                ),
                String::new(),
            );
        }
        let gw_rate = ratio(gw_b, gw_e, rate);
        let gw_cpu = ratio(gw_b, gw_e, cpu);
        t.row(
            "",
            "",
            "full handshakes/s, big CRL (empty CRL)",
            format!("{} ({})", n0(med(ng_b, rate)), n0(med(ng_e, rate))),
            format!("{} ({})", n0(med(gw_b, rate)), n0(med(gw_e, rate))),
            format!("{}× (rate)", f2(ratio(gw_b, ng_b, rate))),
            String::new(),
        );
        t.row(
            "",
            "",
            "server CPU µs per handshake, big CRL (empty CRL)",
            format!("{} ({})", n0(med(ng_b, cpu)), n0(med(ng_e, cpu))),
            format!("{} ({})", n0(med(gw_b, cpu)), n0(med(gw_e, cpu))),
            format!("**{}×** (CPU)", f2(ratio(ng_b, gw_b, cpu))),
            String::new(),
        );
        let no_loss = gw_rate >= 0.95 && gw_cpu <= 1.05;
        t.row(
            "",
            "",
            "big ÷ empty: rate, CPU per handshake",
            format!(
                "{}, {}",
                f2(ratio(ng_b, ng_e, rate)),
                f2(ratio(ng_b, ng_e, cpu))
            ),
            format!("{}, {}", f2(gw_rate), f2(gw_cpu)),
            String::new(),
            format!(
                "gateway no loss (rate ≥ 0.95, CPU ≤ 1.05) — {}",
                mark(no_loss)
            ),
        );
        verdicts.push(Verdict {
            scenario: "6 big CRL".into(),
            target: "no handshake-rate loss vs an empty CRL".into(),
            value: format!("rate {}×, CPU {}×", f2(gw_rate), f2(gw_cpu)),
            met: no_loss,
            hint: Some("`cargo run --release -p hpki-gateway --example crl_1m` isolates the CRL path; callgrind on it counts instructions".into()),
        });
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmark: hpki-gateway against nginx — {}",
        facts.date
    );
    let _ = writeln!(
        out,
        "\n`{invoked_as}`{} — {:.1} minutes for the measurements (build and PKI generation not included).\n",
        if plan.quick { " (quick: one short round, a smaller PKI and CRL; figures are rough)" } else { "" },
        facts.minutes
    );
    out.push_str("## Results\n\n");
    out.push_str(&t.text);
    out.push_str(
        "\nMedians over the rounds. **gateway vs nginx**: for rates, gateway ÷ nginx (> 1: the gateway is faster); \
for CPU, nginx's server CPU per operation ÷ the gateway's (> 1: the gateway does the same work with less CPU) — \
on this machine the load generator (RSA-2048 client signatures, TLS) saturates its core before a proxy does, so \
rates are capped by the client and **server CPU per operation is the figure that decides \"faster\"**. \
Memory: ratios are nginx ÷ gateway (> 1: the gateway uses less). Ratios are medians of the per-round ratios.\n",
    );

    out.push_str("\n## Targets\n\n| scenario | target | measured | |\n|---|---|---|---|\n");
    for v in &verdicts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            v.scenario,
            v.target,
            v.value,
            mark(v.met)
        );
    }
    let missed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.met).collect();
    if !missed.is_empty() {
        out.push_str("\n### Where the gateway loses: how to profile it\n\n`perf stat` has no hardware counters on these VMs, but `perf record -e cpu-clock` samples; callgrind counts instructions on a small binary (docs in `/work/shared/BENCHMARKING.md`).\n\n");
        for v in missed {
            if let Some(h) = &v.hint {
                let _ = writeln!(out, "- **{}**: {h}.", v.scenario);
            }
        }
    }

    out.push_str("\n## Method\n\n");
    let _ = writeln!(
        out,
        "- Both proxies run with **one worker**: nginx `worker_processes 1` (its master idles), the gateway `TOKIO_WORKER_THREADS=1`; both pinned to **core {}** with `taskset`. The load generator (`hpki-bench`, rustls + hyper, one thread) and the upstream (`hpki-bench upstream`, one thread) share core(s) {}.",
        facts.server_core, facts.client_cpus
    );
    let _ = writeln!(
        out,
        "- Each scenario runs against nginx, the gateway (and the upstream directly where it says so) in turn, {} round(s) of {secs:.0} s, the order rotated every round; connections are set up before the clock starts. Server CPU is `utime + stime` of every process of the server (`/proc/PID/stat`) over the window; peak RSS is `VmHWM` of the serving process, reset before each run (`/proc/PID/clear_refs`); memory of a whole server is the sum of `Pss` (`/proc/PID/smaps_rollup`), which counts pages nginx's master and worker share once.",
        plan.rounds
    );
    let _ = writeln!(
        out,
        "- PKI: the test PKI of `pki-tests` (HPKI-shaped: critical certificatePolicies, hcRole, kanji names), plus {} distinct doctors' cards (RSA-2048, sha256WithRSA) from its `auth-ca`; every client connection presents its card and `auth-ca`. Server certificate ECDSA P-256 (scenarios 2r/3r: RSA-2048). TLS 1.2, ECDHE X25519, AES-128-GCM, client signature RSA PKCS#1 v1.5 (both servers offer no RSA-PSS, like HPKI cards need).",
        plan.cards
    );
    out.push_str("- Half load: open loop, requests released evenly spaced by a pacing thread and sent on the first free connection; latency counts from when each request was due (a server falling behind is charged for the wait). \"Added\" is the median over rounds of p99(proxy) − p99(direct) at the same rate. The client, the pacer and the upstream share one core, so tails include that core's scheduling too (the direct run has less client work: no TLS).\n");
    out.push_str("- Both check revocation from CRL files only, for every certificate of the chain (nginx `ssl_crl` with the root's and auth-ca's CRLs; gateway `revocation.sources = [\"crl\"]`, `depth = \"chain\"`). The gateway also checks the HPKI policy and the doctor's role, builds its identity headers and a signed ES256 assertion per request, and writes a hash-chained audit record per request; nginx forwards `$ssl_client_s_dn`, the serial and the verification result, and writes a buffered access log.\n");
    let _ = writeln!(
        out,
        "- Upstream: a static HTTP/1.1 server answering {} bytes (`/big`: {} MB streamed). Keep-alive from both proxies to it. Configurations: `{run_dir}/*/nginx.conf`, `{run_dir}/*/gateway.toml` (written by `pki-tests/src/bench/servers.rs`).",
        pki_tests::bench::upstream::SMALL_BODY.len(),
        plan.big_bytes / 1_000_000
    );

    out.push_str("\n## Checks done before measuring\n\n");
    for c in &m.checks {
        let _ = writeln!(out, "- {c}");
    }
    if !m.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &m.warnings {
            let _ = writeln!(out, "- {w}");
        }
    }

    out.push_str("\n## Machine\n\n");
    let _ = writeln!(
        out,
        "- CPU: {} × {} cores, {:.1} GiB memory; {}",
        facts.cpu, facts.cores, facts.memory_gib, facts.kernel
    );
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min): {} at the start, {} at the end (the machine is shared)",
        facts.load_start, facts.load_end
    );
    let _ = writeln!(out, "- {}; {}; {}", facts.nginx, facts.openssl, facts.rustc);
    let _ = writeln!(out, "- {} at commit {}", facts.gateway, facts.commit);

    out.push_str("\n## Every round\n");
    rounds_table(&mut out, "1 keep-alive", &m.keep_alive, "request");
    rounds_table(
        &mut out,
        &format!("1 half load ({} requests/s)", n0(m.half_load_rate)),
        &m.half_load,
        "request",
    );
    rounds_table(&mut out, "2 full handshakes", &m.full, "handshake");
    rounds_table(&mut out, "3 resumed handshakes", &m.resumed, "handshake");
    rounds_table(
        &mut out,
        "2r full handshakes, RSA server",
        &m.full_rsa,
        "handshake",
    );
    rounds_table(
        &mut out,
        "3r resumed handshakes, RSA server",
        &m.resumed_rsa,
        "handshake",
    );
    rounds_table(
        &mut out,
        "4 download (rate = downloads/s)",
        &m.download,
        "download",
    );
    rounds_table(
        &mut out,
        "6 full handshakes with CRLs",
        &m.crl_handshakes,
        "handshake",
    );
    out
}
