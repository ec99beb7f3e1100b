//! The revocation part of `cert verify --crl FILE --ocsp URL`: the CRL files checked
//! against the validated path with `pki::revocation_check` (the checker the gateway
//! uses), and one OCSP question about the leaf, verified with `pki::ocsp`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::RevocationFetch;
use crate::pki::crl::{CrlReason, UnverifiedCrl, VerifiedCrl};
use crate::pki::ocsp::{self, OcspHash, OcspStatus};
use crate::pki::revocation_check::{CheckDepth, CrlStatus, Freshness, PathCrls};
use crate::pki::{name, ParsedCertificate, Reason, UnixTime, ValidatedPath};

/// Clock skew allowed for OCSP answers and CRL thisUpdate, as the gateway's default
/// (`revocation.clock_skew`).
pub const SKEW_SECS: u64 = 300;
/// An OCSP answer without nextUpdate is accepted this long after its thisUpdate.
const OCSP_MAX_AGE_SECS: u64 = 24 * 3600;
const OCSP_TIMEOUT: Duration = Duration::from_secs(10);
const OCSP_MAX_BYTES: u64 = 1024 * 1024;

/// CRL files as read: every CRL with the index of the file it came from.
pub struct CrlFiles {
    pub files: Vec<PathBuf>,
    pub crls: Vec<UnverifiedCrl>,
    pub file_of: Vec<usize>,
}

impl CrlFiles {
    /// Reads and parses every file; a file that cannot be read or holds no CRL is an
    /// error naming it (bad input).
    pub fn read(files: &[PathBuf]) -> Result<CrlFiles, String> {
        let mut out = CrlFiles {
            files: files.to_vec(),
            crls: Vec::new(),
            file_of: Vec::new(),
        };
        for (i, path) in files.iter().enumerate() {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("--crl {}: cannot be read: {e}", path.display()))?;
            let crls = UnverifiedCrl::parse(&bytes).map_err(|e| {
                format!(
                    "--crl {}: {e} (expected a DER or PEM X.509 CRL)",
                    path.display()
                )
            })?;
            for crl in crls {
                out.crls.push(crl);
                out.file_of.push(i);
            }
        }
        Ok(out)
    }

    fn file(&self, crl_index: usize) -> &Path {
        self.file_of
            .get(crl_index)
            .and_then(|&f| self.files.get(f))
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("?"))
    }
}

/// What one source says about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Good {
        source: String,
    },
    Revoked {
        reason: Option<String>,
        at: Option<UnixTime>,
        source: String,
    },
    Unknown {
        why: String,
    },
}

impl Answer {
    fn json(&self) -> Value {
        match self {
            Answer::Good { source } => json!({"status": "good", "source": source}),
            Answer::Revoked { reason, at, source } => json!({
                "status": "revoked",
                "reason": reason,
                "revoked_at": at.map(UnixTime::to_rfc3339),
                "source": source,
            }),
            Answer::Unknown { why } => json!({"status": "unknown", "why": why}),
        }
    }

    fn text(&self) -> String {
        match self {
            Answer::Good { source } => format!("good ({source})"),
            Answer::Revoked { reason, at, source } => format!(
                "revoked ({}{}, {source})",
                reason.as_deref().unwrap_or("no reason given"),
                at.map(|t| format!(" since {}", t.to_rfc3339()))
                    .unwrap_or_default()
            ),
            Answer::Unknown { why } => format!("unknown: {why}"),
        }
    }
}

/// The revocation status of one certificate of the path.
pub struct CertReport {
    pub depth: usize,
    pub subject: String,
    pub serial: String,
    /// None: no CRL was given.
    pub crl: Option<Answer>,
    /// None: no OCSP responder was given, or not the leaf.
    pub ocsp: Option<Answer>,
}

