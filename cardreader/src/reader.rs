//! PC/SC through pcscd (to be built: see the issue).

use clap::Args;

#[derive(Args)]
pub struct ReadersArgs {}
#[derive(Args)]
pub struct WatchArgs {}
#[derive(Args)]
pub struct PatientIdArgs {}

/// A change seen by [`watch_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    ReaderAdded { reader: String },
    ReaderRemoved { reader: String },
    CardInserted { reader: String, atr: Vec<u8> },
    CardRemoved { reader: String },
}

pub fn readers(_: ReadersArgs) -> i32 {
    eprintln!("hpki-card readers: not built yet");
    crate::EXIT_BAD_INPUT
}
pub fn watch(_: WatchArgs) -> i32 {
    eprintln!("hpki-card watch: not built yet");
    crate::EXIT_BAD_INPUT
}
pub fn patient_id(_: PatientIdArgs) -> i32 {
    eprintln!("hpki-card patient-id: not built yet");
    crate::EXIT_BAD_INPUT
}
