//! `hpki-gateway pending export ID --out DIR --config FILE`: the evidence of a signed
//! confirmation (`[confirm] require_signature`), as files anyone can check with OpenSSL
//! alone — the confirmation text, the doctor's signature and signing certificate, the CA
//! certificates that validated it, the held body, the entry's metadata and the commands
//! (docs/confirmation-signature.md).
//!
//! Before writing anything the bundle is checked the way VERIFY.txt asks a reader to: the
//! text rebuilt from the stored entry must have the signed digest and the signature must
//! verify. An entry changed in the store after its confirmation is refused, not exported.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::json;

use super::store_cmd::{finish, CmdResult, Failure, StoreOptions};
use super::EXIT_OK;
use crate::pki::confirmation::{confirmation_digest, verify_confirmation_signature};
use crate::pki::{self, name, ParsedCertificate, UnixTime};
use crate::store::{self, PendingWrite};

#[derive(Args)]
pub struct PendingArgs {
    #[command(subcommand)]
    command: PendingCommand,
}

#[derive(Subcommand)]
pub enum PendingCommand {
    /// Write the evidence of a signed confirmation to a new directory: confirmation.txt,
    /// signature.bin / .b64, signing-cert.pem, ca-chain.pem (anchor.pem,
    /// intermediates.pem), body.bin, entry.json and VERIFY.txt with the OpenSSL commands
    /// that check it. Exit 0 written, 1 unknown entry / no signature / the stored entry no
    /// longer matches its signature, 2 bad input (the directory).
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// The held write's id (`p-...`, as `/_hpki/pending` and the audit log show it).
    id: String,
    /// Where to write the bundle: a new or empty directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    store: StoreOptions,
}

pub fn run(args: PendingArgs) -> i32 {
    finish(match args.command {
        PendingCommand::Export(a) => export(a),
    })
}

fn export(args: ExportArgs) -> CmdResult {
    let session = args.store.open(false)?;
    let entry = session
        .block_on(session.store.pending(&args.id))?
        .ok_or_else(|| {
            Failure::Refused(format!(
                "no held write {:?} in this store: check the id (`/_hpki/pending` and the \
                 audit log's confirm records show it)",
                args.id
            ))
        })?;
    let bundle = Bundle::of(&entry)?;
    prepare_dir(&args.out)?;
    println!(
        "exporting the signed confirmation of {} ({} {}) to {}",
        entry.id,
        entry.method,
        entry.path_and_query,
        args.out.display()
    );
    let files = bundle.files(&entry);
    for (file, bytes) in &files {
        let path = args.out.join(file);
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
        println!("  {file:<20} {:>8} bytes", bytes.len());
    }
    println!(
        "{} files written; signed by {} (HPKI id {}) at {}, text SHA-256 {}",
        files.len(),
        name::display(bundle.signer.subject()),
        bundle.doctor,
        store::format_time(bundle.signed_at),
        name::hex(&bundle.digest)
    );
    println!(
        "check it with OpenSSL alone: the commands are in {}",
        args.out.join("VERIFY.txt").display()
    );
    Ok(EXIT_OK)
}

