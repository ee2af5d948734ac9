//! The cluster secret: what a worker proves to change the registry. The secret itself never
//! crosses the network: the main server hands out a single-use random challenge per session,
//! and the worker answers with HMAC-SHA256(secret, challenge and request). Nothing here logs or
//! prints the secret.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Fewest characters a cluster secret may have.
pub const MIN_SECRET_CHARS: usize = 16;

/// Why a secret is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cluster secret needs at least {MIN_SECRET_CHARS} characters")]
pub struct SecretError;

/// The shared secret of a cluster. Its `Debug` output hides it.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClusterSecret(hidden)")
    }
}

impl ClusterSecret {
    /// A secret from its text.
    pub fn new(text: &str) -> Result<Self, SecretError> {
        if text.chars().count() < MIN_SECRET_CHARS {
            return Err(SecretError);
        }
        Ok(ClusterSecret(text.as_bytes().to_vec()))
    }

    /// A new random secret and its text (32 hexadecimal digits), to print once for the operator.
    pub fn generate() -> (Self, String) {
        let text = random_hex(16);
        (ClusterSecret(text.as_bytes().to_vec()), text)
    }

    fn mac(&self, challenge: &str, request: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(challenge.as_bytes());
        mac.update(b"\n");
        mac.update(request.as_bytes());
        mac
    }

    /// The proof for `request` (e.g. `REGISTER SV5 127.0.0.1:2200 ADD,MUL`) under `challenge`.
    pub fn proof(&self, challenge: &str, request: &str) -> String {
        hex(&self.mac(challenge, request).finalize().into_bytes())
    }

    /// True when `proof` is the proof for `request` under `challenge` (compared in constant time).
    pub fn verify(&self, challenge: &str, request: &str, proof: &str) -> bool {
        match unhex(proof) {
            Some(bytes) => self.mac(challenge, request).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// `bytes` random bytes as hexadecimal text: challenges and generated secrets.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_challenge_and_request() {
        let secret = ClusterSecret::new("correct horse battery staple").expect("long enough");
        let proof = secret.proof("c1", "REGISTER SV5 127.0.0.1:1 ADD");
        assert!(secret.verify("c1", "REGISTER SV5 127.0.0.1:1 ADD", &proof));
        assert!(!secret.verify("c2", "REGISTER SV5 127.0.0.1:1 ADD", &proof), "another challenge");
        assert!(!secret.verify("c1", "REGISTER SV6 127.0.0.1:1 ADD", &proof), "another request");
        let other = ClusterSecret::new("another long secret!").expect("long enough");
        assert!(!other.verify("c1", "REGISTER SV5 127.0.0.1:1 ADD", &proof), "another secret");
        assert!(!secret.verify("c1", "REGISTER SV5 127.0.0.1:1 ADD", "zz"), "not hex");
        assert!(!secret.verify("c1", "REGISTER SV5 127.0.0.1:1 ADD", ""), "empty");
    }

    #[test]
    fn secrets_are_long_and_hidden() {
        assert!(ClusterSecret::new("short").is_err());
        let (secret, text) = ClusterSecret::generate();
        assert_eq!(text.len(), 32);
        assert!(!format!("{secret:?}").contains(&text));
        assert_ne!(random_hex(16), random_hex(16));
    }
}
