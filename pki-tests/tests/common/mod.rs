//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pki_tests::{GenerateOptions, Manifest, TestPki};

/// `shared/hpki` with the real HPKI certificates. `HPKI_SHARED_DIR` names the shared data
/// directory (holding `hpki/`, `limbo/`, `pkits/`), as for every test of the workspace;
/// by default it is `shared/` beside the repository checkout, as on developer machines and
/// in CI. Missing data is a failure, not a skip, because the byte-for-byte checks are the
/// point of this crate.
pub fn shared_hpki_dir() -> PathBuf {
    let shared = std::env::var_os("HPKI_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("hpki");
    assert!(
        dir.join("README.md").is_file(),
        "real HPKI data not found at {} (set HPKI_SHARED_DIR to the directory holding hpki/)",
        dir.display()
    );
    dir
}

pub fn real_cert(relative: &str) -> Vec<u8> {
    let path = shared_hpki_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub struct OpensslOutput {
    pub success: bool,
    /// stdout and stderr together: `openssl verify` splits its verdict across both.
    pub text: String,
}

pub fn openssl(args: &[&str], cwd: &Path) -> OpensslOutput {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the openssl CLI must be installed");
    OpensslOutput {
        success: output.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// One generated PKI per test process: RSA key generation dominates the run time. It
/// lives in cargo's per-target scratch directory, one directory per process, because
/// cargo-nextest runs every test as its own process, in parallel: a shared directory would
/// be deleted under another test's feet. Directories of earlier runs are swept after an
/// hour; the last ones stay for inspecting a failure.
pub fn generated() -> &'static (PathBuf, TestPki, Manifest) {
    static GENERATED: OnceLock<(PathBuf, TestPki, Manifest)> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        sweep_stale(scratch);
        let binary = module_path!().split("::").next().unwrap_or("tests");
        let dir = scratch.join(format!("testpki-{binary}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("clear a directory left by a reused pid");
        }
        let pki = TestPki::generate(&GenerateOptions::default()).expect("generate test PKI");
        let manifest = pki.write_to(&dir).expect("write test PKI");
        (dir, pki, manifest)
    })
}

fn sweep_stale(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        let ours = entry.file_name().to_string_lossy().starts_with("testpki-");
        if ours && stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn certs_dir() -> PathBuf {
    generated().0.join("certs")
}
