//! Validated client chains, remembered by the certificates' bytes: a browser opens several
//! connections per card and resumes its TLS session on more, and each would otherwise
//! parse the chain and validate its path again (about a third of a resumed connection's
//! CPU, measured by `pki-tests/bench`).
//!
//! An entry is used only under the trust generation that validated it and only while
//! nothing time-dependent could change the outcome: it ends at the earliest `notAfter` of
//! its path, at the next `trust.toml` window boundary of the store, and after
//! [`VALIDATED_FOR`] in any case. Revocation is not remembered: it is checked on every
//! connection, against the CRLs in use then. Chains that fail validation are not remembered.

use std::sync::Arc;
use std::time::Duration;

use crate::identity::Identity;
use crate::pki::{ParsedCertificate, Reason, UnixTime, ValidatedPath};
use crate::trust::TrustStore;

/// Longest life of an entry.
pub const VALIDATED_FOR: Duration = Duration::from_secs(600);

/// Most entries kept (least recently used evicted).
const CAPACITY: u64 = 4096;

/// A chain that validated, with what the connection needs from it.
pub struct Validated {
    generation: u64,
    until: UnixTime,
    pub leaf: Arc<ParsedCertificate>,
    pub presented: Vec<Arc<ParsedCertificate>>,
    pub path: Arc<ValidatedPath>,
    pub profile_index: usize,
    pub profile: String,
    /// The identity read from the leaf, or why it cannot be (a malformed hcRole), which is
    /// answered after the revocation check, as for a chain validated just now.
    pub identity: Result<Arc<Identity>, Reason>,
}

impl Validated {
    /// Bounds an entry validated at `now` under `trust` (generation `generation`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        generation: u64,
        trust: &TrustStore,
        now: UnixTime,
        leaf: Arc<ParsedCertificate>,
        presented: Vec<Arc<ParsedCertificate>>,
        path: Arc<ValidatedPath>,
        profile_index: usize,
        profile: String,
        identity: Result<Arc<Identity>, Reason>,
    ) -> Validated {
        let mut until = UnixTime(now.0.saturating_add(VALIDATED_FOR.as_secs()));
        for cert in &path.chain {
            until = until.min(cert.not_after());
        }
        if let Some(change) = trust.next_schedule_change(now) {
            until = until.min(change);
        }
        Validated {
            generation,
            until,
            leaf,
            presented,
            path,
            profile_index,
            profile,
            identity,
        }
    }
}

/// The key of a presented chain: SHA-256 over each certificate's length and bytes, leaf
/// first.
pub fn chain_key(certs: &[rustls::pki_types::CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for c in certs {
        ctx.update(&(c.as_ref().len() as u64).to_be_bytes());
        ctx.update(c.as_ref());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

pub struct ValidatedChains {
    cache: moka::future::Cache<[u8; 32], Arc<Validated>>,
}

impl Default for ValidatedChains {
    fn default() -> Self {
        ValidatedChains {
            cache: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(VALIDATED_FOR)
                .build(),
        }
    }
}

impl ValidatedChains {
    /// The entry for `key` if it still holds under `generation` at `now`.
    pub async fn get(
        &self,
        key: &[u8; 32],
        generation: u64,
        now: UnixTime,
    ) -> Option<Arc<Validated>> {
        let hit = self.cache.get(key).await?;
        if hit.generation == generation && now < hit.until {
            Some(hit)
        } else {
            self.cache.invalidate(key).await;
            None
        }
    }

    pub async fn insert(&self, key: [u8; 32], validated: Arc<Validated>) {
        self.cache.insert(key, validated).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Reason;
    use crate::trust::{AnchorWindow, TrustDirectory, TrustProfile};

    /// A certificate valid until `not_after` (Unix seconds), made with rcgen.
    fn cert(not_after: i64) -> Arc<ParsedCertificate> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["card.example".into()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Arc::new(ParsedCertificate::from_der(&der).unwrap())
    }

    fn store(window_end: Option<i64>) -> TrustStore {
        let directory = TrustDirectory {
            schedule: window_end
                .map(|na| AnchorWindow {
                    anchor_sha256: [7; 32],
                    not_before: Some(500),
                    not_after: Some(na),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        TrustStore {
            profiles: vec![TrustProfile {
                name: "p".into(),
                kind: crate::config::TrustKind::Person,
                required_policies: Vec::new(),
                max_intermediates: 6,
                revocation: Default::default(),
                directory,
            }],
        }
    }

    fn validated(
        generation: u64,
        trust: &TrustStore,
        now: u64,
        leaf: Arc<ParsedCertificate>,
    ) -> Arc<Validated> {
        let path = Arc::new(ValidatedPath {
            chain: vec![leaf.clone()],
            user_constrained_policies: Vec::new(),
        });
        Arc::new(Validated::new(
            generation,
            trust,
            UnixTime(now),
            leaf,
            Vec::new(),
            path,
            0,
            "p".into(),
            Err(Reason::MalformedCertificate),
        ))
    }

    #[tokio::test]
    async fn an_entry_holds_only_for_its_generation_and_until_the_first_time_bound() {
        let now = 10_000u64;
        let chains = ValidatedChains::default();
        let key = chain_key(&[rustls::pki_types::CertificateDer::from(vec![1u8, 2, 3])]);

        // The certificate's notAfter comes first.
        chains
            .insert(key, validated(3, &store(None), now, cert(10_100)))
            .await;
        assert!(chains.get(&key, 3, UnixTime(now + 99)).await.is_some());
        assert!(
            chains.get(&key, 4, UnixTime(now + 1)).await.is_none(),
            "another trust generation"
        );
        chains
            .insert(key, validated(3, &store(None), now, cert(10_100)))
            .await;
        assert!(
            chains.get(&key, 3, UnixTime(10_100)).await.is_none(),
            "notAfter reached"
        );

        // A trust.toml window boundary before it.
        chains
            .insert(key, validated(3, &store(Some(10_050)), now, cert(10_100)))
            .await;
        assert!(chains.get(&key, 3, UnixTime(10_049)).await.is_some());
        assert!(
            chains.get(&key, 3, UnixTime(10_050)).await.is_none(),
            "window boundary"
        );

        // Otherwise the longest life.
        chains
            .insert(key, validated(3, &store(None), now, cert(1_000_000)))
            .await;
        let end = now + VALIDATED_FOR.as_secs();
        assert!(chains.get(&key, 3, UnixTime(end - 1)).await.is_some());
        assert!(chains.get(&key, 3, UnixTime(end)).await.is_none());
    }

    #[test]
    fn the_key_separates_chains_that_concatenate_alike() {
        use rustls::pki_types::CertificateDer;
        let a = chain_key(&[
            CertificateDer::from(vec![1u8, 2]),
            CertificateDer::from(vec![3u8]),
        ]);
        let b = chain_key(&[
            CertificateDer::from(vec![1u8]),
            CertificateDer::from(vec![2u8, 3]),
        ]);
        assert_ne!(a, b);
    }
}
