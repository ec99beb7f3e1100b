//! The deployment files (deploy/, certs/hpki/) against the gateway they deploy:
//!
//! - deploy/config/gateway.toml, the clinic's production config, passes `check-config`
//!   with the real HPKI CAs of certs/hpki, laid out as deploy/README.md installs it; only
//!   what cannot be in the repository is generated (server and assertion keys, the HMAC
//!   key, the clinic's organization CA) and the state directory is moved to a scratch one.
//! - deploy/kubernetes/gateway.toml, the ConfigMap's config, passes `check-config` with
//!   the files where the pods mount them, written as the kubelet writes ConfigMap and
//!   Secret volumes, against PostgreSQL.
//! - Updating such a ConfigMap (and the TLS Secret) in place rotates the trust store and
//!   the server certificate of a running gateway, through its file watch.
//! - The container image copies files that exist and needs no shared library beyond the
//!   slim base image; certs/hpki holds the shared real CAs and its README their
//!   fingerprints.
//!
//! What a schema validator checks (kubernetes-validate, systemd-analyze) is in
//! deploy/check.sh, which scripts/test.sh runs.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use support::{cli, config, curl, error_code, pki, Gateway, Upstream};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The files of a directory or a volume: (name, content), by name.
type Files = Vec<(String, Vec<u8>)>;

