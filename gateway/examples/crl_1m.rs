//! One CRL with a million entries: load time, memory, lookups per second, and what it
//! costs a login — full mutual-TLS handshakes per second through the real gateway with
//! that CRL in its trust store against an empty CRL.
//!
//! ```text
//! cargo run --release -p hpki-gateway --example crl_1m
//! CRL_1M_ENTRIES=200000 CRL_1M_HANDSHAKES=1000 cargo run --release -p hpki-gateway --example crl_1m
//! ```
//!
//! The CRL is built by `pki_tests::bulk_crl` (its own DER writer, not the `der` crate the
//! gateway parses with; the benchmark harness `pki-tests/bench/` uses it too) and signed
//! with the CA's ECDSA P-256 key; the CA and the client certificates come from rcgen. Everything listens on 127.0.0.1 only and
//! every loop is bounded. Prints a Markdown table (figures in docs/revocation.md).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hpki_gateway::config::Config;
use hpki_gateway::pki::crl::UnverifiedCrl;
use hpki_gateway::pki::ParsedCertificate;
use hpki_gateway::proxy::Gateway;
use pki_tests::bulk_crl::{self, random_serial, CrlIssuer, CrlSigner};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error>;

// ------------------------------------------------------------------ measuring

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so that the next reading is the peak
/// of what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ the PKI

struct Pki {
    ca_pem: String,
    ca: ParsedCertificate,
    ca_pkcs8: Vec<u8>,
    /// (certificate PEM, key PKCS#8 DER) of a client that is not revoked and of one that is.
    good: (String, Vec<u8>),
    revoked: (String, Vec<u8>),
    revoked_serial: [u8; 16],
}

fn make_pki(rng: &aws_lc_rs::rand::SystemRandom) -> Result<Pki, Error> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "JP");
    dn.push(DnType::OrganizationName, "CRL Benchmark");
    dn.push(
        DnType::CommonName,
        "Benchmark CA with a million revocations",
    );
    ca.distinguished_name = dn;
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(365);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.serial_number = Some(SerialNumber::from_slice(&random_serial(rng)?));
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pkcs8 = ca_key.serialize_der();
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |name: &str, serial: [u8; 16]| -> Result<(String, Vec<u8>), Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "JP");
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_der()))
    };
    let revoked_serial = random_serial(rng)?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        ca: ParsedCertificate::from_der(ca_cert.der())?,
        ca_pkcs8,
        good: leaf("Good Doctor", random_serial(rng)?)?,
        revoked: leaf("Revoked Doctor", revoked_serial)?,
        revoked_serial,
    })
}

// ------------------------------------------------------------------ the gateway

struct Running {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    /// `Gateway::build`: config, trust store and CRL files loaded, TLS set up.
    build_time: Duration,
}

/// Starts the gateway in this process with `crl_der` as the CA's only CRL file.
fn start_gateway(dir: &Path, pki: &Pki, crl_der: &[u8]) -> Result<Running, Error> {
    let trust = dir.join("trust");
    for sub in ["anchors", "crls"] {
        std::fs::create_dir_all(trust.join(sub))?;
    }
    std::fs::write(trust.join("anchors/ca.pem"), &pki.ca_pem)?;
    std::fs::write(trust.join("crls/ca.crl"), crl_der)?;
    let server = pki_tests::server::server_identity(&["127.0.0.1"])?;
    std::fs::write(dir.join("server.pem"), &server.chain_pem)?;
    std::fs::write(dir.join("server.key"), &server.key_pem)?;
    std::fs::write(dir.join("server-ca.pem"), &server.ca_pem)?;
    std::fs::write(
        dir.join("assertion.pem"),
        hpki_gateway::assertion::AssertionSigner::generate_pem(),
    )?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let text = format!(
        r#"[server]
listen = "{addr}"
cert = "server.pem"
key = "server.key"
tls_profile = "hpki-card"
client_auth = "required"

[assertion]
key = "assertion.pem"

[[trust]]
name = "bench"
dir = "trust"
kind = "person"
revocation.sources = ["crl"]
revocation.depth = "chain"

[[route]]
path = "/"
upstream = "http://127.0.0.1:9"

[revocation]
hosts = "loopback"
"#
    );
    let config = Config::from_toml_str(&text, dir).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The store (a SQLite file under `dir`) is opened outside the timed part: it is not
    // what this benchmark measures.
    let store = runtime.block_on(hpki_gateway::proxy::connect_store(&config))?;
    let t = Instant::now();
    let gateway = Arc::new(Gateway::build(config, store).map_err(|p| p.join("; "))?);
    let build_time = t.elapsed();
    listener.set_nonblocking(true)?;
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let _ = gateway.serve(listener).await;
    });
    Ok(Running {
        addr,
        runtime,
        build_time,
    })
}

