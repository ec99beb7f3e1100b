//! Shared helpers for the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// The shared test data directory (`../shared` beside the repository, or
/// `$HPKI_SHARED_DIR`). CI always has it; a missing directory is a test failure with a
/// clear message, never a silent pass.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("HPKI_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        dir.join("hpki").is_dir(),
        "shared test data not found at {} (set HPKI_SHARED_DIR to the directory holding hpki/, limbo/, pkits/)",
        dir.display()
    );
    dir
}