impl CertReport {
    /// Revoked if any source says so; unknown if a source given could not answer; else
    /// good. None when nothing was checked for this certificate.
    pub fn overall(&self) -> Option<&Answer> {
        let answers: Vec<&Answer> = self.crl.iter().chain(self.ocsp.iter()).collect();
        answers
            .iter()
            .find(|a| matches!(a, Answer::Revoked { .. }))
            .or_else(|| answers.iter().find(|a| matches!(a, Answer::Unknown { .. })))
            .or_else(|| answers.first())
            .copied()
    }
}

/// The CRLs given and what became of them.
pub struct CrlUse {
    pub file: String,
    pub issuer: String,
    pub summary: Option<Value>,
    /// Why the CRL is not used.
    pub ignored: Option<String>,
}

pub struct Report {
    pub sources: Vec<&'static str>,
    pub crls: Vec<CrlUse>,
    pub certificates: Vec<CertReport>,
}

impl Report {
    /// The verdict: `cert_revoked` when any certificate is revoked, else
    /// `revocation_unavailable` when a source given could not answer for the leaf.
    pub fn failure(&self) -> Option<(Reason, String)> {
        for c in &self.certificates {
            if let Some(Answer::Revoked { reason, source, .. }) = c.overall() {
                let what = if c.depth == 0 {
                    "the certificate".to_owned()
                } else {
                    format!("the CA certificate at depth {} ({})", c.depth, c.subject)
                };
                return Some((
                    Reason::CertRevoked,
                    format!(
                        "{what} (serial {}) is revoked ({}) according to {source}",
                        c.serial,
                        reason.as_deref().unwrap_or("no reason given")
                    ),
                ));
            }
        }
        let leaf = self.certificates.first()?;
        let unknown: Vec<String> = leaf
            .crl
            .iter()
            .map(|a| ("crl", a))
            .chain(leaf.ocsp.iter().map(|a| ("ocsp", a)))
            .filter_map(|(src, a)| match a {
                Answer::Unknown { why } => Some(format!("{src}: {why}")),
                _ => None,
            })
            .collect();
        if unknown.is_empty() {
            None
        } else {
            Some((
                Reason::RevocationUnavailable,
                format!(
                    "revocation status of the certificate unknown: {}",
                    unknown.join("; ")
                ),
            ))
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "sources": self.sources,
            "crls": self.crls.iter().map(|c| {
                let mut v = json!({
                    "file": c.file,
                    "issuer": c.issuer,
                    "used": c.ignored.is_none(),
                });
                if let (Some(obj), Some(summary)) = (v.as_object_mut(), c.summary.as_ref()) {
                    if let Some(s) = summary.as_object() {
                        obj.extend(s.clone());
                    }
                }
                if let (Some(obj), Some(why)) = (v.as_object_mut(), c.ignored.as_ref()) {
                    obj.insert("why".into(), json!(why));
                }
                v
            }).collect::<Vec<_>>(),
            "certificates": self.certificates.iter().map(|c| {
                let overall = c.overall();
                json!({
                    "depth": c.depth,
                    "subject": c.subject,
                    "serial": c.serial,
                    "status": match overall {
                        Some(Answer::Good { .. }) => "good",
                        Some(Answer::Revoked { .. }) => "revoked",
                        Some(Answer::Unknown { .. }) => "unknown",
                        None => "not_checked",
                    },
                    "reason": match overall { Some(Answer::Revoked { reason, .. }) => json!(reason), _ => Value::Null },
                    "source": match overall {
                        Some(Answer::Revoked { source, .. } | Answer::Good { source }) => json!(source),
                        _ => Value::Null,
                    },
                    "why": match overall { Some(Answer::Unknown { why }) => json!(why), _ => Value::Null },
                    "crl": c.crl.as_ref().map(Answer::json),
                    "ocsp": c.ocsp.as_ref().map(Answer::json),
                })
            }).collect::<Vec<_>>(),
        })
    }

    pub fn print_text(&self) {
        println!("revocation ({}):", self.sources.join(", "));
        for c in &self.certificates {
            let mut parts = Vec::new();
            if let Some(a) = &c.crl {
                parts.push(format!("crl: {}", a.text()));
            }
            if let Some(a) = &c.ocsp {
                parts.push(format!("ocsp: {}", a.text()));
            }
            let status = match c.overall() {
                Some(Answer::Good { .. }) => "good",
                Some(Answer::Revoked { .. }) => "REVOKED",
                Some(Answer::Unknown { .. }) => "unknown",
                None => "not checked",
            };
            println!(
                "  [{}] {status:8} {}  (serial {})",
                c.depth, c.subject, c.serial
            );
            for p in parts {
                println!("        {p}");
            }
        }
        for c in &self.crls {
            if let Some(why) = &c.ignored {
                println!("  CRL {} not used: {why}", c.file);
            }
        }
    }
}

