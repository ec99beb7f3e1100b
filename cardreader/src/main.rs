//! `hpki-card`: what a support desk asks a doctor or assistant to run when login fails,
//! and the agent the portal page talks to.

use clap::{Parser, Subcommand};
use hpki_cardreader::{agent, doctor, reader, token};

#[derive(Parser)]
#[command(
    name = "hpki-card",
    version,
    about = "HPKI card reader and token tool / agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List PC/SC readers, card presence and ATR.
    Readers(reader::ReadersArgs),
    /// Print card insertions and removals as they happen.
    Watch(reader::WatchArgs),
    /// Read a patient card's ID with an APDU script.
    PatientId(reader::PatientIdArgs),
    /// List the HPKI token's certificates (no PIN needed).
    Certs(token::CertsArgs),
    /// Sign a file with the card (PIN from the terminal or a file descriptor).
    Sign(token::SignArgs),
    /// The support check: pcscd, readers, card, module, token, certificates, RSA-PSS.
    Doctor(doctor::DoctorArgs),
    /// The loopback service for the portal page: card status, events, session end.
    Agent(agent::AgentArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                hpki_cardreader::EXIT_BAD_INPUT
            } else {
                hpki_cardreader::EXIT_OK
            });
        }
    };
    let code = match cli.command {
        Command::Readers(a) => reader::readers(a),
        Command::Watch(a) => reader::watch(a),
        Command::PatientId(a) => reader::patient_id(a),
        Command::Certs(a) => token::certs(a),
        Command::Sign(a) => token::sign(a),
        Command::Doctor(a) => doctor::doctor(a),
        Command::Agent(a) => agent::agent(a),
    };
    std::process::exit(code);
}
