//! `hpki-testpki`: writes the HPKI-shaped test PKI to a directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pki_tests::der_writer::to_hex;
use pki_tests::{hc_role_extension_value, GenerateOptions, TestPki, DEFAULT_CRL_BASE_URL};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Parser)]
#[command(
    name = "hpki-testpki",
    version,
    about = "HPKI-shaped test PKI generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate all certificates, keys, trust stores and manifest.json into DIR.
    Generate {
        /// Output directory (created if missing; files of an earlier run are overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Reference time for validity periods, RFC 3339 (default: now).
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
        now: Option<OffsetDateTime>,
        /// Base URL of CRL distribution points and CPS pointers.
        #[arg(long, value_name = "URL", default_value = DEFAULT_CRL_BASE_URL)]
        crl_base_url: String,
    },
    /// Print the hex DER of an hcRole subjectDirectoryAttributes extension value.
    HcRole {
        /// Role strings, e.g. "Medical Doctor".
        #[arg(required = true)]
        roles: Vec<String>,
    },
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time (e.g. 2026-04-01T00:00:00Z): {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate {
            out,
            now,
            crl_base_url,
        } => generate(&out, now, crl_base_url),
        Command::HcRole { roles } => {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            println!("{}", to_hex(&hc_role_extension_value(&roles)));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hpki-testpki: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path, now: Option<OffsetDateTime>, crl_base_url: String) -> Result<(), String> {
    // Key generation takes seconds; find out first whether the output can be written.
    ensure_writable(out)?;
    let opts = GenerateOptions {
        now: now.unwrap_or_else(OffsetDateTime::now_utc),
        crl_base_url,
    };
    let pki = TestPki::generate_with_progress(&opts, |cert| {
        let validity = format!(
            "{} .. {}",
            cert.not_before.format(&Rfc3339).unwrap_or_default(),
            cert.not_after.format(&Rfc3339).unwrap_or_default()
        );
        match &cert.leaf {
            None => println!(
                "CA    {:<17} issuer {:<15} {validity}",
                cert.name, cert.issuer
            ),
            Some(leaf) => println!(
                "leaf  {:<17} issuer {:<15} {validity}  roles [{}]",
                cert.name,
                cert.issuer,
                leaf.roles.join(", ")
            ),
        }
    })
    .map_err(|e| e.to_string())?;
    let manifest = pki.write_to(out).map_err(|e| e.to_string())?;
    println!(
        "wrote {} certificates ({} leaves), trust stores and {}",
        pki.certs.len(),
        manifest.leaves.len(),
        out.join(pki_tests::manifest::MANIFEST_FILE).display()
    );
    Ok(())
}

fn ensure_writable(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create output directory {}: {e}", dir.display()))?;
    let probe = dir.join(".hpki-testpki-write-probe");
    fs::write(&probe, b"")
        .map_err(|e| format!("output directory {} is not writable: {e}", dir.display()))?;
    fs::remove_file(&probe)
        .map_err(|e| format!("cannot clean up in output directory {}: {e}", dir.display()))
}
