//! The two proxies as the benchmark runs them: their configurations (equivalent on
//! purpose: client certificates required, the same CA and CRLs, identity forwarded, one
//! worker, keep-alive to the same upstream), their processes, and what `/proc` says about
//! them (CPU time, resident memory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cards::{CrlFiles, ServerFiles};

/// What both proxies are configured from.
#[derive(Debug, Clone)]
pub struct ProxySetup<'a> {
    /// Where the configuration, logs, store and audit log go.
    pub dir: &'a Path,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub server: &'a ServerFiles,
    pub crls: &'a CrlFiles,
    /// The big CRL instead of the empty one.
    pub big_crl: bool,
}

/// The policy OID prefix of HPKI authentication cards (what the test PKI's doctors carry).
pub const AUTH_POLICY_PREFIX: &str = crate::profile::policy::AUTH_PREFIX;

fn toml_path(p: &Path) -> String {
    // TOML basic strings: backslashes and quotes escaped (paths here have neither, but a
    // checkout may live anywhere).
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// `gateway.toml`: one trust profile (root anchor, auth-ca intermediate, CRLs only, the
/// whole chain checked, the HPKI authentication policy required), one route to the
/// upstream for doctors. Everything else at its default — the audit log (a record per
/// request), the store (SQLite), the reload watch, `info` logging — except two timeouts:
/// `header_read` also bounds how long hyper lets a keep-alive connection idle, which the
/// idle-connections scenario needs longer than 10 s (nginx's `client_header_timeout` and
/// `keepalive_timeout` are set to match), and a short shutdown grace.
pub fn gateway_config(setup: &ProxySetup<'_>, admin: SocketAddr, assertion_key: &Path) -> String {
    let trust = if setup.big_crl {
        &setup.crls.trust_big
    } else {
        &setup.crls.trust_empty
    };
    format!(
        r#"# Written by hpki-bench (pki-tests/bench): the gateway side of the comparison.
[server]
listen = "{listen}"
cert = "{cert}"
key = "{key}"
tls_profile = "hpki-card"
client_auth = "required"

[admin]
listen = "{admin}"

[assertion]
key = "{assertion}"

[[trust]]
name = "hpki-auth"
dir = "{trust}"
kind = "person"
require_policies = ["{policy}"]
revocation.sources = ["crl"]
revocation.depth = "chain"

[[route]]
path = "/"
upstream = "http://{upstream}"
allow_roles = ["Medical Doctor"]

[timeouts]
header_read = "60s"
shutdown_grace = "1s"

[store]
url = "sqlite://{store}"

[audit]
dir = "{audit}"
node = "bench"
"#,
        listen = setup.listen,
        cert = toml_path(&setup.server.chain),
        key = toml_path(&setup.server.key_file),
        assertion = toml_path(assertion_key),
        trust = toml_path(trust),
        policy = AUTH_POLICY_PREFIX,
        upstream = setup.upstream,
        store = toml_path(&setup.dir.join("var/hpki-gateway.db")),
        audit = toml_path(&setup.dir.join("audit")),
    )
}

/// `nginx.conf`: what a network engineer would put in front of the portal — one worker,
/// `ssl_verify_client on` against the root, the same CRLs (`ssl_crl` makes OpenSSL check
/// every certificate of the chain, as the gateway's `depth = "chain"`), the same TLS 1.2
/// suites and no RSA-PSS in the CertificateRequest (like the gateway's `hpki-card`
/// profile), session IDs without tickets (the gateway issues no tickets), the subject DN,
/// serial and verification result forwarded, keep-alive to the upstream. The access log
/// is buffered (flushed each second), which is kinder to nginx than the gateway's audit
/// log (a hash-chained record per request, fsynced each second).
pub fn nginx_config(setup: &ProxySetup<'_>, run_as_root: bool) -> String {
    let dir = setup.dir.display();
    let crl = if setup.big_crl {
        setup.crls.nginx_big.display()
    } else {
        setup.crls.nginx_empty.display()
    };
    format!(
        r#"# Written by hpki-bench (pki-tests/bench): the nginx side of the comparison.
{user}worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 16000;
}}

http {{
    access_log {dir}/access.log combined buffer=64k flush=1s;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    client_header_timeout 60s;

    upstream portal {{
        server {upstream};
        keepalive 64;
        keepalive_requests 100000000;
    }}

    server {{
        listen {listen} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_conf_command ClientSignatureAlgorithms RSA+SHA256:RSA+SHA384:RSA+SHA512:ECDSA+SHA256:ECDSA+SHA384;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets off;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_client_certificate {root};
        ssl_crl {crl};

        location / {{
            proxy_pass http://portal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Client-DN $ssl_client_s_dn;
            proxy_set_header X-Client-Serial $ssl_client_serial;
            proxy_set_header X-Client-Verify $ssl_client_verify;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"#,
        user = if run_as_root { "user root;\n" } else { "" },
        upstream = setup.upstream,
        listen = setup.listen,
        cert = setup.server.chain.display(),
        key = setup.server.key_file.display(),
        root = setup.crls.root_pem.display(),
    )
}

/// Whether this process runs as root (nginx's workers then need `user root;` to read what
/// the benchmark wrote).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Creates the directories nginx's configuration names.
pub fn prepare_nginx_dir(dir: &Path) -> std::io::Result<()> {
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("tmp").join(sub))?;
    }
    Ok(())
}

/// Writes `nginx.conf` for `setup` into its directory and starts nginx with it (pinned
/// to `core` when given), waiting for its worker.
pub fn start_nginx(
    label: &str,
    setup: &ProxySetup<'_>,
    nginx: &Path,
    core: Option<usize>,
) -> Result<ServerProcess, String> {
    let dir = setup.dir;
    prepare_nginx_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(setup, running_as_root()))
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    let mut cmd = match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(nginx);
            c
        }
        None => Command::new(nginx),
    };
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"));
    ServerProcess::spawn(label, cmd, setup.listen, &dir.join("stderr.log"), 1)
}

