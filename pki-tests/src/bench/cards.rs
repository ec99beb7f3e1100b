//! The benchmark's PKI: the HPKI-shaped test PKI plus thousands of distinct doctors' cards
//! (RSA-2048, issued by `auth-ca` like [`crate::pki`]'s `doctor`), one more card that the
//! big CRL revokes, server identities (ECDSA P-256 and RSA-2048) and an assertion key.
//!
//! Generating 2,000 RSA keys takes a minute, so the result is cached in a directory named
//! by [`CACHE_VERSION`] and the card count; a rerun reads it back. CRLs expire within days,
//! so they are never cached: [`BenchPki::write_crls`] signs fresh ones each run.

use std::fs;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::bulk_crl::{self, CrlIssuer};
use crate::pki::{leaf_specs, Holder, LeafSpec};
use crate::server::{server_identity_with, ServerIdentity, ServerKey};
use crate::{GenerateOptions, TestPki};

/// Bump when what is generated changes: older caches are then ignored (and can be
/// deleted).
pub const CACHE_VERSION: u32 = 1;

/// The file whose presence (and content) says a cache directory is complete.
const COMPLETE: &str = "complete";

/// Hosts every server certificate names.
pub const SERVER_HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// A CA certificate of the test PKI with its key.
#[derive(Debug, Clone)]
pub struct CaFiles {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
}

/// A client's card: its chain as sent (leaf, then `auth-ca`) and its key.
#[derive(Debug, Clone)]
pub struct Card {
    pub chain_pem: String,
    pub key_pem: String,
    /// The holder's HPKI id (`X-HPKI-Id` upstream).
    pub hpki_id: String,
}

/// Server certificate files on disk.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub key: ServerKey,
    /// Server certificate followed by its CA.
    pub chain: PathBuf,
    pub key_file: PathBuf,
    /// The CA a client trusts.
    pub ca: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BenchPki {
    pub dir: PathBuf,
    pub root: CaFiles,
    pub auth_ca: CaFiles,
    pub cards: Vec<Card>,
    /// A valid card that the big CRL lists.
    pub revoked: Card,
    pub revoked_serial: Vec<u8>,
    pub servers: Vec<ServerFiles>,
    /// ES256 PKCS#8 PEM for the gateway's `[assertion] key`.
    pub assertion_key: PathBuf,
}

/// The CRL files of one run: `trust_*` are gateway trust directories (anchors,
/// intermediates, crls/), `nginx_*` the PEM bundles for nginx's `ssl_crl` (root's CRL and
/// auth-ca's), `root_pem` nginx's `ssl_client_certificate`.
#[derive(Debug, Clone)]
pub struct CrlFiles {
    pub trust_empty: PathBuf,
    pub trust_big: PathBuf,
    pub nginx_empty: PathBuf,
    pub nginx_big: PathBuf,
    pub root_pem: PathBuf,
    pub big_entries: usize,
    pub big_der_bytes: usize,
    /// Time to generate and sign the big CRL.
    pub big_generate: std::time::Duration,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    fs::write(path, contents).map_err(io(path))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(io(path))
}

/// Leaked once per generated card: `LeafSpec` and `Holder` take `'static` strings (the
/// test PKI's holders are constants), and the generator runs once per process.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// The `doctor` of the test PKI, as a different person: same issuer, role, policy and
/// shape, its own name, HPKI id, key and serial.
fn card_spec(index: usize, template: &LeafSpec) -> LeafSpec {
    LeafSpec {
        name: leak(format!("bench-{index:05}")),
        holder: Holder {
            name_romaji: leak(format!("Bench Doctor {index:05}")),
            name_kanji: leak(format!("試験\u{3000}医師{index:05}")),
            hpki_id: leak(format!("Bench{index:05}")),
            ..template.holder
        },
        ..template.clone()
    }
}

fn card_name(index: usize) -> String {
    format!("{index:05}")
}

impl BenchPki {
    /// The cache directory for `cards` cards under `root`.
    pub fn cache_dir(root: &Path, cards: usize) -> PathBuf {
        root.join(format!("pki-v{CACHE_VERSION}-{cards}"))
    }

