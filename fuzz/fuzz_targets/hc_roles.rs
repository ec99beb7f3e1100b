//! hcRole extraction from a subjectDirectoryAttributes value: any bytes, no panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hpki_gateway::pki::hc_roles(data);
});
