//! `hpki-gateway demo`: a dev PKI (HPKI-shaped, from `pki-tests`), a config, the demo
//! portal, and the gateway in front of it — everything on loopback, nothing to install
//! beyond the Rust toolchain.

pub mod portal;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::assertion::AssertionSigner;
use crate::config::Config;
use crate::proxy::Gateway;

pub struct DemoOptions {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub portal: SocketAddr,
    pub fresh: bool,
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn config_text(listen: SocketAddr, portal: SocketAddr) -> String {
    format!(
        r#"# Written by `hpki-gateway demo` (rewritten at every start). Reference: docs/config.md.
[server]
listen = "{listen}"
cert = "server/server.pem"
key = "server/server.key"
tls_profile = "hpki-card"        # TLS 1.2, ECDHE + AES-GCM, PKCS#1 client signatures (HPKI cards)
client_auth = "optional"         # so that a visitor without a card gets a page, not a TLS error

[assertion]
key = "assertion-es256.pem"

[[trust]]
name = "hpki-auth"
dir = "pki/trust/hpki-auth"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2"]

[[trust]]
name = "hpki-org"
dir = "pki/trust/hpki-org"
kind = "organization"
require_policies = ["1.2.392.100495.1.5.1.3"]   # test OID of the demo PKI

[[route]]
path = "/"
upstream = "http://{portal}"
allow_roles = ["Medical Doctor", "Pharmacist", "Dentist"]

[[route]]
path = "/clinic"
upstream = "http://{portal}"
allow_kinds = ["person", "organization"]

[[route]]
path = "/public"
upstream = "http://{portal}"
allow_anonymous = true

# An assistant's writes wait for a supervising doctor's confirmation (/_hpki/pending).
[[route]]
path = "/records"
upstream = "http://{portal}"
allow_kinds = ["person", "organization"]
hold_writes_from = ["assistant"]

[store]
url = "sqlite://var/hpki-gateway.db"
"#
    )
}

/// Creates (or reuses) the demo directory and returns the config path.
pub fn prepare(opts: &DemoOptions) -> Result<PathBuf, String> {
    let dir = &opts.dir;
    let pki_dir = dir.join("pki");
    // A directory from an older version (without CRLs) is regenerated too.
    let complete = pki_dir.join("manifest.json").is_file() && pki_dir.join("crls").is_dir();
    if opts.fresh || !complete {
        eprintln!(
            "demo: generating an HPKI-shaped test PKI in {} ...",
            pki_dir.display()
        );
        // The ledger names the old cards: it goes with them.
        for old in [pki_dir.clone(), dir.join("var")] {
            if old.exists() {
                std::fs::remove_dir_all(&old)
                    .map_err(|e| format!("cannot clear {}: {e}", old.display()))?;
            }
        }
        let options = pki_tests::GenerateOptions {
            // The demo portal serves the CRLs at the distribution points it names.
            crl_base_url: format!("http://{}/crl", opts.portal),
            ..pki_tests::GenerateOptions::default()
        };
        let pki = pki_tests::TestPki::generate_with_progress(&options, |c| {
            eprintln!("  issued {}", c.name)
        })
        .map_err(|e| e.to_string())?;
        pki.write_to(&pki_dir).map_err(|e| e.to_string())?;
        let server = pki_tests::server::server_identity(&["127.0.0.1", "localhost"])
            .map_err(|e| e.to_string())?;
        write(&dir.join("server/server.pem"), &server.chain_pem)?;
        write(&dir.join("server/server.key"), &server.key_pem)?;
        write(&dir.join("server/server-ca.pem"), &server.ca_pem)?;
        write(
            &dir.join("assertion-es256.pem"),
            AssertionSigner::generate_pem(),
        )?;
        write_pkcs12(&pki_dir);
    } else {
        eprintln!(
            "demo: reusing {} (--fresh regenerates it)",
            pki_dir.display()
        );
    }
    let config = dir.join("gateway.toml");
    write(&config, config_text(opts.listen, opts.portal))?;
    Ok(config)
}

/// PKCS#12 bundles for importing the demo cards into a browser, made with the openssl
/// CLI when it is there (a pure-Rust writer would add a second crypto stack).
fn write_pkcs12(pki_dir: &Path) {
    let certs = pki_dir.join("certs");
    let have_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_openssl {
        eprintln!("demo: openssl not found; skipping .p12 files (PEM files are there)");
        return;
    }
    for name in [
        "doctor",
        "pharmacist",
        "clerk",
        "signing-card",
        "org-clinic",
        "expired",
    ] {
        let status = std::process::Command::new("openssl")
            .args(["pkcs12", "-export", "-passout", "pass:demo", "-name", name])
            .arg("-in")
            .arg(certs.join(format!("{name}.pem")))
            .arg("-inkey")
            .arg(certs.join(format!("{name}.key")))
            .arg("-out")
            .arg(certs.join(format!("{name}.p12")))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("demo: could not write {name}.p12");
        }
    }
}

