//! hpki-gateway: a TLS-terminating reverse proxy that puts HPKI smart-card login in
//! front of portals that know nothing of certificates. See docs/ARCHITECTURE.md.

pub mod cli;
pub mod pki;
pub mod trust;
