//! Loading a trust-store directory (`anchors/`, `intermediates/`, `crls/`) into
//! certificate pools. Loading is strict: a file that should be a certificate and is not
//! is an error naming the file, never silently skipped, because a half-loaded trust
//! store fails closed in surprising ways.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::pki::{parse_certificates, CertificatePool, ParsedCertificate};

/// File extensions read as certificates.
const CERT_EXTENSIONS: [&str; 4] = ["pem", "der", "crt", "cer"];
/// File extensions read as CRLs (used by revocation).
const CRL_EXTENSIONS: [&str; 2] = ["crl", "pem"];

/// One problem with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub path: PathBuf,
    pub problem: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// Why a trust directory cannot be used; lists every problem, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDirError {
    pub dir: PathBuf,
    pub problems: Vec<FileProblem>,
}

impl std::fmt::Display for TrustDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "trust directory {} cannot be used:", self.dir.display())?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TrustDirError {}

/// The certificates of one trust directory.
#[derive(Debug, Clone, Default)]
pub struct TrustDirectory {
    pub anchors: CertificatePool,
    pub intermediates: CertificatePool,
    /// CRL files found under `crls/` (parsed by the revocation module).
    pub crl_files: Vec<PathBuf>,
    /// Files that were not read because of their extension (README, notes...).
    pub ignored: Vec<PathBuf>,
}

impl TrustDirectory {
    pub fn load(dir: &Path) -> Result<TrustDirectory, TrustDirError> {
        let mut problems = Vec::new();
        let mut store = TrustDirectory::default();
        if !dir.is_dir() {
            return Err(TrustDirError {
                dir: dir.to_owned(),
                problems: vec![FileProblem {
                    path: dir.to_owned(),
                    problem: "is not a directory (expected anchors/, intermediates/, crls/ inside)"
                        .into(),
                }],
            });
        }
        let anchors_dir = dir.join("anchors");
        if anchors_dir.is_dir() {
            for cert in read_cert_dir(&anchors_dir, &mut problems, &mut store.ignored) {
                store.anchors.add(cert);
            }
            if store.anchors.is_empty() && problems.is_empty() {
                problems.push(FileProblem {
                    path: anchors_dir.clone(),
                    problem: "holds no certificate: put the root CA certificates (*.pem, *.der, *.crt) here".into(),
                });
            }
        } else {
            problems.push(FileProblem {
                path: anchors_dir,
                problem: "missing: create it and put the root CA certificates (*.pem, *.der, *.crt) there".into(),
            });
        }
        let intermediates_dir = dir.join("intermediates");
        if intermediates_dir.is_dir() {
            for cert in read_cert_dir(&intermediates_dir, &mut problems, &mut store.ignored) {
                store.intermediates.add(cert);
            }
        }
        let crl_dir = dir.join("crls");
        if crl_dir.is_dir() {
            for path in list_files(&crl_dir, &mut problems) {
                if has_extension(&path, &CRL_EXTENSIONS) {
                    store.crl_files.push(path);
                } else {
                    store.ignored.push(path);
                }
            }
        }
        if problems.is_empty() {
            Ok(store)
        } else {
            Err(TrustDirError {
                dir: dir.to_owned(),
                problems,
            })
        }
    }
}

fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

/// Regular files of a directory, sorted by name so that loading is deterministic.
fn list_files(dir: &Path, problems: &mut Vec<FileProblem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(FileProblem {
                path: dir.to_owned(),
                problem: format!("cannot be read: {e}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn read_cert_dir(
    dir: &Path,
    problems: &mut Vec<FileProblem>,
    ignored: &mut Vec<PathBuf>,
) -> Vec<Arc<ParsedCertificate>> {
    let mut out = Vec::new();
    for path in list_files(dir, problems) {
        if !has_extension(&path, &CERT_EXTENSIONS) {
            ignored.push(path);
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => match parse_certificates(&bytes) {
                Ok(certs) => out.extend(certs.into_iter().map(Arc::new)),
                Err(e) => problems.push(FileProblem {
                    path,
                    problem: format!("{e} (expected a PEM or DER X.509 certificate)"),
                }),
            },
            Err(e) => problems.push(FileProblem {
                path,
                problem: format!("cannot be read: {e}"),
            }),
        }
    }
    out
}

/// One trust profile: a directory of CAs plus what the profile requires and what kind of
/// holder its certificates stand for.
#[derive(Debug, Clone)]
pub struct TrustProfile {
    pub name: String,
    pub kind: crate::pki::CertKind,
    pub required_policies: Vec<crate::pki::PolicyPrefix>,
    pub max_intermediates: usize,
    pub revocation: crate::config::RevocationPolicy,
    pub directory: TrustDirectory,
}

/// Every profile of the running configuration. Immutable once built: a reload builds a
/// new one and swaps it.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    pub profiles: Vec<TrustProfile>,
}

/// A certificate accepted by one profile.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Index into `TrustStore::profiles`.
    pub profile_index: usize,
    pub profile: String,
    pub kind: crate::pki::CertKind,
    pub path: crate::pki::ValidatedPath,
}

impl TrustStore {
    /// DER subjects of every anchor and intermediate, deduplicated: the CertificateRequest
    /// hints that let a browser offer only the cards we can accept.
    pub fn hint_subjects(&self) -> Vec<Vec<u8>> {
        use der::Encode;
        let mut out: Vec<Vec<u8>> = Vec::new();
        for p in &self.profiles {
            for c in p
                .directory
                .anchors
                .iter()
                .chain(p.directory.intermediates.iter())
            {
                if let Ok(der) = c.subject().to_der() {
                    if !out.contains(&der) {
                        out.push(der);
                    }
                }
            }
        }
        out
    }

    /// Validates a login certificate against every profile, in configuration order; the
    /// first that accepts it wins. If none does, the most telling refusal is returned: a
    /// profile that recognised the issuer says more than "untrusted issuer".
    pub fn authenticate(
        &self,
        leaf: &Arc<ParsedCertificate>,
        presented: &[Arc<ParsedCertificate>],
        now: crate::pki::UnixTime,
    ) -> Result<Authenticated, crate::pki::PathError> {
        use crate::pki::{verify_for_login, KeyPurpose, PathOptions, Reason};
        let mut best: Option<crate::pki::PathError> = None;
        for (profile_index, profile) in self.profiles.iter().enumerate() {
            let mut opts = PathOptions::new(now, KeyPurpose::ClientAuth);
            opts.required_policies = profile.required_policies.clone();
            opts.max_intermediates = profile.max_intermediates;
            let dir = &profile.directory;
            match verify_for_login(leaf, presented, &dir.anchors, &dir.intermediates, &opts) {
                Ok(path) => {
                    return Ok(Authenticated {
                        profile_index,
                        profile: profile.name.clone(),
                        kind: profile.kind,
                        path,
                    })
                }
                Err(e) => {
                    let better = match &best {
                        None => true,
                        Some(b) => {
                            b.reason == Reason::UntrustedIssuer
                                && e.reason != Reason::UntrustedIssuer
                        }
                    };
                    if better {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or(crate::pki::PathError {
            reason: Reason::UntrustedIssuer,
            depth: Some(0),
            detail: "no trust profile is configured".into(),
        }))
    }
}