/// A free TCP port on loopback (bound and released: another process could take it in
/// between, which on a benchmark machine does not happen in practice).
pub fn free_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

// ------------------------------------------------------------------ /proc

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

fn stat_ticks(path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum()
}

/// CPU time of some processes at one moment: per thread in nanoseconds
/// (`/proc/PID/task/TID/schedstat`), and for all threads, dead ones included, in clock
/// ticks (`/proc/PID/stat`, 10 ms). See [`CpuTime::since`].
#[derive(Debug, Clone, Default)]
pub struct CpuTime {
    ticks_us: u64,
    threads: Vec<(u32, u64)>,
}

impl CpuTime {
    /// Of processes `pids`.
    pub fn of(pids: impl IntoIterator<Item = u32>) -> CpuTime {
        let mut t = CpuTime::default();
        for pid in pids {
            t.ticks_us +=
                stat_ticks(&format!("/proc/{pid}/stat")) * 1_000_000 / clock_ticks_per_second();
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for tid in tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
                let ns = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
                if let Some(ns) = ns {
                    t.threads.push((tid, ns));
                }
            }
        }
        t
    }

    /// Microseconds of CPU spent since `earlier`: exact (nanoseconds per thread) when
    /// every thread seen then still runs — threads started since count whole — and from
    /// the process totals in clock ticks when one has ended (its time is then only in
    /// those).
    pub fn since(&self, earlier: &CpuTime) -> u64 {
        let mut ns = 0u64;
        for (tid, before) in &earlier.threads {
            match self.threads.iter().find(|(t, _)| t == tid) {
                Some((_, now)) => ns += now.saturating_sub(*before),
                None => return self.ticks_us.saturating_sub(earlier.ticks_us),
            }
        }
        for (tid, now) in &self.threads {
            if !earlier.threads.iter().any(|(t, _)| t == tid) {
                ns += now;
            }
        }
        ns / 1000
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Proportional set size (`Pss` of `/proc/PID/smaps_rollup`), in KiB: resident memory with
/// pages shared between processes (nginx's master and worker) counted once overall.
pub fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so that the next reading is the peak of
/// what follows.
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Children of `pid` (nginx's workers).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                })
                == Some(pid)
        })
        .collect()
}

// ------------------------------------------------------------------ processes

/// A proxy process started by the benchmark, stopped when dropped.
pub struct ServerProcess {
    pub label: String,
    child: Child,
    pub addr: SocketAddr,
    /// nginx's workers (its master is `child`); empty for the gateway.
    workers: Vec<u32>,
    /// From spawn to accepting connections: configuration, trust store and CRLs loaded.
    pub ready_after: Duration,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` (stdout and stderr to `log`) and waits until `addr` accepts TCP
    /// connections and, with `workers`, until the process has forked its workers.
    pub fn spawn(
        label: &str,
        mut command: Command,
        addr: SocketAddr,
        log: &Path,
        workers: usize,
    ) -> Result<ServerProcess, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("{label}: cannot start {command:?}: {e}"))?;
        let mut server = ServerProcess {
            label: label.to_owned(),
            child,
            addr,
            workers: Vec::new(),
            ready_after: Duration::ZERO,
            log: log.to_owned(),
        };
        let deadline = started + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "{label} exited at start ({status}); its log {}:\n{}",
                    log.display(),
                    tail.lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                server.workers = children_of(server.child.id());
                if server.workers.len() >= workers {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{label} did not start listening on {addr} within 180 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        server.ready_after = started.elapsed();
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.child.id()).chain(self.workers.iter().copied())
    }

    /// The process that serves: nginx's worker, the gateway itself.
    pub fn serving_pid(&self) -> u32 {
        self.workers.first().copied().unwrap_or(self.child.id())
    }

    /// CPU time of every process of the server (nginx: master and workers).
    pub fn cpu(&self) -> CpuTime {
        CpuTime::of(self.pids())
    }

    /// Memory of the whole server (nginx: master and workers), PSS in KiB.
    pub fn pss_kib(&self) -> u64 {
        self.pids().map(pss_kib).sum()
    }

    /// Resident set of the serving process, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.serving_pid(), "VmRSS")
    }

    /// Peak resident set of the serving process since [`Self::reset_peak`], KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.serving_pid(), "VmHWM")
    }

    pub fn reset_peak(&self) {
        reset_peak(self.serving_pid());
    }

    /// Whether the server's process still runs (it has not crashed under load).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
            .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if !self.running() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A worker left behind by a master that was killed.
        for w in &self.workers {
            if Path::new(&format!("/proc/{w}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &w.to_string()])
                    .status();
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}
