//! A rustls client that presents a test card, for tests and benchmarks of the gateway.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Always presents one certificate. `ClientConfig::with_client_auth_cert` cannot be used
/// for HPKI certificates: it checks the key against the certificate with webpki, which
/// rejects the critical certificatePolicies extension (`UnsupportedCriticalExtension`).
#[derive(Debug)]
struct PresentCard(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for PresentCard {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An HTTP/1.1 client configuration trusting `server_ca_pem` and presenting the card
/// whose certificate chain is `card_chain_pem` (leaf first) and whose key is `card_key`.
pub fn card_client_config(
    server_ca_pem: &[u8],
    card_chain_pem: &[u8],
    card_key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let card = certified_card(&provider, card_chain_pem, card_key)?;
    card_client_config_with(server_ca_pem, card, provider, rustls::DEFAULT_VERSIONS)
}

/// The card's chain and its key loaded by `provider`, to share between configurations.
pub fn certified_card(
    provider: &rustls::crypto::CryptoProvider,
    card_chain_pem: &[u8],
    card_key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(card_chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("card certificate: {e}"))?;
    let key = provider
        .key_provider
        .load_private_key(card_key)
        .map_err(|e| format!("card key: {e}"))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, key)))
}

/// Like [`card_client_config`] with a chosen provider (cipher suites, key exchange
/// groups) and protocol versions, presenting an already loaded card.
pub fn card_client_config_with(
    server_ca_pem: &[u8],
    card: Arc<rustls::sign::CertifiedKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca_pem) {
        roots
            .add(c.map_err(|e| format!("server CA: {e}"))?)
            .map_err(|e| format!("server CA: {e}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(PresentCard(card)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
