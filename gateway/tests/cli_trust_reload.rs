//! `hpki-gateway trust reload` / `trust diff` (clients of the running gateway's admin
//! listener) and the trust.toml windows in `trust status`. The reload and diff cases run
//! against the real binary serving a real configuration; nothing of the gateway is mocked.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{free_port, pki, Gateway, Upstream};

fn hpki(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(args)
        .env_remove("SUDO_USER")
        .output()
        .expect("run hpki-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The standard test configuration, with hpki-auth served from a private copy of its
/// trust directory (returned) so that a test can change it.
fn config_with_own_auth_dir(
    tmp: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    extra: &str,
) -> (String, PathBuf) {
    let auth = tmp.join("trust-hpki-auth");
    copy_dir(&pki().trust("hpki-auth"), &auth);
    let text = support::config(listen, upstream, "hpki-card", "optional", extra).replace(
        &format!("\"{}\"", pki().trust("hpki-auth").display()),
        &format!("\"{}\"", auth.display()),
    );
    assert!(text.contains(&auth.display().to_string()));
    (text, auth)
}

fn pem(name: &str) -> String {
    pki().generated.get(name).unwrap().pem.clone()
}

#[test]
fn an_unreachable_gateway_exits_2_naming_the_admin_address() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (text, _) = config_with_own_auth_dir(
        tmp.path(),
        listen,
        upstream,
        &format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let config = tmp.path().join("gateway.toml");
    std::fs::write(&config, &text).unwrap();
    for args in [
        vec!["trust", "diff", "--config", p(&config)],
        vec!["trust", "reload", "--config", p(&config)],
        vec![
            "trust",
            "reload",
            "--config",
            p(&config),
            "--json",
            "--operator",
            "ops",
        ],
    ] {
        let (code, out, err) = hpki(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("is it running?")
                && err.contains(&format!("admin.listen = 127.0.0.1:{port}")),
            "{args:?}: {err}"
        );
    }

    // On a Unix socket: the message names the socket.
    let socket = tmp.path().join("admin.sock");
    let (text, _) = config_with_own_auth_dir(
        &tmp.path().join("unix"),
        listen,
        upstream,
        &format!("\n[admin]\nsocket = \"{}\"\n", socket.display()),
    );
    let config = tmp.path().join("gateway-unix.toml");
    std::fs::write(&config, &text).unwrap();
    let (code, _, err) = hpki(&["trust", "diff", "--config", p(&config)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("admin.socket = {}", socket.display())),
        "{err}"
    );

    // A configuration that does not validate still names its admin listener: the gateway
    // is asked (here: not running), rather than the command giving up.
    let broken = text.replace("[[route]]\npath = \"/public\"", "[[route]]\npath = 42");
    let config = tmp.path().join("gateway-broken.toml");
    std::fs::write(&config, broken).unwrap();
    let (code, _, err) = hpki(&["trust", "diff", "--config", p(&config)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does not validate") && err.contains("admin.socket = "),
        "{err}"
    );

    // No configuration at all: bad input, said as such.
    let (code, _, err) = hpki(&["trust", "diff", "--config", "/nonexistent/gateway.toml"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn reload_and_diff_against_the_running_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // No file watch: the reloads here are the ones this test asks for.
    let (text, auth) = config_with_own_auth_dir(
        tmp.path(),
        listen,
        upstream.addr,
        "\n[reload]\nwatch = false\n",
    );
    let gw = Gateway::start(&text, listen);
    let config = gw.config.clone();
    let cfg = p(&config);

    // Nothing changed since start.
    let (code, out, err) = hpki(&["trust", "diff", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}\n{}", gw.log_text());
    assert!(out.contains("unchanged"), "{out}");
    let (code, out, err) = hpki(&[
        "trust",
        "reload",
        "--config",
        cfg,
        "--operator",
        "test-operator",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unchanged"), "{out}");

    // A new root: diff says it would be added, reload applies it.
    std::fs::write(
        auth.join("anchors/untrusted-root.pem"),
        pem("untrusted-root"),
    )
    .unwrap();
    let (code, out, err) = hpki(&["trust", "diff", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("would apply") && out.contains("+ anchor"),
        "{out}"
    );
    let (code, out, err) = hpki(&["trust", "diff", "--config", cfg, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "would_apply", "{v}");
    let generation = v["generation"].as_u64().unwrap();
    let (code, out, err) = hpki(&["trust", "reload", "--config", cfg, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "applied", "{v}");
    assert!(v["generation"].as_u64().unwrap() > generation, "{v}");
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("+ anchor hpki-auth")),
        "{v}"
    );

    // A broken trust.toml: refused, every problem printed, the running store kept.
    std::fs::write(
        auth.join("trust.toml"),
        "[[anchor]]\nfile = \"anchors/untrusted-root.pem\"\nnot_before = \"someday\"\n",
    )
    .unwrap();
    let (code, out, err) = hpki(&["trust", "diff", "--config", cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("WOULD REFUSE"), "{out}");
    assert!(
        out.contains("trust.toml") && out.contains("not_before"),
        "{out}"
    );
    let (code, out, err) = hpki(&["trust", "reload", "--config", cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("REFUSED") && out.contains("trust.toml"),
        "{out}"
    );
    // The refusal is about the trust store; the configuration still names the admin
    // listener, and the gateway still answers.
    assert_eq!(gw.admin_get("/healthz").0, 200);

    // Fixed: applies (or is unchanged, if only the window differs and the gateway does
    // not count windows as changes); exit 0 either way.
    std::fs::write(
        auth.join("trust.toml"),
        "[[anchor]]\nfile = \"anchors/untrusted-root.pem\"\nnot_before = \"2099-01-01\"\n",
    )
    .unwrap();
    let (code, out, err) = hpki(&["trust", "reload", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The instant every window below turns on: within the test PKI's validity.
fn t() -> i64 {
    pki().generated.now.unix_timestamp() + 3600
}

#[test]
fn status_shows_each_anchors_window() {
    let tmp = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (text, auth) =
        config_with_own_auth_dir(tmp.path(), listen, "127.0.0.1:9".parse().unwrap(), "");
    std::fs::write(
        auth.join("anchors/untrusted-root.pem"),
        pem("untrusted-root"),
    )
    .unwrap();
    let t = t();
    let at = hpki_gateway::store::format_time(t);
    std::fs::write(
        auth.join("trust.toml"),
        format!(
            "[[anchor]]\nfile = \"anchors/root.pem\"\nnot_after = \"{at}\"\n\n[[anchor]]\nfile = \"anchors/untrusted-root.pem\"\nnot_before = \"{at}\"\n"
        ),
    )
    .unwrap();
    let config = tmp.path().join("gateway.toml");
    std::fs::write(&config, &text).unwrap();
    let before = hpki_gateway::store::format_time(t - 1);

    let (code, out, err) = hpki(&["trust", "status", "--config", p(&config), "--at", &before]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("trust.toml: accepted until {at}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("trust.toml: accepted from {at}  NOT YET ACTIVE")),
        "{out}"
    );
    assert!(out.contains("(retires in 0 days)"), "{out}");
    assert!(
        out.contains("sha256 ") && out.contains("notAfter ") && out.contains("days left"),
        "{out}"
    );

    let (code, out, err) = hpki(&["trust", "status", "--config", p(&config), "--at", &at]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("trust.toml: accepted until {at}  RETIRED")),
        "{out}"
    );
    assert!(!out.contains("NOT YET ACTIVE"), "{out}");

    let (code, out, _) = hpki(&[
        "trust",
        "status",
        "--config",
        p(&config),
        "--at",
        &at,
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let auth_profile = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hpki-auth")
        .unwrap();
    let states: Vec<(&str, &str)> = auth_profile["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["sha256"].as_str().unwrap(),
                a["window"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states.len(), 2, "{auth_profile}");
    assert!(states.iter().any(|(_, s)| *s == "retired"), "{states:?}");
    assert!(states.iter().any(|(_, s)| *s == "active"), "{states:?}");
    // hpki-org has no trust.toml.
    let org = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hpki-org")
        .unwrap();
    assert!(org["anchors"][0]["window"].is_null(), "{org}");

    // A profile whose every anchor is out of its window accepts no card: a problem.
    std::fs::remove_file(auth.join("anchors/untrusted-root.pem")).unwrap();
    std::fs::write(
        auth.join("trust.toml"),
        format!("[[anchor]]\nfile = \"anchors/root.pem\"\nnot_after = \"{at}\"\n"),
    )
    .unwrap();
    let (code, out, _) = hpki(&["trust", "status", "--config", p(&config), "--at", &at]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("hpki-auth: no anchor is accepted"), "{out}");
}
