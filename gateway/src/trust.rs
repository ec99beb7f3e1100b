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
    /// Staged rotation: the windows in which some anchors are accepted, from the
    /// directory's `trust.toml` (empty without one). An anchor with no window is accepted
    /// whenever it is valid.
    pub schedule: Vec<AnchorWindow>,
}

/// The file in a trust directory that schedules anchors (staged rotation).
pub const SCHEDULE_FILE: &str = "trust.toml";

/// When one anchor is accepted, from `trust.toml`:
///
/// ```toml
/// [[anchor]]
/// file = "anchors/root-2027.pem"   # or sha256 = "ab12..." (the certificate's SHA-256)
/// not_before = "2026-12-01T00:00:00+09:00"  # optional; RFC 3339 or a date (midnight JST)
/// not_after = "2027-03-31"                  # optional, exclusive
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorWindow {
    /// SHA-256 of the anchor certificate's DER.
    pub anchor_sha256: [u8; 32],
    /// Accepted from this time (Unix seconds, inclusive).
    pub not_before: Option<i64>,
    /// Accepted until this time (Unix seconds, exclusive).
    pub not_after: Option<i64>,
}

/// Where `now` falls in an [`AnchorWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    NotYetActive,
    Active,
    Retired,
}

impl AnchorWindow {
    pub fn state(&self, now: crate::pki::UnixTime) -> WindowState {
        let now = i64::try_from(now.0).unwrap_or(i64::MAX);
        if self.not_before.is_some_and(|nb| now < nb) {
            WindowState::NotYetActive
        } else if self.not_after.is_some_and(|na| now >= na) {
            WindowState::Retired
        } else {
            WindowState::Active
        }
    }

    pub fn is_active(&self, now: crate::pki::UnixTime) -> bool {
        self.state(now) == WindowState::Active
    }