fn client_config(
    server_ca_pem: &Path,
    card: &(String, Vec<u8>),
) -> Result<Arc<rustls::ClientConfig>, Error> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut config = pki_tests::client::card_client_config(
        &std::fs::read(server_ca_pem)?,
        card.0.as_bytes(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(card.1.clone())),
    )?;
    // Every connection a full handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// One full handshake and one request (`/_hpki/whoami`, answered by the gateway after
/// path validation and the revocation check); returns the HTTP status line.
fn one_login(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Result<String, Error> {
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config.clone(), name)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /_hpki/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // Some servers close without close_notify; the response is complete anyway.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// `total` logins over `threads` client threads; logins per second.
fn logins_per_second(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    total: usize,
    threads: usize,
) -> Result<f64, Error> {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let config = config.clone();
            let n = total / threads + usize::from(t < total % threads);
            std::thread::spawn(move || -> Result<(), String> {
                for _ in 0..n {
                    let status = one_login(addr, &config).map_err(|e| e.to_string())?;
                    if !status.contains(" 200") {
                        return Err(format!("login refused: {status}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "client thread panicked")??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Error> {
    let entries = env_usize("CRL_1M_ENTRIES", 1_000_000);
    let handshakes = env_usize("CRL_1M_HANDSHAKES", 4_000);
    let threads = env_usize("CRL_1M_CLIENT_THREADS", 2).max(1);
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let tmp = tempfile::tempdir()?;
    let now = OffsetDateTime::now_utc();

    eprintln!("generating the CA, two clients and a {entries}-entry CRL...");
    let pki = make_pki(&rng)?;
    let issuer = CrlIssuer {
        name_der: der::Encode::to_der(pki.ca.subject())?,
        key_id: Some(pki.ca.subject_key_id().ok_or("the CA has no SKI")?.to_vec()),
        signer: CrlSigner::from_pkcs8(&pki.ca_pkcs8)?,
    };
    let (this_update, next_update) = (
        now - time::Duration::hours(1),
        now + time::Duration::days(7),
    );
    let mut serials: Vec<[u8; 16]> = Vec::with_capacity(entries);
    serials.push(pki.revoked_serial);
    while serials.len() < entries {
        serials.push(random_serial(&rng)?);
    }
    let t = Instant::now();
    let big = bulk_crl::build(&issuer, &serials, 1, this_update, next_update)?;
    let generate = t.elapsed();
    let empty = bulk_crl::build(&issuer, &[] as &[[u8; 16]], 1, this_update, next_update)?;
    let crl_file = tmp.path().join("big.crl");
    std::fs::write(&crl_file, &big)?;
    let der_len = big.len();
    drop(big);

    // Load: read + parse (every entry validated) + verify (signature) and index.
    let (rss0, _) = (proc_status_kib("VmRSS:"), reset_peak());
    let t = Instant::now();
    let bytes = std::fs::read(&crl_file)?;
    let unverified = UnverifiedCrl::from_der_owned(bytes)?;
    let parse = t.elapsed();
    let t = Instant::now();
    let crl = unverified.verify(&pki.ca)?;
    let verify = t.elapsed();
    let (rss1, hwm1) = (proc_status_kib("VmRSS:"), proc_status_kib("VmHWM:"));
    let heap = crl.approx_heap_bytes();
    assert_eq!(crl.len(), entries, "duplicate serials were generated");

    // Lookups: half listed, half not, in random order.
    let mut probes: Vec<[u8; 16]> = Vec::with_capacity(entries);
    for (i, s) in serials.iter().enumerate() {
        probes.push(if i % 2 == 0 { *s } else { random_serial(&rng)? });
    }
    let t = Instant::now();
    let mut hits = 0usize;
    for p in &probes {
        hits += usize::from(crl.lookup(p).is_some());
    }
    let lookup = t.elapsed();
    assert!(hits >= entries / 2, "listed serials not found ({hits})");
    let lookups_per_s = probes.len() as f64 / lookup.as_secs_f64();
    drop((crl, probes, serials));

    // Logins through two gateways, one with the empty CRL and one with the big one,
    // measured in alternating rounds so that drift of the machine hits both alike.
    let big_label = format!("{entries}-entry CRL");
    let mut gateways = Vec::new();
    for (label, crl_der) in [
        ("empty CRL".to_owned(), empty),
        (big_label.clone(), std::fs::read(&crl_file)?),
    ] {
        let dir = tmp.path().join(label.replace(' ', "-"));
        std::fs::create_dir_all(&dir)?;
        let running = start_gateway(&dir, &pki, &crl_der)?;
        drop(crl_der);
        let good = client_config(&dir.join("server-ca.pem"), &pki.good)?;
        let revoked = client_config(&dir.join("server-ca.pem"), &pki.revoked)?;
        // The revoked client is refused only where the big CRL is in use.
        let status = one_login(running.addr, &revoked)?;
        eprintln!("{label}: revoked client -> {status}");
        logins_per_second(running.addr, &good, 100.min(handshakes), threads)?; // warm-up
        gateways.push((label, running, good, !status.contains(" 200")));
    }
    assert!(!gateways[0].3, "the empty CRL refused the revoked client");
    assert!(
        gateways[1].3,
        "the big CRL did not refuse the revoked client"
    );
    const ROUNDS: usize = 5;
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (i, (label, running, good, _)) in gateways.iter().enumerate() {
            let rate = logins_per_second(running.addr, good, handshakes, threads)?;
            eprintln!("round {round}: {label}: {rate:.0} logins/s");
            rates[i].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (empty_rate, big_rate) = (median(&mut rates[0]), median(&mut rates[1]));
    let spread = |v: &[f64]| format!("{:.0}–{:.0}", v[0], v[v.len() - 1]);
    let (empty_spread, big_spread) = (spread(&rates[0]), spread(&rates[1]));
    let (empty_build, big_build) = (gateways[0].1.build_time, gateways[1].1.build_time);
    for (_, running, _, _) in gateways {
        running.runtime.shutdown_background();
    }

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| CRL entries | {entries} |");
    println!("| CRL size (DER) | {:.1} MiB |", der_len as f64 / 1048576.0);
    println!("| generate (hand-built TBS, ECDSA P-256 signature) | {generate:.2?} |");
    println!("| load: read + parse (every entry checked) | {parse:.2?} |");
    println!("| load: verify signature + build index | {verify:.2?} |");
    println!("| load total | {:.2?} |", parse + verify);
    println!(
        "| `approx_heap_bytes` | {:.1} MiB |",
        heap as f64 / 1048576.0
    );
    println!(
        "| VmRSS delta (kept after load) | {:.1} MiB |",
        mib(rss1.saturating_sub(rss0))
    );
    println!(
        "| VmHWM delta (peak during load) | {:.1} MiB |",
        mib(hwm1.saturating_sub(rss0))
    );
    println!(
        "| lookups per second (half listed) | {:.2} M/s |",
        lookups_per_s / 1e6
    );
    println!("| `Gateway::build` with the big CRL / the empty one | {big_build:.2?} / {empty_build:.2?} |");
    println!(
        "| logins/s, empty CRL (median of {ROUNDS} rounds of {handshakes} full mTLS handshakes + 1 request, {threads} client threads) | {empty_rate:.0} (rounds {empty_spread}) |"
    );
    println!("| logins/s, {big_label} | {big_rate:.0} (rounds {big_spread}) |");
    println!("| ratio (big / empty) | {:.3} |", big_rate / empty_rate);
    Ok(())
}
