//! hpki-cardreader: the workstation agent (`hpki-card`) for HPKI cards — PC/SC reader
//! and card presence, the HPKI token over PKCS#11, signing, and the patient-card ID.
//! Built in issue 8; it will judge certificates with the gateway's own `pki` rules
//! (`hpki_gateway::pki`), so a card the agent calls usable is one the gateway accepts.

pub use hpki_gateway::pki;
