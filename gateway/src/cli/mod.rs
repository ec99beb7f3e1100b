//! The `hpki-gateway` command line. Exit codes: 0 success, 1 a negative answer (invalid
//! certificate, refused config), 2 bad input or usage.

mod audit;
mod cert;
mod ledger;
mod pending;
mod revocation_report;
mod serve;
mod store_cmd;
mod trust;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hpki-gateway",
    version,
    about = "HPKI smart-card login gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: terminate mutual TLS, identify HPKI cards, forward to the portal.
    Run(serve::RunArgs),
    /// Validate a configuration and everything it names; exit 0 OK, 1 with the problems.
    CheckConfig(serve::CheckConfigArgs),
    /// Generate a dev PKI and config, start a demo portal and serve it on 127.0.0.1:8443.
    Demo(serve::DemoArgs),
    /// Inspect and verify certificates.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// The trust store: inspect it offline (status), or reload / diff it in the running gateway.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// The store's schema: `store migrate`.
    Store(store_cmd::StoreArgs),
    /// The clinic's ledger: assistants, their cards and supervising doctors (docs/ledger.md).
    Ledger(ledger::LedgerArgs),
    /// After-the-fact reviews: emergency grants awaiting consent follow-up.
    Audit(audit::AuditArgs),
    /// Held writes: `pending export ID --out DIR` writes a signed confirmation's evidence
    /// for OpenSSL (docs/confirmation-signature.md).
    Pending(pending::PendingArgs),
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_NEGATIVE: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

/// Parses argv and runs the command; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            };
        }
    };
    match cli.command {
        Command::Run(a) => serve::run(a),
        Command::CheckConfig(a) => serve::check_config(a),
        Command::Demo(a) => serve::demo(a),
        Command::Cert(c) => cert::run(c),
        Command::Trust(c) => trust::run(c),
        Command::Store(a) => store_cmd::run(a),
        Command::Ledger(a) => ledger::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Pending(a) => pending::run(a),
    }
}