/// The regular files of `dir`, by name.
fn files_of(dir: &Path) -> Files {
    let mut out: Files = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (name, bytes) in files_of(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

/// Writes `files` into `dir` as the kubelet writes a ConfigMap or Secret volume, and
/// updates it in place the same way (pkg/volume/util/atomic_writer.go): the files in a
/// new hidden timestamped directory, `..data` switched to it by one rename, a visible
/// symlink `name -> ..data/name` per key, names no longer in the set unlinked, the old
/// directory removed.
fn kubelet_write(dir: &Path, files: &[(String, Vec<u8>)]) {
    use std::os::unix::fs::symlink;
    static GENERATION: AtomicU32 = AtomicU32::new(0);
    std::fs::create_dir_all(dir).unwrap();
    let stamp = format!(
        "..2026_04_01_09_00_00.{:09}",
        GENERATION.fetch_add(1, Ordering::Relaxed)
    );
    std::fs::create_dir(dir.join(&stamp)).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(&stamp).join(name), bytes).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(&stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for name in &names {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !names.contains(name.as_str()) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

fn hmac_key() -> Vec<u8> {
    (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect()
}

/// `hpki-gateway check-config --config FILE` accepts it, and its summary has `lines`.
fn assert_check_config_ok(config: &Path, lines: &[&str]) {
    let (code, out) = cli(&[
        std::ffi::OsStr::new("check-config"),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    for line in lines {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
}

#[test]
fn the_clinic_config_passes_check_config_with_the_real_hpki_cas() {
    let text = read("deploy/config/gateway.toml");
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    let state = root.path().join("var");
    // The state directory is the systemd unit's (StateDirectory=hpki-gateway): the only
    // absolute path the config may name, moved here.
    let unit = read("deploy/systemd/hpki-gateway.service");
    assert!(unit.contains("\nStateDirectory=hpki-gateway "), "{unit}");
    assert!(
        unit.contains(
            "\nExecStart=/usr/local/bin/hpki-gateway run --config /etc/hpki-gateway/gateway.toml\n"
        ),
        "the unit runs the config deploy/README.md installs"
    );
    let moved = text.replace("/var/lib/hpki-gateway", &state.display().to_string());
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("gateway.toml"), &moved).unwrap();
    // The real CAs, as `cp -r certs/hpki/hpki-auth /etc/hpki-gateway/trust/` lays them.
    for sub in ["anchors", "intermediates"] {
        copy_files(
            &repo().join("certs/hpki/hpki-auth").join(sub),
            &etc.join("trust/hpki-auth").join(sub),
        );
    }
    // Not in the repository: the clinic's organization CA, its own keys.
    let p = pki();
    for sub in ["anchors", "intermediates"] {
        copy_files(
            &p.trust("hpki-org").join(sub),
            &etc.join("trust/hpki-org").join(sub),
        );
    }
    std::fs::create_dir_all(etc.join("tls")).unwrap();
    std::fs::create_dir_all(etc.join("keys")).unwrap();
    std::fs::copy(p.server_cert(), etc.join("tls/server-chain.pem")).unwrap();
    std::fs::copy(p.server_key(), etc.join("tls/server.key")).unwrap();
    std::fs::copy(p.assertion_key(), etc.join("keys/assertion-es256.pem")).unwrap();
    std::fs::write(etc.join("keys/audit-hmac.key"), hmac_key()).unwrap();

    assert_check_config_ok(
        &etc.join("gateway.toml"),
        &[
            "listen 0.0.0.0:443 (hpki-card, client_auth required)",
            "trust hpki-auth    kind person       anchors 1 intermediates 1",
            "trust hpki-org     kind organization anchors 1 intermediates 1",
            "(sqlite)",
        ],
    );
    // Everything it writes is under the state directory.
    let cfg = hpki_gateway::config::Config::load(&etc.join("gateway.toml")).unwrap();
    assert!(cfg.audit.dir.starts_with(&state), "{:?}", cfg.audit.dir);
    assert!(
        cfg.store
            .url
            .starts_with(&format!("sqlite://{}/", state.display())),
        "{}",
        cfg.store.url
    );
    assert_eq!(cfg.audit.node, "clinic-gw-1");
    assert!(cfg.audit.hmac_key.is_some());
}

/// The mount paths of deploy/kubernetes/deployment.yaml.
fn pod_mount_paths() -> BTreeSet<String> {
    read("deploy/kubernetes/deployment.yaml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mountPath: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_kubernetes_config_passes_check_config_as_the_pods_mount_it() {
    let Some(store_url) = support::postgres::fresh_database_or_skip(
        "the_kubernetes_config_passes_check_config_as_the_pods_mount_it",
    ) else {
        return;
    };
    let text = read("deploy/kubernetes/gateway.toml");
    let root = tempfile::tempdir().unwrap();
    let at = |pod_path: &str| root.path().join(pod_path.trim_start_matches('/'));
    let cluster_url = "postgres://hpki@hpki-postgres:5432/hpki";
    assert!(text.contains(&format!("url = \"{cluster_url}\"")), "{text}");
    let moved = text
        .replace(cluster_url, &store_url)
        .replace(
            "/etc/hpki-gateway/",
            &format!("{}/", at("/etc/hpki-gateway").display()),
        )
        .replace(
            "/var/lib/hpki-gateway/",
            &format!("{}/", at("/var/lib/hpki-gateway").display()),
        );

    // Each volume as the kubelet writes it, at the pod's mount paths.
    let p = pki();
    let server = |name: &str| std::fs::read(name).unwrap();
    let volumes: Vec<(&str, Files)> = vec![
        (
            "/etc/hpki-gateway/config",
            vec![("gateway.toml".into(), moved.into_bytes())],
        ),
        (
            "/etc/hpki-gateway/trust/hpki-auth/anchors",
            files_of(&repo().join("certs/hpki/hpki-auth/anchors")),
        ),
        (
            "/etc/hpki-gateway/trust/hpki-auth/intermediates",
            files_of(&repo().join("certs/hpki/hpki-auth/intermediates")),
        ),
        (
            "/etc/hpki-gateway/trust/hpki-org/anchors",
            files_of(&p.trust("hpki-org").join("anchors")),
        ),
        (
            "/etc/hpki-gateway/trust/hpki-org/intermediates",
            files_of(&p.trust("hpki-org").join("intermediates")),
        ),
        (
            "/etc/hpki-gateway/tls",
            vec![
                ("tls.crt".into(), server(p.server_cert().to_str().unwrap())),
                ("tls.key".into(), server(p.server_key().to_str().unwrap())),
            ],
        ),
        (
            "/etc/hpki-gateway/keys",
            vec![
                (
                    "assertion-es256.pem".into(),
                    server(p.assertion_key().to_str().unwrap()),
                ),
                ("audit-hmac.key".into(), hmac_key()),
            ],
        ),
    ];
    let mounts = pod_mount_paths();
    for (path, files) in &volumes {
        assert!(
            mounts.contains(*path),
            "{path} is not mounted in deployment.yaml: {mounts:?}"
        );
        kubelet_write(&at(path), files);
    }
    assert!(mounts.contains("/var/lib/hpki-gateway/audit"), "{mounts:?}");
    std::fs::create_dir_all(at("/var/lib/hpki-gateway/audit")).unwrap();

    assert_check_config_ok(
        &at("/etc/hpki-gateway/config/gateway.toml"),
        &[
            "listen 0.0.0.0:8443 (hpki-card, client_auth required)",
            "trust hpki-auth    kind person       anchors 1 intermediates 1",
            "trust hpki-org     kind organization anchors 1 intermediates 1",
            "(postgres)",
        ],
    );
    // No node id in the config: each pod's host name (its own name) is its node.
    let cfg =
        hpki_gateway::config::Config::load(&at("/etc/hpki-gateway/config/gateway.toml")).unwrap();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    if !host.trim().is_empty() {
        assert_eq!(cfg.audit.node, host.trim());
    }
}

#[test]
fn a_configmap_update_rotates_the_trust_store_and_the_server_certificate() {
    let p = pki();
    let root = tempfile::tempdir().unwrap();
    let dir = |rel: &str| root.path().join(rel);
    let mut auth_anchors = files_of(&p.trust("hpki-auth").join("anchors"));
    let mut auth_crls = files_of(&p.trust("hpki-auth").join("crls"));
    for profile in ["hpki-auth", "hpki-org"] {
        for sub in ["anchors", "intermediates", "crls"] {
            kubelet_write(
                &dir(&format!("trust/{profile}/{sub}")),
                &files_of(&p.trust(profile).join(sub)),
            );
        }
    }
    let tls = |cert: &Path, key: &Path| {
        vec![
            ("tls.crt".to_owned(), std::fs::read(cert).unwrap()),
            ("tls.key".to_owned(), std::fs::read(key).unwrap()),
        ]
    };
    kubelet_write(&dir("tls"), &tls(&p.server_cert(), &p.server_key()));

    let upstream = Upstream::start();
    let listen = support::listen_addr();
    let text = config(
        listen,
        upstream.addr,
        "hpki-card",
        "required",
        "\n[reload]\nwatch = true\nwatch_interval = \"300ms\"\ngrace = \"1s\"\n",
    );
    let text = [
        (p.trust("hpki-auth"), dir("trust/hpki-auth")),
        (p.trust("hpki-org"), dir("trust/hpki-org")),
        (p.server_cert(), dir("tls/tls.crt")),
        (p.server_key(), dir("tls/tls.key")),
    ]
    .iter()
    .fold(text, |t, (from, to)| {
        t.replace(&from.display().to_string(), &to.display().to_string())
    });
    let gw = Gateway::start(&text, listen);
    let status = |card: &str, extra: &[&str]| {
        let r = curl(
            &gw,
            Some(card),
            "/",
            &[&["-H", "Accept: application/json"], extra].concat(),
        );
        (r.status, error_code(&r.body))
    };
    let wait_for = |what: &str, card: &str, extra: &[&str], want: u16| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (got, _) = status(card, extra);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still {got}, want {want}\n{}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(status("doctor", &[]).0, 200);
    assert_eq!(
        status("untrusted-doctor", &[]),
        (403, Some("untrusted_issuer".to_owned()))
    );

    // `kubectl apply` of the anchors and CRL ConfigMaps with a new CA generation.
    let unchanged_anchors = auth_anchors.clone();
    let unchanged_crls = auth_crls.clone();
    auth_anchors.push((
        "new-root.pem".into(),
        std::fs::read(p.dir.join("pki/certs/untrusted-root.pem")).unwrap(),
    ));
    auth_crls.push((
        "new-root.crl".into(),
        std::fs::read(p.dir.join("pki/crls/untrusted-root.crl")).unwrap(),
    ));
    kubelet_write(&dir("trust/hpki-auth/crls"), &auth_crls);
    kubelet_write(&dir("trust/hpki-auth/anchors"), &auth_anchors);
    wait_for("the new CA generation", "untrusted-doctor", &[], 200);
    assert_eq!(status("doctor", &[]).0, 200);
    let (_, metrics) = gw.admin_get("/metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("hpki_trust_reloads_total{outcome=\"applied\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // And retired again: the ConfigMap without it.
    kubelet_write(&dir("trust/hpki-auth/anchors"), &unchanged_anchors);
    kubelet_write(&dir("trust/hpki-auth/crls"), &unchanged_crls);
    wait_for("the retired CA", "untrusted-doctor", &[], 403);
    assert_eq!(status("doctor", &[]).0, 200);

    // The TLS Secret renewed in place: new handshakes get the new certificate.
    let b = pki_tests::server::server_identity(&["127.0.0.1", "localhost"]).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (cert_b, key_b, ca_b) = (
        keys.path().join("b.pem"),
        keys.path().join("b.key"),
        keys.path().join("ca-b.pem"),
    );
    std::fs::write(&cert_b, &b.chain_pem).unwrap();
    std::fs::write(&key_b, &b.key_pem).unwrap();
    std::fs::write(&ca_b, &b.ca_pem).unwrap();
    let trust_b = ["--cacert", ca_b.to_str().unwrap()];
    assert_eq!(
        status("doctor", &trust_b).0,
        0,
        "the new CA is not in use yet"
    );
    kubelet_write(&dir("tls"), &tls(&cert_b, &key_b));
    wait_for("the renewed server certificate", "doctor", &trust_b, 200);
}

#[test]
fn the_container_image_copies_what_exists_and_needs_only_the_slim_base() {
    let containerfile = read("deploy/container/Containerfile");
    let ignore = read("deploy/container/Containerfile.dockerignore");
    let stages: Vec<&str> = containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build and a runtime stage: {stages:?}");
    // The builder's toolchain is at least the workspace's rust-version, and builds on the
    // Debian release the runtime runs (the binary's glibc symbols must exist there).
    let builder = stages[0];
    let tag = builder
        .split_once("rust:")
        .and_then(|(_, t)| t.split_once('-'))
        .map(|(v, _)| v)
        .unwrap_or_else(|| panic!("builder {builder} is not rust:VERSION-DEBIAN"));
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    let workspace = read("Cargo.toml");
    let minimum = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        version(tag) >= version(minimum),
        "{tag} < rust-version {minimum}"
    );
    assert!(
        builder.contains("bookworm") && stages[1].contains("debian:bookworm-slim"),
        "{stages:?}"
    );

    // Every file the image copies from the context exists and is not ignored.
    for line in containerfile.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "COPY {src}: no such file in the repository"
            );
            let unignored = format!("!{src}");
            assert!(
                ignore
                    .lines()
                    .any(|l| l == unignored || l == format!("{unignored}/")),
                "COPY {src}: excluded by Containerfile.dockerignore"
            );
        }
    }
    let user = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "runs as {user}"
    );

    // The binary's shared libraries come from packages the runtime stage has: the slim
    // image's own (libc6, and libgcc-s1 / libstdc++6 / zlib1g that apt and dpkg need) or
    // ones it installs.
    let runtime = containerfile.rsplit("\nFROM ").next().unwrap();
    let mut available: BTreeSet<String> = ["libc6", "libgcc-s1", "libstdc++6", "zlib1g"]
        .map(str::to_owned)
        .into();
    for line in runtime.lines() {
        if let Some((_, pkgs)) = line.split_once("apt-get install") {
            available.extend(
                pkgs.split_whitespace()
                    .filter(|w| !w.starts_with('-') && *w != "\\" && *w != "&&")
                    .map(str::to_owned),
            );
        }
    }
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_hpki-gateway"))
        .output()
        .expect("ldd");
    let libs: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(libs.iter().any(|l| l.contains("libc.so")), "ldd: {libs:?}");
    for lib in &libs {
        let real = std::fs::canonicalize(lib).unwrap();
        let owner = Command::new("dpkg")
            .arg("-S")
            .arg(&real)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .or_else(|| {
                Command::new("dpkg")
                    .args(["-S", lib])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
            })
            .unwrap_or_else(|| panic!("no Debian package owns {lib}"));
        let text = String::from_utf8_lossy(&owner.stdout);
        let package = text.split(':').next().unwrap().trim().to_owned();
        assert!(
            available.contains(&package),
            "hpki-gateway links {lib} from {package}, which the runtime image lacks: add it to \
             the runtime stage's apt-get install ({available:?})"
        );
    }
}

#[test]
fn certs_hpki_holds_the_shared_real_cas_and_its_readme_their_fingerprints() {
    let shared = std::env::var_os("HPKI_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    let ca = shared.join("hpki/ca");
    assert!(
        ca.is_dir(),
        "shared CA certificates not found at {}",
        ca.display()
    );
    let readme = read("certs/hpki/README.md");
    let mut shipped = BTreeSet::new();
    for profile in ["hpki-auth", "hpki-sign"] {
        for sub in ["anchors", "intermediates"] {
            for (name, bytes) in files_of(&repo().join("certs/hpki").join(profile).join(sub)) {
                let original = std::fs::read(ca.join(&name)).unwrap_or_else(|e| {
                    panic!("{profile}/{sub}/{name} is not in {}: {e}", ca.display())
                });
                assert!(
                    original == bytes,
                    "{profile}/{sub}/{name} differs from the shared file"
                );
                let cert = hpki_gateway::pki::ParsedCertificate::from_der(&bytes).unwrap();
                let colon = cert
                    .sha256()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":");
                assert!(
                    readme.contains(&colon),
                    "README lacks {name}'s fingerprint {colon}"
                );
                shipped.insert(name);
            }
        }
    }
    let all: BTreeSet<String> = files_of(&ca).into_iter().map(|(n, _)| n).collect();
    assert_eq!(shipped, all, "every shared CA certificate is in a profile");
}
