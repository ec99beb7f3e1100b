//! PKCS#11 (to be built: see the issue).

use clap::Args;

#[derive(Args)]
pub struct CertsArgs {}
#[derive(Args)]
pub struct SignArgs {}

pub fn certs(_: CertsArgs) -> i32 {
    eprintln!("hpki-card certs: not built yet");
    crate::EXIT_BAD_INPUT
}
pub fn sign(_: SignArgs) -> i32 {
    eprintln!("hpki-card sign: not built yet");
    crate::EXIT_BAD_INPUT
}