/// Decimal for numbers up to 128 bits, else hex.
pub fn crl_number_text(n: &[u8]) -> String {
    let trimmed: &[u8] = {
        let zeros = n.iter().take_while(|&&b| b == 0).count();
        &n[zeros..]
    };
    if trimmed.len() <= 16 {
        let mut v: u128 = 0;
        for b in trimmed {
            v = (v << 8) | u128::from(*b);
        }
        v.to_string()
    } else {
        format!("0x{}", name::hex(trimmed))
    }
}

/// The facts of a verified CRL, as `cert verify` and `trust status` print them.
pub fn crl_summary(crl: &VerifiedCrl) -> Value {
    json!({
        "crl_number": crl.crl_number().map(crl_number_text),
        "this_update": crl.this_update().to_rfc3339(),
        "next_update": crl.next_update().map(UnixTime::to_rfc3339),
        "entries": crl.len(),
        "sha256": name::hex(crl.sha256()),
    })
}

fn reason_name(code: Option<u8>) -> Option<String> {
    code.map(|c| {
        CrlReason::from_code(c)
            .map(|r| r.as_str().to_owned())
            .unwrap_or_else(|| format!("reasonCode {c}"))
    })
}

/// Checks the validated path against the CRL files (every certificate below the anchor)
/// and, with `ocsp_url`, asks the responder about the leaf. `extra` may hold separate
/// CRL-signing certificates. Errors (exit 2) name a CRL file that belongs to a CA of
/// the path but does not verify.
pub fn check(
    path: &ValidatedPath,
    files: &CrlFiles,
    extra: &[Arc<ParsedCertificate>],
    ocsp_url: Option<&str>,
    at: UnixTime,
    wall_clock: UnixTime,
) -> Result<Report, String> {
    let mut sources = Vec::new();
    if !files.files.is_empty() {
        sources.push("crl");
    }
    if ocsp_url.is_some() {
        sources.push("ocsp");
    }
    let checked = PathCrls::new(path, &files.crls, extra);
    // A CRL whose issuer is a CA of the path (or a given CA certificate) but that does
    // not verify is broken input, not "no information".
    let known_names: Vec<&Arc<ParsedCertificate>> =
        path.chain.iter().skip(1).chain(extra.iter()).collect();
    let mut uses: Vec<CrlUse> = Vec::new();
    for (i, crl) in files.crls.iter().enumerate() {
        let issuer = name::display(crl.issuer());
        let file = files.file(i).display().to_string();
        if let Some((_, why)) = checked.refused().iter().find(|(r, _)| *r == i) {
            if known_names
                .iter()
                .any(|c| c.subject_key() == crl.issuer_key())
            {
                return Err(format!(
                    "--crl {file}: the CRL of \"{issuer}\" cannot be verified: {why}"
                ));
            }
            uses.push(CrlUse {
                file,
                issuer,
                summary: None,
                ignored: Some(format!(
                    "its issuer \"{}\" is not a CA of this path",
                    name::display(crl.issuer())
                )),
            });
            continue;
        }
        let summary = checked
            .verified()
            .iter()
            .find(|v| v.input == i)
            .map(|v| crl_summary(&v.crl));
        uses.push(CrlUse {
            file,
            issuer,
            summary,
            ignored: None,
        });
    }

    let freshness = Freshness {
        stale_grace: 0,
        clock_skew: SKEW_SECS,
    };
    let statuses = checked.statuses(CheckDepth::Chain, at, freshness);
    let mut certificates = Vec::new();
    for (depth, cert) in path
        .chain
        .iter()
        .enumerate()
        .take(CheckDepth::Chain.count(path))
    {
        let crl = if files.files.is_empty() {
            None
        } else {
            let r = statuses.iter().find(|s| s.depth == depth);
            let source = |input: Option<usize>| {
                let file = input
                    .map(|i| files.file(i).display().to_string())
                    .unwrap_or_default();
                format!("CRL {file}")
            };
            Some(match r.map(|r| (&r.status, r.input)) {
                Some((CrlStatus::Good { crl }, input)) => Answer::Good {
                    source: format!(
                        "{}{}",
                        source(input),
                        crl.crl_number()
                            .map(|n| format!(" #{}", crl_number_text(n)))
                            .unwrap_or_default()
                    ),
                },
                Some((CrlStatus::Revoked { entry, .. }, input)) => Answer::Revoked {
                    reason: entry.reason.map(|r| r.as_str().to_owned()),
                    at: Some(entry.revoked_at),
                    source: source(input),
                },
                // What a CRL lists stays revoked, current or not.
                Some((
                    CrlStatus::Stale {
                        entry: Some(entry), ..
                    },
                    input,
                )) => Answer::Revoked {
                    reason: entry.reason.map(|r| r.as_str().to_owned()),
                    at: Some(entry.revoked_at),
                    source: format!("{} (not current)", source(input)),
                },
                Some((CrlStatus::Stale { why, .. }, _))
                | Some((CrlStatus::Unavailable { why }, _)) => Answer::Unknown { why: why.clone() },
                None => Answer::Unknown {
                    why: "not checked".into(),
                },
            })
        };
        let ocsp = match (depth, ocsp_url) {
            (0, Some(url)) => Some(ask_ocsp(cert, &path.chain[1], url, wall_clock)),
            _ => None,
        };
        certificates.push(CertReport {
            depth,
            subject: name::display(cert.subject()),
            serial: cert.serial_hex(),
            crl,
            ocsp,
        });
    }
    Ok(Report {
        sources,
        crls: uses,
        certificates,
    })
}

