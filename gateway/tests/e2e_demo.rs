//! `hpki-gateway demo` end to end: the generated clinic ledger lets the clinic's card
//! enter a record that waits for the demo doctor, who confirms it; the demo portal then
//! lists it with who entered and who confirmed it.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(dir: &Path, port: u16, card: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(dir.join("server/server-ca.pem"))
        .arg("--cert")
        .arg(dir.join(format!("pki/certs/{card}.pem")))
        .arg("--key")
        .arg(dir.join(format!("pki/certs/{card}.key")))
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_demo_shows_the_clinic_workflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (port, portal) = (free_port(), free_port());
    let log = tmp.path().join("demo.log");
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
            .args(["demo", "--dir"])
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--portal-listen", &format!("127.0.0.1:{portal}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "demo did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let json = ["-H", "Accept: application/json"];

    let (status, body) = curl(
        &dir,
        port,
        "org-clinic",
        "/records",
        &[
            "-H",
            "Accept: application/json",
            "--data",
            "patient=P-001&note=BP+120%2F80",
        ],
    );
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["pending_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not registered yet.
    let (_, records) = curl(&dir, port, "doctor", "/records", &[]);
    assert!(!records.contains("P-001"), "{records}");

    let (status, list) = curl(&dir, port, "doctor", "/_hpki/pending", &json);
    assert_eq!(status, 200, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["entries"][0]["id"], id.as_str());
    let csrf = format!("csrf={}", list["csrf"].as_str().unwrap());
    let (status, done) = curl(
        &dir,
        port,
        "doctor",
        &format!("/_hpki/pending/{id}/confirm"),
        &["-H", "Accept: application/json", "--data", &csrf],
    );
    assert_eq!(status, 200, "{done}");

    let (_, records) = curl(&dir, port, "doctor", "/records", &[]);
    let row = records
        .split("<tr>")
        .find(|r| r.contains("P-001"))
        .unwrap_or_else(|| panic!("not registered: {records}"));
    assert!(row.contains("BP 120/80"), "{row}");
    assert!(
        row.contains("受付\u{3000}花子 (a-001)"),
        "entered by: {row}"
    );
    assert!(
        row.contains("神楽坂\u{3000}一郎 (Test000001)"),
        "confirmed by: {row}"
    );
    assert!(row.contains(&id), "{row}");
}
