//! The loopback agent (to be built: see the issue).

use clap::Args;

#[derive(Args)]
pub struct AgentArgs {}

pub fn agent(_: AgentArgs) -> i32 {
    eprintln!("hpki-card agent: not built yet");
    crate::EXIT_BAD_INPUT
}
