//! `hpki-gateway cert inspect|verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{EXIT_BAD_INPUT, EXIT_NEGATIVE, EXIT_OK};
use crate::pki::{
    self, classify, default_person_policies, login_problems, name, parse_certificates,
    read_identity, verify_for_login, verify_path, KeyPurpose, ParsedCertificate, PathOptions,
    PolicyPrefix, Reason, UnixTime,
};
use crate::trust::TrustDirectory;

#[derive(Subcommand)]
pub enum CertCommand {
    /// Print what a certificate says (PEM or DER) as JSON: identity, policies, and
    /// whether it can be used to log in, judged from the certificate alone.
    Inspect(InspectArgs),
    /// Validate a certificate path against a trust directory (anchors/, intermediates/),
    /// and with --crl / --ocsp check its revocation. Exit 0 valid, 1 invalid (also
    /// cert_revoked, revocation_unavailable), 2 bad input.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// Certificate file (PEM, possibly a bundle, or DER).
    file: PathBuf,
    /// Judge validity at this time (RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
    /// Policy OID (prefix) that marks organization certificates; repeatable.
    #[arg(long = "org-policy")]
    org_policies: Vec<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Trust directory with anchors/ (and optionally intermediates/, crls/).
    #[arg(long)]
    trust: PathBuf,
    /// Validation time (RFC 3339); default now.
    #[arg(long)]
    at: Option<String>,
    /// Required policy OID prefix for the end-entity certificate; repeatable.
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Intermediate certificate(s) the client would send; repeatable, bundles allowed.
    #[arg(long = "intermediate")]
    intermediates: Vec<PathBuf>,
    /// Also require the certificate to be usable for login (digitalSignature, clientAuth).
    #[arg(long)]
    login: bool,
    /// CRL file (PEM or DER) to check the path's certificates against: each is verified
    /// against the CA of the path whose name it bears, and every certificate below the
    /// anchor is looked up in its issuer's CRL. Repeatable. Checked at --at.
    #[arg(long = "crl", value_name = "FILE")]
    crls: Vec<PathBuf>,
    /// OCSP responder (http://) to ask about the end-entity certificate. The answer is
    /// verified against the current time (not --at).
    #[arg(long, value_name = "URL")]
    ocsp: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The end-entity certificate (PEM or DER; with a PEM bundle the first is the leaf
    /// and the rest are treated as presented intermediates).
    file: PathBuf,
}

pub fn run(cmd: CertCommand) -> i32 {
    let result = match cmd {
        CertCommand::Inspect(a) => inspect(a),
        CertCommand::Verify(a) => verify(a),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_BAD_INPUT
        }
    }
}

fn parse_time(at: Option<&str>) -> Result<UnixTime, String> {
    match at {
        Some(s) => UnixTime::parse_rfc3339(s).ok_or_else(|| {
            format!("--at \"{s}\" is not an RFC 3339 time (example: 2026-04-01T09:00:00+09:00)")
        }),
        None => Ok(now()),
    }
}

fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

fn read_certs(path: &Path) -> Result<Vec<ParsedCertificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_certificates(&bytes).map_err(|e| {
        format!(
            "{}: {e} (expected a PEM or DER X.509 certificate)",
            path.display()
        )
    })
}

fn parse_prefixes(list: &[String], flag: &str) -> Result<Vec<PolicyPrefix>, String> {
    list.iter()
        .map(|s| PolicyPrefix::parse(s).map_err(|e| format!("{flag}: {e}")))
        .collect()
}

/// The `cert inspect` JSON object for one certificate.
pub fn inspect_json(
    cert: &ParsedCertificate,
    at: UnixTime,
    org_policies: &[PolicyPrefix],
) -> Value {
    let mut reasons: Vec<Reason> = Vec::new();
    if at < cert.not_before() {
        reasons.push(Reason::CertNotYetValid);
    }
    if at > cert.not_after() {
        reasons.push(Reason::CertExpired);
    }
    if !cert.unknown_critical_extensions().is_empty() {
        reasons.push(Reason::UnsupportedCriticalExtension);
    }
    let identity = match read_identity(cert) {
        Ok(i) => Some(i),
        Err(r) => {
            reasons.push(r);
            None
        }
    };
    reasons.extend(login_problems(cert));
    let kind = identity
        .as_ref()
        .map(|i| classify(cert, i, &default_person_policies(), org_policies))
        .unwrap_or(pki::CertKind::Unknown);
    let ident = identity.unwrap_or(pki::CertIdentity {
        roles: vec![],
        name: None,
        name_kanji: None,
        org: None,
        org_kanji: None,
        hpki_id: None,
    });
    json!({
        "subject": name::display(cert.subject()),
        "issuer": name::display(cert.issuer()),
        "serial": cert.serial_hex(),
        "sha256": name::hex(cert.sha256()),
        "not_before": cert.not_before().to_rfc3339(),
        "not_after": cert.not_after().to_rfc3339(),
        "kind": kind.as_str(),
        "role": ident.role(),
        "roles": ident.roles,
        "name": ident.name,
        "name_kanji": ident.name_kanji,
        "org": ident.org,
        "org_kanji": ident.org_kanji,
        "hpki_id": ident.hpki_id,
        "policies": cert.policies().unwrap_or(&[]).iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "key_usage": cert.key_usage().map(|k| k.names()).unwrap_or_default(),
        "extended_key_usage": cert.ext_key_usage().map(|e| e.iter().map(|o| o.to_string()).collect::<Vec<_>>()),
        "is_ca": cert.is_ca(),
        "crl_distribution_points": cert.crl_distribution_urls(),
        "unknown_critical_extensions": cert.unknown_critical_extensions().iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        "usable_for_login": reasons.is_empty(),
        "reasons": reasons.iter().map(|r| r.code()).collect::<Vec<_>>(),
    })
}

