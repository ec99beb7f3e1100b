//! The benchmark harness behind `pki-tests/bench/run.sh` (binary `hpki-bench`): the
//! gateway against nginx, side by side in one run. Its parts live here, in the library,
//! so that `tests/bench_harness.rs` can check them cheaply.
//!
//! - [`cards`]: the PKI (2,000 distinct RSA-2048 doctors' cards by default), cached;
//!   fresh CRLs each run, up to a million entries ([`crate::bulk_crl`]);
//! - [`upstream`]: the static HTTP server both proxies forward to;
//! - [`servers`]: the two proxies' configurations, processes and `/proc` readings;
//! - [`load`]: the load generator.

pub mod cards;
pub mod load;
pub mod servers;
pub mod upstream;
