//! hpki-cardreader: the workstation agent (`hpki-card`) for HPKI cards — PC/SC reader
//! and card presence, the HPKI token over PKCS#11, signing, and the patient-card ID. It
//! judges certificates with the gateway's own `pki` rules (`hpki_gateway::pki`), so a card
//! the agent calls usable is one the gateway accepts.
//!
//! - [`reader`]: PC/SC (pcscd): readers, card presence and ATR, insertion/removal events,
//!   the patient-card APDU script.
//! - [`token`]: PKCS#11: the HPKI token, its certificates, PIN login, signing.
//! - [`doctor`]: the support check that walks through all of it.
//! - [`agent`]: the loopback HTTP service for the portal page.

pub mod agent;
pub mod doctor;
pub mod reader;
pub mod token;

pub use hpki_gateway::pki;

/// Exit codes of `hpki-card`: 0 OK, 1 a problem found (doctor) or a negative answer,
/// 2 bad input or an unreachable service.
pub const EXIT_OK: i32 = 0;
pub const EXIT_PROBLEM: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
