//! The benchmark harness works (CI runs this; the benchmark itself is never a timed test):
//! its PKI, CRLs and configurations are accepted by the real gateway and by nginx, and
//! its load generator completes small bounded runs against both, with identity
//! forwarded, sessions resumed and the card on the big CRL refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pki_tests::bench::cards::{BenchPki, CrlFiles};
use pki_tests::bench::load::{self, Handshake, Target, TlsClients};
use pki_tests::bench::servers::{self, free_addr, ProxySetup};
use pki_tests::bench::upstream::{Upstream, SMALL_BODY};
use pki_tests::server::ServerKey;

/// Starts the gateway in this process with the harness's configuration.
async fn start_gateway(
    dir: &Path,
    pki: &BenchPki,
    crls: &CrlFiles,
    upstream: std::net::SocketAddr,
    big_crl: bool,
) -> std::net::SocketAddr {
    std::fs::create_dir_all(dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let setup = ProxySetup {
        dir,
        listen: listener.local_addr().unwrap(),
        upstream,
        server: pki.server(ServerKey::EcdsaP256),
        crls,
        big_crl,
    };
    let conf = dir.join("gateway.toml");
    std::fs::write(
        &conf,
        servers::gateway_config(&setup, free_addr().unwrap(), &pki.assertion_key),
    )
    .unwrap();
    let config = hpki_gateway::config::Config::load(&conf)
        .unwrap_or_else(|e| panic!("the harness's gateway.toml is refused:\n{e}"));
    let store = hpki_gateway::proxy::connect_store(&config).await.unwrap();
    let gateway = Arc::new(
        hpki_gateway::proxy::Gateway::build(config, store)
            .unwrap_or_else(|p| panic!("{}", p.join("\n"))),
    );
    tokio::spawn(async move {
        let _ = gateway.serve(listener).await;
    });
    setup.listen
}

fn target(
    addr: std::net::SocketAddr,
    pki: &BenchPki,
    cards: &[pki_tests::bench::cards::Card],
) -> Arc<Target> {
    let ca = std::fs::read(&pki.server(ServerKey::EcdsaP256).ca).unwrap();
    Arc::new(Target {
        addr,
        tls: Some(TlsClients::new(&ca, cards).unwrap()),
    })
}

/// What a proxy answers the card that the big CRL lists.
async fn revoked_card_answer(addr: std::net::SocketAddr, pki: &BenchPki) -> (u16, String) {
    let t = target(addr, pki, std::slice::from_ref(&pki.revoked));
    load::connect(&t, 0, Handshake::Full)
        .await
        .unwrap()
        .get_text("/")
        .await
        .unwrap()
}

fn small_keep_alive(max: u64) -> load::KeepAlive {
    load::KeepAlive {
        connections: 2,
        duration: Duration::from_secs(20),
        max_requests: max,
        path: "/".into(),
        rate: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_completes_bounded_runs_against_the_gateway_and_nginx() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let pki = tokio::task::spawn_blocking({
        let work = work.to_owned();
        move || BenchPki::load_or_generate(&work, 3, &|_| {}).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(pki.cards.len(), 3);
    // A second call reads the cache instead of generating again.
    let again = BenchPki::load_or_generate(work, 3, &|_| panic!("regenerated")).unwrap();
    assert_eq!(again.cards[2].chain_pem, pki.cards[2].chain_pem);
    let crls = pki.write_crls(&work.join("crls"), 20).unwrap();

    let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = upstream_listener.local_addr().unwrap();
    tokio::spawn(
        Upstream {
            big_bytes: 3_000_000,
        }
        .serve(upstream_listener),
    );

    // The gateway: keep-alive, identity forwarded with an assertion, resumption.
    let gw = start_gateway(&work.join("gateway"), &pki, &crls, upstream, false).await;
    let gw_target = target(gw, &pki, &pki.cards);
    let r = load::keep_alive(&gw_target, &small_keep_alive(40), &load::no_cpu)
        .await
        .unwrap();
    assert_eq!((r.ops, r.errors), (40, 0), "{:?}", r.first_error);
    assert_eq!(r.bytes, 40 * SMALL_BODY.len() as u64);
    assert_eq!(r.latencies.len(), 40);
    let mut conn = load::connect(&gw_target, 1, Handshake::Full).await.unwrap();
    let (status, echo) = conn.get_text("/echo").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        echo.contains(&format!("x-hpki-id: {}", pki.cards[1].hpki_id)),
        "{echo}"
    );
    assert!(
        echo.contains("x-hpki-role: Medical%20Doctor")
            || echo.contains("x-hpki-role: Medical Doctor"),
        "{echo}"
    );
    assert!(echo.contains("x-hpki-assertion: "), "{echo}");
    load::warm_sessions(&gw_target, 2).await.unwrap();
    let resumed = load::handshakes(
        &gw_target,
        &load::Handshakes {
            concurrency: 2,
            duration: Duration::from_secs(20),
            max_connections: 6,
            path: "/".into(),
            mode: Handshake::Resumed,
        },
        &load::no_cpu,
    )
    .await
    .unwrap();
    assert_eq!(
        (resumed.ops, resumed.errors),
        (6, 0),
        "{:?}",
        resumed.first_error
    );
    assert_eq!(
        resumed.resumed, 6,
        "every connection of a warmed card resumes"
    );
    let download = load::download(&gw_target, "/big", 1, &load::no_cpu)
        .await
        .unwrap();
    assert_eq!(download.bytes, 3_000_000);

    // The big CRL lists the revoked card, and only that makes the difference.
    let big = start_gateway(&work.join("gateway-big"), &pki, &crls, upstream, true).await;
    for (addr, refused) in [(gw, false), (big, true)] {
        let (status, body) = revoked_card_answer(addr, &pki).await;
        if refused {
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("cert_revoked"), "{body}");
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }

    // nginx with the harness's configuration: the same load, the DN forwarded, and the
    // card on the big CRL refused.
    for big_crl in [false, true] {
        let dir = work.join(if big_crl { "nginx-big" } else { "nginx" });
        std::fs::create_dir_all(&dir).unwrap();
        let setup = ProxySetup {
            dir: &dir,
            listen: free_addr().unwrap(),
            upstream,
            server: pki.server(ServerKey::EcdsaP256),
            crls: &crls,
            big_crl,
        };
        let nginx = tokio::task::block_in_place(|| {
            servers::start_nginx("nginx", &setup, Path::new("nginx"), None)
        })
            .unwrap_or_else(|e| panic!("nginx (needed: deploy/setup.sh installs nginx-light) does not start with the harness's configuration: {e}"));
        let listen = setup.listen;
        assert!(nginx.alive());
        if big_crl {
            let (status, body) = revoked_card_answer(listen, &pki).await;
            assert_eq!(
                status, 400,
                "nginx refuses a revoked card after the handshake: {body}"
            );
        } else {
            let t = target(listen, &pki, &pki.cards);
            let r = load::keep_alive(&t, &small_keep_alive(30), &|| nginx.cpu())
                .await
                .unwrap();
            assert_eq!((r.ops, r.errors), (30, 0), "{:?}", r.first_error);
            assert!(r.server_cpu_us > 0, "nginx's CPU time is read from /proc");
            let (status, echo) = load::connect(&t, 2, Handshake::Full)
                .await
                .unwrap()
                .get_text("/echo")
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert!(
                echo.contains("x-client-dn: ") && echo.contains(&pki.cards[2].hpki_id),
                "{echo}"
            );
            assert!(echo.contains("x-client-verify: SUCCESS"), "{echo}");
            assert!(nginx.pss_kib() > 0 && nginx.rss_kib() > 0);
        }
        tokio::task::spawn_blocking(move || nginx.stop())
            .await
            .unwrap();
    }
}
