//! Ending a pulled card's sessions: a token issued to the card while present, posted
//! later without a card (as the workstation agent does), closes every connection of
//! that certificate; a token works once and only when the gateway issued it.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{curl, error_code, gateway};

fn request(conn: &mut impl ReadWrite, path: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = conn.read(&mut buf).ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn a_session_token_ends_the_cards_connections_once() {
    let (gw, upstream) = gateway("hpki-card", "optional");
    let mut doctor = support::card_connection(&gw, "doctor");
    let mut other = support::card_connection(&gw, "pharmacist");
    let answer = request(&mut doctor, "/_hpki/session/token").expect("token answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["end_url"], "/_hpki/session/end");
    assert!(request(&mut other, "/")
        .unwrap()
        .starts_with("HTTP/1.1 200"));

    // A forged token (another certificate's hash with this token's tag) ends nothing.
    let (_, rest) = token.split_once('.').unwrap();
    let forged = format!("{}.{rest}", "0".repeat(64));
    let post = |t: &str| {
        curl(
            &gw,
            None,
            "/_hpki/session/end",
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                &format!("{{\"token\":\"{t}\"}}"),
            ],
        )
    };
    let r = post(&forged);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        error_code(&r.body).as_deref(),
        Some("session_token_invalid")
    );

    // The agent's call, without a card: the doctor's connection is closed.
    let r = post(&token);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["ended"], 1, "{v}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        request(&mut doctor, "/").is_none_or(|a| !a.starts_with("HTTP/1.1 200")),
        "the ended connection still served"
    );
    // Another card's connection is untouched.
    assert!(request(&mut other, "/")
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    // A fresh handshake with the card works again.
    let mut again = support::card_connection(&gw, "doctor");
    assert!(request(&mut again, "/")
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    // Once only.
    let r = post(&token);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("already used"), "{}", r.body);
    // Audited.
    let record = gw
        .audit_record(|r| r["event"] == "session_end")
        .expect("a session_end record");
    assert_eq!(record["cert_sha256"], token.split('.').next().unwrap());
    let _ = upstream.take();
}

/// One client (one TLS session cache) presenting the doctor's card to `addr`; each
/// connection reports whether it resumed a session.
fn doctor_client(
    addr: std::net::SocketAddr,
) -> impl Fn() -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    let p = support::pki();
    let config = std::sync::Arc::new(
        pki_tests::client::card_client_config(
            &std::fs::read(p.server_ca()).unwrap(),
            &std::fs::read(p.cert("doctor")).unwrap(),
            PrivateKeyDer::from_pem_file(p.key("doctor")).unwrap(),
        )
        .unwrap(),
    );
    move || {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

#[test]
fn an_ended_card_cannot_resume_its_tls_session() {
    use rustls::HandshakeKind;
    let (gw, _upstream) = gateway("hpki-card", "optional");
    let connect = doctor_client(gw.addr);

    let mut first = connect();
    let answer = request(&mut first, "/_hpki/session/token").expect("token answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(first);

    // Without an end, the client resumes its session (no card signature needed).
    let mut second = connect();
    assert!(request(&mut second, "/")
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    drop(second);

    let r = curl(
        &gw,
        None,
        "/_hpki/session/end",
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("{{\"token\":\"{token}\"}}"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // After the end, the cached session is refused: a full handshake, with the card.
    let mut third = connect();
    assert!(request(&mut third, "/")
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert_eq!(third.conn.handshake_kind(), Some(HandshakeKind::Full));
}
