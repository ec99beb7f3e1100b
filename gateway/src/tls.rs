//! TLS termination: the cipher profiles and the client-certificate verifier.
//!
//! rustls-webpki refuses every real HPKI certificate (critical certificatePolicies), and
//! rustls' own CertificateVerify helpers go through it, so this verifier checks the
//! handshake signature from the certificate's SubjectPublicKeyInfo itself. Path
//! validation is not done here: a client that proves possession of its key completes
//! the handshake whatever its certificate, and `pki` decides right after the handshake,
//! so that a doctor with an expired card sees a page that says so instead of a browser
//! TLS error. Nothing is forwarded before that decision.

use std::sync::Arc;

use der::{Decode, Encode};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite, kx_group};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, PeerMisbehaved,
    ServerConfig, SignatureScheme,
};

use crate::config::{ClientAuth, TlsProfile};

/// Client signature schemes accepted in CertificateVerify. Under `hpki-card` no RSA-PSS
/// scheme is offered: OpenSSL-based card middleware would otherwise pick PSS, which a
/// PKCS#1-only HPKI card cannot produce, and fail.
fn client_schemes(profile: TlsProfile) -> Vec<SignatureScheme> {
    let mut schemes = vec![
        SignatureScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
    ];
    if profile == TlsProfile::CryptrecHigh {
        schemes.extend([
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
        ]);
    }
    schemes
}

/// Accepts any well-formed client certificate whose holder proves possession of the key.
#[derive(Debug)]
pub struct HpkiClientVerifier {
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    schemes: Vec<SignatureScheme>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl HpkiClientVerifier {
    /// `hint_subjects`: DER subjects sent in CertificateRequest so that browsers offer
    /// only the certificates of the CAs we trust (anchors and intermediates).
    pub fn new(profile: TlsProfile, client_auth: ClientAuth, hint_subjects: Vec<Vec<u8>>) -> Self {
        Self {
            hints: hint_subjects
                .into_iter()
                .map(DistinguishedName::from)
                .collect(),
            mandatory: client_auth == ClientAuth::Required,
            schemes: client_schemes(profile),
            algorithms: provider::default_provider().signature_verification_algorithms,
        }
    }

    fn check_scheme(&self, scheme: SignatureScheme) -> Result<(), Error> {
        if self.schemes.contains(&scheme) {
            Ok(())
        } else {
            Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into())
        }
    }
}

fn spki_of(cert: &CertificateDer<'_>) -> Result<x509_cert::spki::SubjectPublicKeyInfoOwned, Error> {
    x509_cert::Certificate::from_der(cert.as_ref())
        .map(|c| c.tbs_certificate.subject_public_key_info)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))
}

impl ClientCertVerifier for HpkiClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Nothing to decide here: a certificate that does not even parse fails the
        // CertificateVerify check below (its key cannot be read), and everything else is
        // decided by `pki` after the handshake (see above). Parsing here would only parse
        // the same bytes once more per handshake.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check_scheme(dss.scheme)?;
        let spki = spki_of(cert)?;
        let key_alg_der = spki
            .algorithm
            .to_der()
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // webpki's AlgorithmIdentifier values are the SEQUENCE contents, without the header.
        let key_alg = crate::pki::der_walk::split_tlv(&key_alg_der)
            .map(|(tlv, _)| tlv.value)
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .unwrap_or(&[]);
        let key = spki.subject_public_key.raw_bytes();
        for alg in candidates {
            if alg.public_key_alg_id().as_ref() == key_alg {
                return alg
                    .verify_signature(key, message, dss.signature())
                    .map(|_| HandshakeSignatureValid::assertion())
                    .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature));
            }
        }
        Err(Error::InvalidCertificate(CertificateError::BadSignature))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check_scheme(dss.scheme)?;
        let spki = spki_of(cert)?
            .to_der()
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The server configuration for a listener.
pub fn server_config(
    profile: TlsProfile,
    verifier: Arc<HpkiClientVerifier>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    http2: bool,
) -> Result<ServerConfig, Error> {
    let tls12 = vec![
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    let (suites, versions): (_, &[&'static rustls::SupportedProtocolVersion]) = match profile {
        TlsProfile::HpkiCard => (tls12, &[&rustls::version::TLS12]),
        TlsProfile::CryptrecHigh => {
            let mut s = vec![
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
            ];
            s.extend(tls12);
            (s, &[&rustls::version::TLS13, &rustls::version::TLS12])
        }
    };
    let crypto = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..provider::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto))
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(config)
}

/// Reads the server certificate chain and key (PEM), naming the file in every error.
pub fn load_server_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no CERTIFICATE block (expected the server certificate chain as PEM)",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{}: {e} (expected a PEM private key: PKCS#8, PKCS#1 RSA or SEC1 EC)",
            key.display()
        )
    })?;
    Ok((chain, key))
}

/// Certificates whose sessions were ended (a card pulled out): a cached TLS session that
/// carries one of them is not resumed, so the next connection needs a full handshake,
/// with the card. Entries last a day (sessions cached before the end may exist that long
/// in a browser); at most `MAX_ENDED` are kept.
#[derive(Debug, Default)]
pub struct EndedCertificates {
    ders: std::sync::Mutex<Vec<(Vec<u8>, std::time::Instant)>>,
}

const MAX_ENDED: usize = 4096;
const ENDED_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl EndedCertificates {
    pub fn add(&self, der: Vec<u8>) {
        if let Ok(mut d) = self.ders.lock() {
            d.retain(|(_, at)| at.elapsed() < ENDED_FOR);
            d.retain(|(x, _)| *x != der);
            if d.len() >= MAX_ENDED {
                d.remove(0);
            }
            d.push((der, std::time::Instant::now()));
        }
    }

    /// Whether an encoded session holds one of the ended certificates (the session value
    /// carries the client's certificate chain as DER).
    fn taints(&self, session: &[u8]) -> bool {
        let Ok(d) = self.ders.lock() else {
            return false;
        };
        d.iter().any(|(der, at)| {
            at.elapsed() < ENDED_FOR
                && !der.is_empty()
                && session.windows(der.len()).any(|w| w == der.as_slice())
        })
    }
}

/// Session storage that refuses (and forgets) sessions of ended certificates.
#[derive(Debug)]
struct GuardedSessions {
    inner: Arc<dyn rustls::server::StoresServerSessions>,
    ended: Arc<EndedCertificates>,
}

impl rustls::server::StoresServerSessions for GuardedSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let value = self.inner.get(key)?;
        if self.ended.taints(&value) {
            let _ = self.inner.take(key);
            return None;
        }
        Some(value)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let value = self.inner.take(key)?;
        (!self.ended.taints(&value)).then_some(value)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// Makes a server configuration refuse to resume the sessions of ended certificates.
pub fn guard_sessions(config: &mut ServerConfig, ended: Arc<EndedCertificates>) {
    config.session_storage = Arc::new(GuardedSessions {
        inner: config.session_storage.clone(),
        ended,
    });
}
