//! Password hashing with Argon2id, off the async threads and bounded in number.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::HashCost;

/// Computes and checks password hashes on tokio's blocking threads, at most
/// `permits` at a time: each one takes the hash cost's memory.
#[derive(Clone, Debug)]
pub struct Hasher {
    cost: HashCost,
    permits: Arc<Semaphore>,
    /// A hash of a random password, checked for unknown users so that a wrong
    /// name costs as much time as a wrong password (SPEC.md section 11.5).
    decoy: Arc<str>,
}

impl Hasher {
    /// A hasher with this cost and this many hashes at once.
    pub fn new(cost: HashCost, permits: usize) -> Result<Self, String> {
        let mut secret = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut secret);
        let decoy = hash(cost, &secret)?;
        Ok(Hasher { cost, permits: Arc::new(Semaphore::new(permits)), decoy: decoy.into() })
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: Vec<u8>) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let cost = self.cost;
        tokio::task::spawn_blocking(move || hash(cost, &password))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Checks a password against a stored hash, or against the decoy when the
    /// user does not exist (and then fails, after the same work).
    pub async fn verify(&self, password: Vec<u8>, stored: Option<Arc<str>>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy.clone());
        let checked = tokio::task::spawn_blocking(move || verify(&password, &hash)).await;
        known && checked.unwrap_or(false)
    }
}

fn argon(cost: HashCost) -> Result<Argon2<'static>, String> {
    let params =
        Params::new(cost.memory_kib, cost.iterations, 1, None).map_err(|e| e.to_string())?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash(cost: HashCost, password: &[u8]) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon(cost)?.hash_password(password, &salt).map_err(|e| e.to_string())?.to_string())
}

fn verify(password: &[u8], stored: &str) -> bool {
    // The parameters come from the stored string, so a change of cost in the
    // configuration does not lock out older accounts.
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_password_verifies_wrong_and_unknown_do_not() {
        let h = Hasher::new(HashCost::TEST_ONLY, 2).unwrap();
        let stored: Arc<str> = h.hash(b"correct-pass".to_vec()).await.unwrap().into();
        assert!(stored.starts_with("$argon2id$"));
        assert!(h.verify(b"correct-pass".to_vec(), Some(stored.clone())).await);
        assert!(!h.verify(b"correct-pasS".to_vec(), Some(stored)).await);
        assert!(!h.verify(b"correct-pass".to_vec(), None).await);
    }
}
