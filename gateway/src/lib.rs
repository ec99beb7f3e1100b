//! hpki-gateway: a TLS-terminating reverse proxy that puts HPKI smart-card login in
//! front of portals that know nothing of certificates. See docs/ARCHITECTURE.md.

pub mod admin;
pub mod assertion;
pub mod audit;
pub mod cli;
pub mod config;
pub mod demo;
pub mod held_pages;
pub mod identity;
pub mod metrics;
pub mod pages;
pub mod pki;
pub mod proxy;
pub mod revocation;
pub mod store;
pub mod tls;
pub mod trust;