    /// Reads the cached PKI for `cards` cards under `root`, generating it first when
    /// absent or incomplete. `progress` gets a line now and then.
    pub fn load_or_generate(
        root: &Path,
        cards: usize,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<BenchPki, String> {
        let dir = Self::cache_dir(root, cards);
        let stamp = format!("v{CACHE_VERSION} cards {cards}\n");
        if fs::read_to_string(dir.join(COMPLETE)).ok().as_deref() == Some(stamp.as_str()) {
            return Self::load(&dir, cards);
        }
        let _ = fs::remove_dir_all(&dir);
        Self::generate(&dir, cards, progress)?;
        write(&dir.join(COMPLETE), &stamp)?;
        Self::load(&dir, cards)
    }

    fn generate(dir: &Path, cards: usize, progress: &(dyn Fn(&str) + Sync)) -> Result<(), String> {
        let started = std::time::Instant::now();
        progress(&format!(
            "generating the benchmark PKI in {} ({cards} RSA-2048 cards)...",
            dir.display()
        ));
        let pki = TestPki::generate(&GenerateOptions::default()).map_err(|e| e.to_string())?;
        pki.write_to(&dir.join("pki")).map_err(|e| e.to_string())?;
        let template = leaf_specs()
            .into_iter()
            .find(|s| s.name == "doctor")
            .ok_or("the test PKI has no doctor")?;
        let auth_ca_pem = pki.get("auth-ca").ok_or("no auth-ca")?.pem.clone();
        // RSA key generation dominates: one thread per core.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let total = cards + 1; // the last one is the revoked card
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (pki, template, auth_ca_pem, done) = (&pki, &template, &auth_ca_pem, &done);
                    scope.spawn(move || -> Result<(), String> {
                        for index in (t..total).step_by(threads) {
                            let cert = pki
                                .issue_extra(&card_spec(index, template))
                                .map_err(|e| e.to_string())?;
                            let name = if index == cards {
                                write(
                                    &dir.join("cards/revoked.serial"),
                                    crate::der_writer::to_hex(&cert.serial),
                                )?;
                                "revoked".to_owned()
                            } else {
                                card_name(index)
                            };
                            let hpki_id = cert
                                .leaf
                                .as_ref()
                                .map(|l| l.holder.hpki_id)
                                .unwrap_or_default();
                            write(
                                &dir.join(format!("cards/{name}.pem")),
                                format!("{}{auth_ca_pem}", cert.pem),
                            )?;
                            write(&dir.join(format!("cards/{name}.key")), &cert.key_pem)?;
                            write(&dir.join(format!("cards/{name}.id")), hpki_id)?;
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if n % 500 == 0 {
                                progress(&format!("  {n}/{total} cards"));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a generator thread panicked".into()))
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), String>>()?;
        for (sub, key) in [
            ("server-ecdsa", ServerKey::EcdsaP256),
            ("server-rsa", ServerKey::Rsa2048),
        ] {
            let id = server_identity_with(&SERVER_HOSTS, key).map_err(|e| e.to_string())?;
            write_server(&dir.join(sub), &id)?;
        }
        let assertion = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        write(&dir.join("assertion-es256.pem"), assertion.serialize_pem())?;
        progress(&format!(
            "  benchmark PKI generated in {:.1?}",
            started.elapsed()
        ));
        Ok(())
    }

    fn load(dir: &Path, cards: usize) -> Result<BenchPki, String> {
        let ca = |name: &str| -> Result<CaFiles, String> {
            let cert_pem = read(&dir.join(format!("pki/certs/{name}.pem")))?;
            let cert_der = crate::der_reader::pem_to_der(&cert_pem, "CERTIFICATE")
                .ok_or_else(|| format!("{name}.pem holds no certificate"))?;
            Ok(CaFiles {
                cert_der,
                cert_pem,
                key_pem: read(&dir.join(format!("pki/certs/{name}.key")))?,
            })
        };
        let card = |name: &str| -> Result<Card, String> {
            Ok(Card {
                chain_pem: read(&dir.join(format!("cards/{name}.pem")))?,
                key_pem: read(&dir.join(format!("cards/{name}.key")))?,
                hpki_id: read(&dir.join(format!("cards/{name}.id")))?,
            })
        };
        let revoked_serial = crate::der_writer::from_hex(&read(&dir.join("cards/revoked.serial"))?)
            .ok_or("cards/revoked.serial is not hex")?;
        let server = |sub: &str, key| ServerFiles {
            key,
            chain: dir.join(sub).join("server.pem"),
            key_file: dir.join(sub).join("server.key"),
            ca: dir.join(sub).join("server-ca.pem"),
        };
        Ok(BenchPki {
            dir: dir.to_owned(),
            root: ca("root")?,
            auth_ca: ca("auth-ca")?,
            cards: (0..cards)
                .map(|i| card(&card_name(i)))
                .collect::<Result<_, _>>()?,
            revoked: card("revoked")?,
            revoked_serial,
            servers: vec![
                server("server-ecdsa", ServerKey::EcdsaP256),
                server("server-rsa", ServerKey::Rsa2048),
            ],
            assertion_key: dir.join("assertion-es256.pem"),
        })
    }

    pub fn server(&self, key: ServerKey) -> &ServerFiles {
        self.servers
            .iter()
            .find(|s| s.key == key)
            .expect("both server identities are generated")
    }

    /// Signs this run's CRLs into `out`: empty ones for root and auth-ca, and a big one for
    /// auth-ca with `big_entries` random serials plus the revoked card's.
    pub fn write_crls(&self, out: &Path, big_entries: usize) -> Result<CrlFiles, String> {
        let now = OffsetDateTime::now_utc();
        let (this_update, next_update) = (
            now - time::Duration::hours(1),
            now + time::Duration::days(7),
        );
        // A higher number than any earlier run's, so a CRL is never "older" than one in use.
        let number = now.unix_timestamp() as u64;
        let root = CrlIssuer::from_certificate(&self.root.cert_der, &self.root.key_pem)
            .map_err(|e| e.to_string())?;
        let auth_ca = CrlIssuer::from_certificate(&self.auth_ca.cert_der, &self.auth_ca.key_pem)
            .map_err(|e| e.to_string())?;
        let none: &[[u8; 16]] = &[];
        let root_crl = bulk_crl::build(&root, none, number, this_update, next_update)
            .map_err(|e| e.to_string())?;
        let auth_empty = bulk_crl::build(&auth_ca, none, number, this_update, next_update)
            .map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut serials: Vec<Vec<u8>> = Vec::with_capacity(big_entries + 1);
        for i in 0..big_entries {
            if i == big_entries / 2 {
                serials.push(self.revoked_serial.clone());
            }
            serials.push(
                bulk_crl::random_serial(&rng)
                    .map_err(|e| e.to_string())?
                    .to_vec(),
            );
        }
        if serials.is_empty() {
            serials.push(self.revoked_serial.clone());
        }
        let auth_big = bulk_crl::build(&auth_ca, &serials, number, this_update, next_update)
            .map_err(|e| e.to_string())?;
        let big_generate = started.elapsed();
        drop(serials);
        let files = CrlFiles {
            trust_empty: out.join("trust-empty"),
            trust_big: out.join("trust-big"),
            nginx_empty: out.join("nginx-crl-empty.pem"),
            nginx_big: out.join("nginx-crl-big.pem"),
            root_pem: out.join("root.pem"),
            big_entries: big_entries.max(1),
            big_der_bytes: auth_big.len(),
            big_generate,
        };
        write(&files.root_pem, &self.root.cert_pem)?;
        for (trust, auth_crl, nginx) in [
            (&files.trust_empty, &auth_empty, &files.nginx_empty),
            (&files.trust_big, &auth_big, &files.nginx_big),
        ] {
            write(&trust.join("anchors/root.pem"), &self.root.cert_pem)?;
            write(
                &trust.join("intermediates/auth-ca.pem"),
                &self.auth_ca.cert_pem,
            )?;
            write(&trust.join("crls/root.crl"), &root_crl)?;
            write(&trust.join("crls/auth-ca.crl"), auth_crl)?;
            write(
                nginx,
                format!(
                    "{}{}",
                    bulk_crl::to_pem(&root_crl),
                    bulk_crl::to_pem(auth_crl)
                ),
            )?;
        }
        Ok(files)
    }
}

fn write_server(dir: &Path, id: &ServerIdentity) -> Result<(), String> {
    write(&dir.join("server.pem"), &id.chain_pem)?;
    write(&dir.join("server.key"), &id.key_pem)?;
    write(&dir.join("server-ca.pem"), &id.ca_pem)
}