fn instructions(dir: &Path, listen: SocketAddr) -> String {
    let d = dir.display();
    let url = format!("https://{listen}");
    let curl = |card: &str, path: &str| {
        format!("curl --cacert {d}/server/server-ca.pem --cert {d}/pki/certs/{card}.pem --key {d}/pki/certs/{card}.key {url}{path}")
    };
    format!(
        "\nhpki-gateway demo is serving {url} in front of the demo portal.\n\
         Try (each card is a PEM file; .p12 bundles with password \"demo\" are beside them):\n\n\
         # a doctor: the portal shows the identity headers it received\n{}\n\n\
         # the same, as JSON from the gateway itself\n{} -H 'Accept: application/json'\n\n\
         # a signing card is refused: signing_cert_not_for_login\n{}\n\n\
         # a clerk without hcRole on a doctors' route: no_hcrole\n{}\n\n\
         # an expired card: cert_expired\n{}\n\n\
         # a clinic's organization card: kind_not_allowed on /, accepted on /clinic\n{}\n{}\n\n\
         # spoofed identity headers never reach the portal\n{} -H 'X-HPKI-Role: Medical Doctor' -H 'x-hpki-id: forged'\n\n\
         # the clinic card's holder (assistant a-001 in the demo ledger) enters a record: held (202)\n{} --data 'patient=P-001&note=BP 120/80'\n\
         # the supervising doctor reads and confirms it (in a browser: {url}/_hpki/pending)\n{} -H 'Accept: application/json'\n\
         # then the portal lists it with who entered and who confirmed it\n{}\n\n\
         # no card: client_certificate_required, but /public is open\n\
         curl --cacert {d}/server/server-ca.pem {url}/\n\
         curl --cacert {d}/server/server-ca.pem {url}/public\n\n\
         # the assertion's public key\n\
         curl --cacert {d}/server/server-ca.pem {url}/.well-known/hpki-gateway/jwks.json\n\n\
         Config: {d}/gateway.toml    Stop: Ctrl-C\n",
        curl("doctor", "/"),
        curl("doctor", "/_hpki/whoami"),
        curl("signing-card", "/"),
        curl("clerk", "/"),
        curl("expired", "/"),
        curl("org-clinic", "/"),
        curl("org-clinic", "/clinic"),
        curl("clerk", "/"),
        curl("org-clinic", "/records"),
        curl("doctor", "/_hpki/pending"),
        curl("doctor", "/records"),
    )
}

/// The demo clinic's ledger: its organization card (`org-clinic`) is held by assistant
/// `a-001`, whom the demo doctor supervises. Written once; a later run keeps what an
/// operator changed with `hpki-gateway ledger`.
async fn seed_ledger(store: &dyn crate::store::Store, certs: &Path) -> Result<(), String> {
    use crate::store::{Assistant, CardKey, DoctorRef};
    const ID: &str = "a-001";
    if store
        .assistant(ID)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let read = |name: &str| -> Result<crate::pki::ParsedCertificate, String> {
        let path = certs.join(format!("{name}.pem"));
        let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        crate::pki::ParsedCertificate::from_der(der.as_ref())
            .map_err(|e| format!("{}: {}", path.display(), e.detail))
    };
    use rustls_pki_types::pem::PemObject;
    let card = read("org-clinic")?;
    let doctor = read("doctor")?;
    let hpki_id = crate::pki::read_identity(&doctor)
        .ok()
        .and_then(|i| i.hpki_id)
        .ok_or("the demo doctor's certificate has no HPKI id")?;
    let now = crate::store::now();
    let op = "hpki-gateway demo";
    let assistant = Assistant {
        id: ID.into(),
        name_kanji: "受付\u{3000}花子".into(),
        name_romaji: "Hanako Uketsuke".into(),
        facility: "神楽坂クリニック".into(),
        active_from: now - 60,
        active_until: None,
    };
    let e = |e: crate::store::StoreError| e.to_string();
    store.add_assistant(&assistant, op).await.map_err(e)?;
    store
        .assign_card(
            &CardKey::Sha256(crate::pki::name::hex(card.sha256())),
            ID,
            now - 60,
            op,
        )
        .await
        .map_err(e)?;
    let doctor = DoctorRef {
        hpki_id,
        issuer: crate::pki::name::display(doctor.issuer()),
    };
    store
        .add_supervisor(ID, &doctor, now, op)
        .await
        .map_err(e)?;
    Ok(())
}

/// Runs the demo until Ctrl-C.
pub async fn run(opts: DemoOptions) -> Result<(), String> {
    let config_path = prepare(&opts)?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let store = crate::proxy::connect_store(&config).await?;
    seed_ledger(&*store.store, &opts.dir.join("pki/certs"))
        .await
        .map_err(|e| format!("demo ledger: {e}"))?;
    let gateway = Gateway::build(config, store).map_err(|p| p.join("\n"))?;
    let portal = portal::bind(opts.portal).await.map_err(|e| {
        format!(
            "cannot listen on {} for the demo portal: {e} (use --portal-listen)",
            opts.portal
        )
    })?;
    tokio::spawn(portal::serve(portal, opts.dir.join("pki/crls")));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e} (use --listen)", opts.listen))?;
    println!("{}", instructions(&opts.dir, opts.listen));
    Arc::new(gateway)
        .serve(listener)
        .await
        .map_err(|e| e.to_string())
}
