//! `hpki-gateway trust status --config FILE`: what the trust store of a configuration
//! holds, offline (no fetching): per profile its anchors and intermediates with their
//! expiry, the CRLs of its CAs as loaded from `crls/`, and its revocation policy.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::revocation_report::{crl_number_text, crl_summary};
use super::{EXIT_NEGATIVE, EXIT_OK};
use crate::config::{Config, RevocationPolicy};
use crate::pki::revocation_check::unusable;
use crate::pki::{name, ParsedCertificate, UnixTime};
use crate::revocation::CrlSet;
use crate::trust::TrustProfile;

/// Certificates expiring within this many days are marked WARNING.
const WARN_DAYS: i64 = 90;

/// Said in every output: what this offline command cannot know.
const LIVE_STATE_NOTE: &str = "Distribution-point fetch state (last fetch, next fetch, errors) and the OCSP cache size are live state of the running gateway: its admin endpoint will show them (a later feature). This command reads files only and fetches nothing.";

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Anchors, intermediates and CRLs of every trust profile, with expiry and staleness,
    /// and each profile's revocation policy; offline. Exit 0 OK, 1 when a CRL is stale
    /// or an anchor has expired (or the configuration cannot be loaded).
    Status(StatusArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// The TOML configuration (docs/config.md).
    #[arg(long)]
    config: PathBuf,
    /// Judge expiry and staleness at this time (RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: TrustCommand) -> i32 {
    match cmd {
        TrustCommand::Status(a) => status(a),
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn fmt_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Whole days from `now` to `t` (negative when past), rounded towards minus infinity.
fn days_until(t: UnixTime, now: UnixTime) -> i64 {
    let secs = i128::from(t.0) - i128::from(now.0);
    i64::try_from(secs.div_euclid(86_400)).unwrap_or(i64::MIN)
}

fn policy_json(p: &RevocationPolicy) -> Value {
    json!({
        "sources": p.sources.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "depth": p.depth.as_str(),
        "on_unavailable": p.on_unavailable.as_str(),
        "stale_crl": p.stale_crl.as_str(),
        "stale_grace": fmt_duration(p.stale_grace),
        "ocsp_responder": p.ocsp_responder,
        "crl_refresh": fmt_duration(p.crl_refresh),
        "recheck": fmt_duration(p.recheck),
    })
}

fn policy_text(p: &RevocationPolicy) -> String {
    if p.sources.is_empty() {
        return "none (revocation.sources = [])".into();
    }
    let sources: Vec<&str> = p.sources.iter().map(|s| s.as_str()).collect();
    format!(
        "sources {}, depth {}, on_unavailable {}, stale_crl {} (grace {}), OCSP responder {}, crl_refresh {}, recheck {}",
        sources.join(" then "),
        p.depth.as_str(),
        p.on_unavailable.as_str(),
        p.stale_crl.as_str(),
        fmt_duration(p.stale_grace),
        p.ocsp_responder.as_deref().unwrap_or("from each certificate's AIA"),
        fmt_duration(p.crl_refresh),
        if p.recheck.is_zero() { "off".to_owned() } else { fmt_duration(p.recheck) },
    )
}

struct CertLine {
    json: Value,
    text: String,
    expired: bool,
}

fn cert_line(c: &ParsedCertificate, now: UnixTime) -> CertLine {
    let days = days_until(c.not_after(), now);
    let expired = now > c.not_after();
    let marker = if expired {
        "  EXPIRED".to_owned()
    } else if days < WARN_DAYS {
        format!("  WARNING: expires in {days} days")
    } else {
        String::new()
    };
    CertLine {
        json: json!({
            "subject": name::display(c.subject()),
            "sha256": name::hex(c.sha256()),
            "not_after": c.not_after().to_rfc3339(),
            "days_left": days,
            "expired": expired,
            "warning": expired || days < WARN_DAYS,
        }),
        text: format!(
            "{}\n        sha256 {}  notAfter {} ({days} days left){marker}",
            name::display(c.subject()),
            name::hex(c.sha256()),
            c.not_after().to_rfc3339(),
        ),
        expired,
    }
}

struct ProfileReport {
    json: Value,
    text: Vec<String>,
    problems: Vec<String>,
}

fn profile_report(p: &TrustProfile, crls: &CrlSet, now: UnixTime) -> ProfileReport {
    let mut text = Vec::new();
    let mut problems = Vec::new();
    text.push(format!(
        "profile {} ({})",
        p.name,
        match p.kind {
            crate::pki::CertKind::Organization => "organization",
            _ => "person",
        }
    ));
    text.push(format!("  revocation: {}", policy_text(&p.revocation)));

    let mut anchors_json = Vec::new();
    text.push(format!("  anchors ({}):", p.directory.anchors.len()));
    for c in p.directory.anchors.iter() {
        let line = cert_line(c, now);
        if line.expired {
            problems.push(format!(
                "{}: anchor \"{}\" expired on {}",
                p.name,
                name::display(c.subject()),
                c.not_after().to_rfc3339()
            ));
        }
        text.push(format!("    {}", line.text));
        anchors_json.push(line.json);
    }
    let mut inter_json = Vec::new();
    text.push(format!(
        "  intermediates ({}):",
        p.directory.intermediates.len()
    ));
    for c in p.directory.intermediates.iter() {
        let line = cert_line(c, now);
        text.push(format!("    {}", line.text));
        inter_json.push(line.json);
    }

    // The CRL in use for each CA of the profile (a CRL may come from another profile's
    // crls/ when both hold the same CA).
    let cas: Vec<&Arc<ParsedCertificate>> = p
        .directory
        .anchors
        .iter()
        .chain(p.directory.intermediates.iter())
        .collect();
    let mut crls_json = Vec::new();
    let mut without = Vec::new();
    text.push("  CRLs:".to_owned());
    for ca in &cas {
        let Some(rec) = crls.get(ca) else {
            without.push(name::display(ca.subject()));
            continue;
        };
        let crl = &rec.crl;
        let stale = crl.next_update().is_none_or(|nu| now > nu);
        let not_yet = crl.this_update() > now;
        let refused = unusable(crl);
        let mut markers = Vec::new();
        if stale {
            markers.push(match crl.next_update() {
                Some(nu) => format!("STALE: nextUpdate passed {} days ago", -days_until(nu, now)),
                None => "STALE: no nextUpdate".to_owned(),
            });
            problems.push(format!(
                "{}: the CRL of \"{}\" ({}) is stale",
                p.name,
                crl.issuer_display(),
                rec.source
            ));
        }
        if not_yet {
            markers.push("NOT YET VALID: thisUpdate is in the future".to_owned());
        }
        if let Some(why) = refused {
            markers.push(format!("NOT USED: {why}"));
            problems.push(format!(
                "{}: the CRL of \"{}\" ({}) is not used: {why}",
                p.name,
                crl.issuer_display(),
                rec.source
            ));
        }
        let mut v = crl_summary(crl);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("issuer".into(), json!(crl.issuer_display()));
            obj.insert("file".into(), json!(rec.source));
            obj.insert("approx_bytes".into(), json!(crl.approx_heap_bytes()));
            obj.insert("stale".into(), json!(stale));
            obj.insert("not_yet_valid".into(), json!(not_yet));
            obj.insert("usable".into(), json!(refused.is_none()));
        }
        crls_json.push(v);
        let next = match crl.next_update() {
            Some(nu) if !stale => format!("{} (in {} days)", nu.to_rfc3339(), days_until(nu, now)),
            Some(nu) => nu.to_rfc3339(),
            None => "none".to_owned(),
        };
        text.push(format!(
            "    {}  CRL number {}\n        thisUpdate {}  nextUpdate {next}\n        {} entries, ~{} in memory, file {}{}",
            crl.issuer_display(),
            crl.crl_number()
                .map(crl_number_text)
                .unwrap_or_else(|| "none".into()),
            crl.this_update().to_rfc3339(),
            crl.len(),
            fmt_bytes(crl.approx_heap_bytes()),
            rec.source,
            markers
                .iter()
                .map(|m| format!("\n        {m}"))
                .collect::<String>()
        ));
    }
    for ca in &without {
        text.push(format!(
            "    {ca}: no CRL file (the running gateway fetches it from the distribution point named in the certificates this CA issued)"
        ));
    }
    ProfileReport {
        json: json!({
            "name": p.name,
            "kind": match p.kind { crate::pki::CertKind::Organization => "organization", _ => "person" },
            "revocation": policy_json(&p.revocation),
            "anchors": anchors_json,
            "intermediates": inter_json,
            "crls": crls_json,
            "cas_without_crl_file": without,
        }),
        text,
        problems,
    }
}

fn status(args: StatusArgs) -> i32 {
    let now = match &args.at {
        Some(s) => match UnixTime::parse_rfc3339(s) {
            Some(t) => t,
            None => {
                eprintln!(
                    "error: --at \"{s}\" is not an RFC 3339 time (example: 2026-04-01T09:00:00+09:00)"
                );
                return super::EXIT_BAD_INPUT;
            }
        },
        None => crate::proxy::now(),
    };
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_NEGATIVE;
        }
    };
    let refused = |problems: Vec<String>, what: &str| {
        eprintln!("{}: {what}:", args.config.display());
        for p in problems {
            eprintln!("  - {p}");
        }
        EXIT_NEGATIVE
    };
    let store = match crate::proxy::build_trust_store(&config) {
        Ok(s) => s,
        Err(p) => return refused(p, "the trust store cannot be loaded"),
    };
    let crls = match crate::revocation::load_crl_files(&store, now) {
        Ok(c) => c,
        Err(p) => return refused(p, "the CRL files cannot be used"),
    };
    let reports: Vec<ProfileReport> = store
        .profiles
        .iter()
        .map(|p| profile_report(p, &crls, now))
        .collect();
    let used: HashSet<&str> = crls.iter().map(|r| r.source.as_str()).collect();
    let superseded: Vec<String> = store
        .profiles
        .iter()
        .flat_map(|p| p.directory.crl_files.iter())
        .map(|f| f.display().to_string())
        .filter(|f| !used.contains(f.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let problems: Vec<&String> = reports.iter().flat_map(|r| r.problems.iter()).collect();
    let total: usize = crls.iter().map(|r| r.crl.approx_heap_bytes()).sum();
    if args.json {
        let out = json!({
            "config": args.config.display().to_string(),
            "at": now.to_rfc3339(),
            "ok": problems.is_empty(),
            "problems": problems,
            "profiles": reports.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            "crl_files_not_in_use": superseded,
            "crl_memory_bytes": total,
            "live_state": LIVE_STATE_NOTE,
        });
        match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_NEGATIVE;
            }
        }
    } else {
        println!(
            "trust status of {} at {}",
            args.config.display(),
            now.to_rfc3339()
        );
        for r in &reports {
            println!();
            for line in &r.text {
                println!("{line}");
            }
        }
        println!();
        for f in &superseded {
            println!(
                "CRL file not in use (another file holds the same or a newer CRL of that CA): {f}"
            );
        }
        println!("CRLs in memory: {} ({} CRLs)", fmt_bytes(total), crls.len());
        println!("note: {LIVE_STATE_NOTE}");
        if problems.is_empty() {
            println!("status: OK");
        } else {
            println!("status: {} problem(s)", problems.len());
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    }
}
