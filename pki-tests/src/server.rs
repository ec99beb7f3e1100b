//! A TLS server identity for the gateway's own listener in demos and tests: a small
//! ECDSA P-256 CA and a server certificate for loopback names. Deliberately not
//! HPKI-shaped: the server side of the handshake is ordinary Web PKI.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};

use crate::PkiError;

/// PEM texts of a server identity.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// The CA certificate a client trusts (`curl --cacert`).
    pub ca_pem: String,
    /// Server certificate followed by the CA: what the gateway serves.
    pub chain_pem: String,
    pub key_pem: String,
}

fn err(name: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        name: name.to_owned(),
        source,
    }
}

/// The server certificate's key: what the server signs each full handshake with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKey {
    EcdsaP256,
    Rsa2048,
}

/// Issues an ECDSA P-256 server certificate for `hosts` (DNS names or IP addresses).
pub fn server_identity(hosts: &[&str]) -> Result<ServerIdentity, PkiError> {
    server_identity_with(hosts, ServerKey::EcdsaP256)
}

/// Issues a server certificate with a `key` of that kind for `hosts`; the CA is ECDSA
/// P-256 either way.
pub fn server_identity_with(hosts: &[&str], key: ServerKey) -> Result<ServerIdentity, PkiError> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("server-ca"))?;
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hpki-gateway demo server CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.use_authority_key_identifier_extension = true;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err("server-ca"))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(match key {
        ServerKey::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
        ServerKey::Rsa2048 => &PKCS_RSA_SHA256,
    })
    .map_err(err("server"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().copied().unwrap_or("localhost"),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => (*h).try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(err("server"))?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(err("server"))?;
    Ok(ServerIdentity {
        ca_pem: ca_cert.pem(),
        chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    })
}