fn inspect(args: InspectArgs) -> Result<i32, String> {
    let at = parse_time(args.at.as_deref())?;
    let org = parse_prefixes(&args.org_policies, "--org-policy")?;
    let certs = read_certs(&args.file)?;
    let out = if certs.len() == 1 {
        inspect_json(&certs[0], at, &org)
    } else {
        Value::Array(certs.iter().map(|c| inspect_json(c, at, &org)).collect())
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(EXIT_OK)
}

fn verify(args: VerifyArgs) -> Result<i32, String> {
    let at = parse_time(args.at.as_deref())?;
    let required_policies = parse_prefixes(&args.policies, "--policy")?;
    let trust = TrustDirectory::load(&args.trust).map_err(|e| e.to_string())?;
    let mut certs = read_certs(&args.file)?.into_iter().map(Arc::new);
    let leaf = certs
        .next()
        .ok_or_else(|| format!("{} holds no certificate", args.file.display()))?;
    let mut presented: Vec<Arc<ParsedCertificate>> = certs.collect();
    for path in &args.intermediates {
        presented.extend(read_certs(path)?.into_iter().map(Arc::new));
    }
    let crl_files = super::revocation_report::CrlFiles::read(&args.crls)?;
    if let Some(url) = &args.ocsp {
        if !url.starts_with("http://") || url.len() <= "http://".len() {
            return Err(format!(
                "--ocsp \"{url}\" is not an http:// URL: OCSP is plain HTTP, write it like http://127.0.0.1:8889/"
            ));
        }
    }
    let mut opts = PathOptions::new(at, KeyPurpose::Any);
    opts.required_policies = required_policies;

    let (anchors, intermediates) = (&trust.anchors, &trust.intermediates);
    let result = if args.login {
        verify_for_login(&leaf, &presented, anchors, intermediates, &opts)
    } else {
        verify_path(&leaf, &presented, anchors, intermediates, &opts)
    };
    let login = login_problems(&leaf);
    let revocation = match &result {
        Ok(path) if !args.crls.is_empty() || args.ocsp.is_some() => {
            let extra: Vec<Arc<ParsedCertificate>> = presented
                .iter()
                .chain(trust.intermediates.iter())
                .cloned()
                .collect();
            Some(super::revocation_report::check(
                path,
                &crl_files,
                &extra,
                args.ocsp.as_deref(),
                at,
                now(),
            )?)
        }
        _ => None,
    };
    let revocation_failure = revocation.as_ref().and_then(|r| r.failure());
    let verdict: Result<&[Arc<ParsedCertificate>], (Reason, String)> =
        match (&result, &revocation_failure) {
            (Ok(path), None) => Ok(&path.chain),
            (Ok(_), Some(failure)) => Err(failure.clone()),
            (Err(e), _) => Err((e.reason, e.detail.clone())),
        };
    let chain: Option<&[Arc<ParsedCertificate>]> = result.as_ref().ok().map(|p| &p.chain[..]);
    let describe = |c: &ParsedCertificate| {
        json!({
            "subject": name::display(c.subject()),
            "sha256": name::hex(c.sha256()),
            "not_after": c.not_after().to_rfc3339(),
        })
    };
    if args.json {
        let mut out = match &verdict {
            Ok(chain) => json!({
                "valid": true,
                "reason": null,
                "path": chain.iter().map(|c| describe(c)).collect::<Vec<_>>(),
                "usable_for_login": login.is_empty(),
                "login_reasons": login.iter().map(|r| r.code()).collect::<Vec<_>>(),
            }),
            Err((reason, detail)) => json!({
                "valid": false,
                "reason": reason.code(),
                "detail": detail,
                "usable_for_login": login.is_empty(),
                "login_reasons": login.iter().map(|r| r.code()).collect::<Vec<_>>(),
            }),
        };
        if let Some(obj) = out.as_object_mut() {
            if let (Err(_), Some(chain)) = (&verdict, chain) {
                // Revoked or without status: the path itself validated.
                obj.insert(
                    "path".into(),
                    Value::Array(chain.iter().map(|c| describe(c)).collect()),
                );
            }
            obj.insert(
                "revocation".into(),
                revocation.as_ref().map(|r| r.json()).unwrap_or(Value::Null),
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        match &verdict {
            Err((reason, detail)) => {
                println!("invalid: {reason}");
                println!("  {detail}");
            }
            Ok(_) => println!("valid"),
        }
        if let Some(chain) = chain {
            for (i, c) in chain.iter().enumerate() {
                let role = if i + 1 == chain.len() {
                    "anchor"
                } else if i == 0 {
                    "leaf"
                } else {
                    "ca"
                };
                println!(
                    "  [{i}] {role:6} {}  (sha256 {}, until {})",
                    name::display(c.subject()),
                    name::hex(c.sha256()),
                    c.not_after().to_rfc3339()
                );
            }
            match &revocation {
                Some(r) => r.print_text(),
                None => println!("revocation: not checked (give --crl FILE or --ocsp URL)"),
            }
            if login.is_empty() {
                println!("usable for login: yes");
            } else {
                let codes: Vec<&str> = login.iter().map(|r| r.code()).collect();
                println!("usable for login: no ({})", codes.join(", "));
            }
        }
    }
    Ok(if verdict.is_ok() {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    })
}