    /// "accepted from 2026-12-01T00:00:00+09:00 until 2027-03-31T00:00:00+09:00" (either
    /// bound may be missing), times in Japan time.
    pub fn describe(&self) -> String {
        use crate::store::format_time;
        match (self.not_before, self.not_after) {
            (Some(nb), Some(na)) => format!(
                "accepted from {} until {}",
                format_time(nb),
                format_time(na)
            ),
            (Some(nb), None) => format!("accepted from {}", format_time(nb)),
            (None, Some(na)) => format!("accepted until {}", format_time(na)),
            (None, None) => "accepted always".to_owned(),
        }
    }
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
        let schedule_path = dir.join(SCHEDULE_FILE);
        if schedule_path.exists() {
            store.schedule = load_schedule(dir, &schedule_path, &store.anchors, &mut problems);
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

    /// The `trust.toml` window of an anchor, if it has one.
    pub fn window(&self, anchor_sha256: &[u8; 32]) -> Option<&AnchorWindow> {
        self.schedule
            .iter()
            .find(|w| &w.anchor_sha256 == anchor_sha256)
    }

    /// Whether the anchor with this SHA-256 is accepted at `now` according to
    /// `trust.toml`: `Err` says why not ("anchor <subject> is accepted from ... (trust.toml)").
    /// An anchor without a window is always active here (its own validity is checked by
    /// path validation).
    pub fn anchor_active(
        &self,
        anchor_sha256: &[u8; 32],
        now: crate::pki::UnixTime,
    ) -> Result<(), String> {
        let Some(w) = self.window(anchor_sha256) else {
            return Ok(());
        };
        let subject = || {
            self.anchors
                .iter()
                .find(|c| c.sha256() == anchor_sha256)
                .map(|c| crate::pki::name::display(c.subject()))
                .unwrap_or_else(|| crate::pki::name::hex(anchor_sha256))
        };
        match w.state(now) {
            WindowState::Active => Ok(()),
            WindowState::NotYetActive => Err(format!(
                "anchor \"{}\" is accepted from {} ({SCHEDULE_FILE})",
                subject(),
                crate::store::format_time(w.not_before.unwrap_or_default())
            )),
            WindowState::Retired => Err(format!(
                "anchor \"{}\" was accepted until {} ({SCHEDULE_FILE})",
                subject(),
                crate::store::format_time(w.not_after.unwrap_or_default())
            )),
        }
    }

    /// The windows as comparable lines, one per scheduled anchor, sorted:
    /// `window <anchor subject> <first 8 bytes of its SHA-256, hex> accepted from … until …`.
    /// A reload that compares inventories needs these: a change of trust.toml alone
    /// changes what is accepted.
    pub fn schedule_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .schedule
            .iter()
            .map(|w| {
                let subject = self
                    .anchors
                    .iter()
                    .find(|c| c.sha256() == &w.anchor_sha256)
                    .map(|c| crate::pki::name::display(c.subject()))
                    .unwrap_or_default();
                format!(
                    "window {subject} {} {}",
                    crate::pki::name::hex(&w.anchor_sha256[..8]),
                    w.describe()
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Whether some anchor is outside its window at `now`.
    fn has_inactive_anchor(&self, now: crate::pki::UnixTime) -> bool {
        self.schedule.iter().any(|w| !w.is_active(now))
    }

    /// The anchors accepted at `now`.
    fn active_anchors(&self, now: crate::pki::UnixTime) -> CertificatePool {
        CertificatePool::from_certs(
            self.anchors
                .iter()
                .filter(|c| self.window(c.sha256()).is_none_or(|w| w.is_active(now)))
                .cloned(),
        )
    }
}

/// Reads `trust.toml`; every problem is reported naming the file and the key.
fn load_schedule(
    dir: &Path,
    path: &Path,
    anchors: &CertificatePool,
    problems: &mut Vec<FileProblem>,
) -> Vec<AnchorWindow> {
    let mut push = |problem: String| {
        problems.push(FileProblem {
            path: path.to_owned(),
            problem,
        })
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            push(format!("cannot be read: {e}"));
            return Vec::new();
        }
    };
    let table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            // toml's Display is a multi-line snippet; its first line is the position.
            let rendered = e.to_string();
            let position = rendered.lines().next().unwrap_or("TOML parse error");
            push(format!(
                "{position}: {}: fix the TOML syntax there",
                e.message()
            ));
            return Vec::new();
        }
    };
    let mut out: Vec<AnchorWindow> = Vec::new();
    for (key, value) in &table {
        if key != "anchor" {
            push(format!(
                "unknown key `{key}`: {SCHEDULE_FILE} holds only [[anchor]] tables"
            ));
            continue;
        }
        let Some(entries) = value.as_array() else {
            push("`anchor` must be an array of tables: write each as [[anchor]]".into());
            continue;
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("[[anchor]] #{}", i + 1);
            let Some(entry) = entry.as_table() else {
                push(format!("{at} must be a table: write it as [[anchor]]"));
                continue;
            };
            if let Some(w) = schedule_entry(dir, &at, entry, anchors, &mut push) {
                if let Some(j) = out.iter().position(|o| o.anchor_sha256 == w.anchor_sha256) {
                    push(format!(
                        "{at} names the same anchor as [[anchor]] #{}: give each anchor one window",
                        j + 1
                    ));
                } else {
                    out.push(w);
                }
            }
        }
    }
    out
}

/// One `[[anchor]]` table; `None` (after reporting) when it cannot be used.
fn schedule_entry(
    dir: &Path,
    at: &str,
    entry: &toml::Table,
    anchors: &CertificatePool,
    push: &mut impl FnMut(String),
) -> Option<AnchorWindow> {
    const KEYS: [&str; 4] = ["file", "sha256", "not_before", "not_after"];
    let mut ok = true;
    for key in entry.keys() {
        if !KEYS.contains(&key.as_str()) {
            push(format!(
                "{at}: unknown key `{key}` (expected one of file, sha256, not_before, not_after)"
            ));
            ok = false;
        }
    }
    let mut string = |key: &str, push: &mut dyn FnMut(String)| -> Option<String> {
        match entry.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            // A TOML date or date-time written without quotes.
            toml::Value::Datetime(d) if key.starts_with("not_") => Some(d.to_string()),
            v => {
                push(format!(
                    "{at}: `{key}` must be a string in quotes, found {}",
                    v.type_str()
                ));
                ok = false;
                None
            }
        }
    };
    let file = string("file", push);
    let sha = string("sha256", push);
    let not_before_text = string("not_before", push);
    let not_after_text = string("not_after", push);
    let mut time = |key: &str, text: Option<String>| -> Option<i64> {
        let text = text?;
        match crate::store::parse_time(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                push(format!("{at}: `{key}`: {e}"));
                ok = false;
                None
            }
        }
    };
    let not_before = time("not_before", not_before_text);
    let not_after = time("not_after", not_after_text);
    if let (Some(nb), Some(na)) = (not_before, not_after) {
        if nb >= na {
            push(format!(
                "{at}: `not_before` ({}) must be before `not_after` ({}, exclusive)",
                crate::store::format_time(nb),
                crate::store::format_time(na)
            ));
            ok = false;
        }
    }
    let anchor_sha256 = match (file, sha) {
        (Some(_), Some(_)) => {
            push(format!("{at}: give either `file` or `sha256`, not both"));
            None
        }
        (None, None) => {
            push(format!(
                "{at}: names no anchor: add `file = \"anchors/<root>.pem\"` or `sha256 = \"<hex>\"`"
            ));
            None
        }
        (Some(file), None) => schedule_file_anchor(dir, at, &file, anchors, push),
        (None, Some(hex)) => {
            let digits: String = hex
                .chars()
                .filter(|c| !matches!(c, ':' | ' '))
                .collect::<String>()
                .to_ascii_lowercase();
            match crate::pki::name::parse_sha256_hex(&digits) {
                None => {
                    push(format!(
                        "{at}: `sha256` {hex:?} is not a SHA-256 in hex (64 hex digits, as `hpki-gateway cert inspect` prints)"
                    ));
                    None
                }
                Some(d) if anchors.iter().any(|c| c.sha256() == &d) => Some(d),
                Some(_) => {
                    push(format!(
                        "{at}: `sha256` {hex} is the fingerprint of no certificate in anchors/"
                    ));
                    None
                }
            }
        }
    };
    let anchor_sha256 = anchor_sha256?;
    ok.then_some(AnchorWindow {
        anchor_sha256,
        not_before,
        not_after,
    })
}