/// A new directory, or an empty one: evidence is never written over other files.
fn prepare_dir(dir: &Path) -> Result<(), Failure> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| Failure::Usage(format!("--out {}: cannot be read: {e}", dir.display())))?;
        if entries.next().is_some() {
            return Err(Failure::Usage(format!(
                "--out {} is not empty: give a new directory for the bundle",
                dir.display()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Usage(format!("--out {}: cannot be created: {e}", dir.display())))
}

/// A signed confirmation, checked.
struct Bundle {
    text: String,
    digest: [u8; 32],
    doctor: String,
    signed_at: store::Timestamp,
    signer: ParsedCertificate,
    signature: Vec<u8>,
    /// Issuer of the signer first, anchor last.
    chain: Vec<ParsedCertificate>,
}

impl Bundle {
    /// Rebuilds the text from the stored entry and checks it against the stored
    /// signature, as a reader of the bundle will.
    fn of(entry: &PendingWrite) -> Result<Bundle, Failure> {
        let Some(signed) = &entry.signature else {
            return Err(Failure::Refused(format!(
                "entry {} ({}) carries no doctor's signature: it was confirmed without \
                 [confirm] require_signature, or is not confirmed yet",
                entry.id,
                entry.state.as_str()
            )));
        };
        let (Some(confirmer), Some(signed_at)) = (&entry.confirmer, entry.decided_at) else {
            return Err(Failure::Refused(format!(
                "entry {} has a signature but no confirming doctor recorded: the store is \
                 inconsistent",
                entry.id
            )));
        };
        let text = entry
            .confirmation_text(&confirmer.hpki_id)
            .map_err(|e| Failure::Refused(format!("entry {}: {e}", entry.id)))?;
        let digest = confirmation_digest(&text);
        if digest != signed.digest {
            return Err(Failure::Refused(format!(
                "entry {} as stored now has confirmation text SHA-256 {}, but the doctor signed \
                 {}: the store was changed after the confirmation; nothing written",
                entry.id,
                name::hex(&digest),
                name::hex(&signed.digest)
            )));
        }
        let unreadable = |what: &str, e: pki::ParseError| {
            Failure::Refused(format!("entry {}: stored {what} unreadable: {e}", entry.id))
        };
        let signer = ParsedCertificate::from_der(&signed.certificate)
            .map_err(|e| unreadable("signing certificate", e))?;
        verify_confirmation_signature(&signer, text.as_bytes(), &signed.signature).map_err(
            |reason| {
                Failure::Refused(format!(
                    "entry {}: the stored signature does not verify over the confirmation text \
                     ({reason}): the store was changed after the confirmation; nothing written",
                    entry.id
                ))
            },
        )?;
        let chain = signed
            .chain
            .iter()
            .map(|der| ParsedCertificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable("CA certificate", e))?;
        Ok(Bundle {
            text,
            digest,
            doctor: confirmer.hpki_id.clone(),
            signed_at,
            signer,
            signature: signed.signature.clone(),
            chain,
        })
    }

    /// Every file of the bundle, in the order written.
    fn files(&self, entry: &PendingWrite) -> Vec<(&'static str, Vec<u8>)> {
        let pem = |c: &ParsedCertificate| pki::pem_encode("CERTIFICATE", c.der());
        let (anchor, intermediates) = match self.chain.split_last() {
            Some((anchor, rest)) => (pem(anchor), rest.iter().map(pem).collect::<String>()),
            None => (String::new(), String::new()),
        };
        let chain: String = self.chain.iter().map(pem).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.signature) + "\n";
        let mut files = vec![
            ("confirmation.txt", self.text.clone().into_bytes()),
            ("signature.bin", self.signature.clone()),
            ("signature.b64", b64.into_bytes()),
            ("signing-cert.pem", pem(&self.signer).into_bytes()),
            ("ca-chain.pem", chain.into_bytes()),
            ("anchor.pem", anchor.into_bytes()),
        ];
        if !intermediates.is_empty() {
            files.push(("intermediates.pem", intermediates.into_bytes()));
        }
        files.push(("body.bin", entry.body.clone()));
        files.push(("entry.json", self.metadata(entry).into_bytes()));
        files.push(("VERIFY.txt", self.verify_text(entry).into_bytes()));
        files
    }

    fn metadata(&self, entry: &PendingWrite) -> String {
        let cert = |c: &ParsedCertificate| {
            json!({
                "subject": name::display(c.subject()),
                "issuer": name::display(c.issuer()),
                "serial": c.serial_hex(),
                "sha256": name::hex(c.sha256()),
                "not_before": c.not_before().to_rfc3339(),
                "not_after": c.not_after().to_rfc3339(),
            })
        };
        let signer_id = pki::read_identity(&self.signer).ok();
        let mut signer = cert(&self.signer);
        signer["hpki_id"] = json!(signer_id.as_ref().and_then(|i| i.hpki_id.clone()));
        signer["name"] = json!(signer_id.as_ref().and_then(|i| i.name.clone()));
        signer["name_kanji"] = json!(signer_id.as_ref().and_then(|i| i.name_kanji.clone()));
        let v = json!({
            "format": pki::confirmation::CONFIRMATION_FORMAT,
            "entry": {
                "id": entry.id,
                "state": entry.state.as_str(),
                "method": entry.method,
                "host": entry.request_host,
                "path": entry.path_and_query,
                "headers": entry.headers,
                "body_bytes": entry.body.len(),
                "body_sha256": name::hex(&pki::sha256(&entry.body)),
                "assistant_id": entry.assistant_id,
                "assistant_name": entry.assistant_name,
                "held_at": utc(entry.created_at),
                "expires_at": utc(entry.expires_at),
            },
            "confirmation": {
                "doctor_hpki_id": self.doctor,
                "doctor_name": entry.confirmer.as_ref().map(|c| &c.name),
                "confirmed_at": utc(self.signed_at),
                "attempts": entry.attempts,
                "upstream_status": entry.upstream_status,
                "forwarded_at": entry.forwarded_at.map(utc),
                "text_sha256": name::hex(&self.digest),
                "signature_algorithm": "sha256WithRSAEncryption (RSASSA-PKCS1-v1_5, SHA-256)",
            },
            "signer": signer,
            "ca_chain": self.chain.iter().map(cert).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    fn verify_text(&self, entry: &PendingWrite) -> String {
        let body_sha = name::hex(&pki::sha256(&entry.body));
        let untrusted = if self.chain.len() > 1 {
            " -untrusted intermediates.pem"
        } else {
            ""
        };
        format!(
            "Signed confirmation of held write {id}\n\
             \n\
             \x20 entry:     {method} {path} (held {held} by assistant {assistant})\n\
             \x20 doctor:    HPKI id {doctor}, confirmed at {at}\n\
             \x20 signer:    {subject}\n\
             \x20            serial {serial}, issuer {issuer}\n\
             \x20            certificate SHA-256 {cert_sha}\n\
             \x20 text:      confirmation.txt, SHA-256 {digest}\n\
             \n\
             The doctor signed confirmation.txt (RSA PKCS#1 v1.5, SHA-256) with an HPKI signing\n\
             card; the text names the entry, its body by SHA-256 and the doctor. Check the three\n\
             claims below with OpenSSL alone, in this directory: run each command (a line that\n\
             starts with `openssl`) and compare its output with the line after it.\n\
             \n\
             1. The signature over confirmation.txt is the signing certificate's:\n\
             \n\
             openssl x509 -in signing-cert.pem -noout -pubkey -out signing-pubkey.pem\n\
             openssl dgst -sha256 -verify signing-pubkey.pem -signature signature.bin confirmation.txt\n\
             \x20  expected: Verified OK\n\
             \n\
             2. The signing certificate chains to the signing CA (anchor.pem; ca-chain.pem holds\n\
             \x20  the same CA certificates in one file), as of the confirmation time:\n\
             \n\
             openssl verify -attime {attime} -CAfile anchor.pem{untrusted} signing-cert.pem\n\
             \x20  expected: signing-cert.pem: OK\n\
             \n\
             3. body.bin is the body the text names (its body-sha256 line):\n\
             \n\
             openssl dgst -sha256 -r body.bin\n\
             \x20  expected: {body_sha} *body.bin\n\
             \n\
             The gateway also checked, at the confirmation, that the signing certificate was not\n\
             revoked (its signing profile's revocation policy) and that its HPKI id is the\n\
             confirming doctor's; the audit log's confirm record for {id} says so.\n",
            id = entry.id,
            method = entry.method,
            path = entry.path_and_query,
            held = utc(entry.created_at),
            assistant = entry.assistant_id,
            doctor = self.doctor,
            at = utc(self.signed_at),
            subject = name::display(self.signer.subject()),
            serial = self.signer.serial_hex(),
            issuer = name::display(self.signer.issuer()),
            cert_sha = name::hex(self.signer.sha256()),
            digest = name::hex(&self.digest),
            attime = self.signed_at,
        )
    }
}

/// RFC 3339 UTC, as the confirmation text writes times.
fn utc(t: store::Timestamp) -> String {
    UnixTime(u64::try_from(t).unwrap_or(0)).to_rfc3339()
}