/// One OCSP question (POST, bounded, with a nonce), the answer verified at `now`.
fn ask_ocsp(
    cert: &ParsedCertificate,
    issuer: &ParsedCertificate,
    url: &str,
    now: UnixTime,
) -> Answer {
    let source = format!("OCSP {url}");
    let unknown = |why: String| Answer::Unknown { why };
    let mut nonce = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut nonce).is_err() {
        return unknown("no randomness for the nonce".into());
    }
    let request = match ocsp::build_request(cert, issuer, OcspHash::Sha256, Some(&nonce)) {
        Ok(r) => r,
        Err(e) => return unknown(e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return unknown(format!("cannot start the HTTP client: {e}")),
    };
    let fetcher = crate::revocation::Fetcher::new(&RevocationFetch {
        fetch_timeout: OCSP_TIMEOUT,
        ..RevocationFetch::default()
    });
    let body = match runtime.block_on(fetcher.post_ocsp(url, request.der.clone(), OCSP_MAX_BYTES)) {
        Ok(b) => b,
        // The fetch error names the URL already.
        Err(e) => return unknown(format!("OCSP {e}")),
    };
    match ocsp::verify_response(
        &body,
        &request,
        cert,
        issuer,
        now,
        SKEW_SECS,
        OCSP_MAX_AGE_SECS,
    ) {
        Ok(v) => match v.status {
            OcspStatus::Good => Answer::Good { source },
            OcspStatus::Revoked { at, reason } => Answer::Revoked {
                reason: reason_name(reason),
                at: Some(at),
                source,
            },
            OcspStatus::Unknown => unknown(format!(
                "{source}: the responder does not know the certificate"
            )),
        },
        Err(e) => unknown(format!("{source}: {e}")),
    }
}