fn schedule_file_anchor(
    dir: &Path,
    at: &str,
    file: &str,
    anchors: &CertificatePool,
    push: &mut impl FnMut(String),
) -> Option<[u8; 32]> {
    let path = dir.join(file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            push(format!(
                "{at}: `file` {file:?} cannot be read ({e}): name a file under {}, such as anchors/<root>.pem",
                dir.display()
            ));
            return None;
        }
    };
    let certs = match parse_certificates(&bytes) {
        Ok(c) => c,
        Err(e) => {
            push(format!("{at}: `file` {file:?} is not a certificate: {e}"));
            return None;
        }
    };
    let [cert] = certs.as_slice() else {
        push(format!(
            "{at}: `file` {file:?} holds {} certificates: name one anchor per [[anchor]] (use `sha256` for one of a bundle)",
            certs.len()
        ));
        return None;
    };
    if anchors.iter().any(|c| c.sha256() == cert.sha256()) {
        Some(*cert.sha256())
    } else {
        push(format!(
            "{at}: `file` {file:?} is not one of the anchors in anchors/ (certificate \"{}\")",
            crate::pki::name::display(cert.subject())
        ));
        None
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

/// One trust profile: a directory of CAs plus what the profile requires and what its
/// certificates are for (a person's or an organization's login, or signing).
#[derive(Debug, Clone)]
pub struct TrustProfile {
    pub name: String,
    pub kind: crate::config::TrustKind,
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
    /// The profiles a login is validated against, with the kind of holder each stands
    /// for: every profile but the signing ones.
    fn login_profiles(
        &self,
    ) -> impl Iterator<Item = (usize, &TrustProfile, crate::pki::CertKind)> + '_ {
        self.profiles
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.kind.login_kind().map(|kind| (i, p, kind)))
    }

    /// The `kind = "signing"` profile of this name.
    pub fn signing_profile(&self, name: &str) -> Option<&TrustProfile> {
        self.profiles
            .iter()
            .find(|p| p.name == name && p.kind == crate::config::TrustKind::Signing)
    }

    /// DER subjects of every anchor and intermediate of the login profiles, deduplicated:
    /// the CertificateRequest hints that let a browser offer only the cards we can accept
    /// (a signing CA is no login CA: its cards are never offered).
    pub fn hint_subjects(&self) -> Vec<Vec<u8>> {
        use der::Encode;
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (_, p, _) in self.login_profiles() {
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

    /// The CA certificate of some profile whose DER has this SHA-256: what a client sends
    /// as its intermediates is most often a CA the store already holds, parsed once.
    pub fn known_ca(&self, sha256: &[u8; 32]) -> Option<Arc<ParsedCertificate>> {
        self.profiles
            .iter()
            .flat_map(|p| {
                p.directory
                    .anchors
                    .iter()
                    .chain(p.directory.intermediates.iter())
            })
            .find(|c| c.sha256() == sha256)
            .cloned()
    }

    /// The first `trust.toml` window boundary after `now` in any profile: until then,
    /// which anchors are accepted does not change.
    pub fn next_schedule_change(&self, now: crate::pki::UnixTime) -> Option<crate::pki::UnixTime> {
        let now = i64::try_from(now.0).unwrap_or(i64::MAX);
        self.profiles
            .iter()
            .flat_map(|p| p.directory.schedule.iter())
            .flat_map(|w| [w.not_before, w.not_after])
            .flatten()
            .filter(|&t| t > now)
            .min()
            .map(|t| crate::pki::UnixTime(t as u64))
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
        // How telling a refusal is: any reason beats "untrusted issuer", and an anchor
        // outside its trust.toml window beats an issuer no profile knows.
        let rank = |e: &crate::pki::PathError, scheduled: bool| match e.reason {
            Reason::UntrustedIssuer if scheduled => 1,
            Reason::UntrustedIssuer => 0,
            _ => 2,
        };
        let mut best: Option<(u8, crate::pki::PathError)> = None;
        for (profile_index, profile, kind) in self.login_profiles() {
            let mut opts = PathOptions::new(now, KeyPurpose::ClientAuth);
            opts.required_policies = profile.required_policies.clone();
            opts.max_intermediates = profile.max_intermediates;
            let dir = &profile.directory;
            // Staged rotation: an anchor outside its trust.toml window is left out of the
            // pool before path building, so when a card chains to both an inactive and an
            // active anchor (a cross-certificate between old and new root) the builder
            // finds the active one instead of stopping at the inactive one. Only when no
            // active anchor accepts the card is the full pool tried, to say which window
            // refused it.
            let scheduled = dir.has_inactive_anchor(now);
            let active;
            let anchors = if scheduled {
                active = dir.active_anchors(now);
                &active
            } else {
                &dir.anchors
            };
            let mut refused_by_schedule = false;
            let result = match verify_for_login(leaf, presented, anchors, &dir.intermediates, &opts)
            {
                Err(e) if scheduled => {
                    match verify_for_login(leaf, presented, &dir.anchors, &dir.intermediates, &opts)
                    {
                        Ok(path) => match dir.anchor_active(path.anchor().sha256(), now) {
                            Err(detail) => {
                                refused_by_schedule = true;
                                Err(crate::pki::PathError {
                                    reason: Reason::UntrustedIssuer,
                                    depth: Some(path.chain.len() - 1),
                                    detail,
                                })
                            }
                            // Found only with the full pool, through an active anchor (the
                            // bounded search took another branch): keep the first refusal.
                            Ok(()) => Err(e),
                        },
                        Err(_) => Err(e),
                    }
                }
                other => other,
            };
            match result {
                Ok(path) => {
                    return Ok(Authenticated {
                        profile_index,
                        profile: profile.name.clone(),
                        kind,
                        path,
                    })
                }
                Err(e) => {
                    let r = rank(&e, refused_by_schedule);
                    if best.as_ref().is_none_or(|(b, _)| r > *b) {
                        best = Some((r, e));
                    }
                }
            }
        }
        Err(best.map(|(_, e)| e).unwrap_or(crate::pki::PathError {
            reason: Reason::UntrustedIssuer,
            depth: Some(0),
            detail: "no login trust profile is configured".into(),
        }))
    }
}

impl TrustProfile {
    /// Validates a signing certificate (a doctor's signature on a confirmation) against
    /// this profile at `now`: a signing certificate (nonRepudiation), its path to an anchor
    /// accepted at `now` (`trust.toml` windows apply as at login), the profile's required
    /// policies and depth. Revocation is the caller's (it needs the network).
    pub fn validate_signing(
        &self,
        leaf: &Arc<ParsedCertificate>,
        presented: &[Arc<ParsedCertificate>],
        now: crate::pki::UnixTime,
    ) -> Result<crate::pki::ValidatedPath, crate::pki::PathError> {
        use crate::pki::{verify_for_signing, KeyPurpose, PathOptions};
        let mut opts = PathOptions::new(now, KeyPurpose::Any);
        opts.required_policies = self.required_policies.clone();
        opts.max_intermediates = self.max_intermediates;
        let dir = &self.directory;
        let anchors = dir.active_anchors(now);
        verify_for_signing(leaf, presented, &anchors, &dir.intermediates, &opts)
    }
}
