//! The support check (to be built: see the issue).

use clap::Args;

#[derive(Args)]
pub struct DoctorArgs {}

pub fn doctor(_: DoctorArgs) -> i32 {
    eprintln!("hpki-card doctor: not built yet");
    crate::EXIT_BAD_INPUT
}
