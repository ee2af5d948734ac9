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

impl ClusterSecret {
    /// The secret kept in the file at `path`, or a new one written there (the file created
    /// with mode 0600, its folder with 0700, if missing); true when it was made now.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<(Self, bool)> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the cluster secret file is readable by others");
                }
                let secret = ClusterSecret::new(text.trim()).map_err(|error| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {error}", path.display()))
                })?;
                Ok((secret, false))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder)?;
                }
                let (secret, text) = ClusterSecret::generate();
                match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                    Ok(mut file) => {
                        file.write_all(format!("{text}\n").as_bytes())?;
                        Ok((secret, true))
                    }
                    // Another process made it first: use theirs (once it is written).
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Self::load_or_create(path)
                    }
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The password a server of the cluster logs in with to a server whose greeting carried
    /// `nonce` (user [`crate::protocol::CLUSTER_USER`]).
    pub fn login_proof(&self, nonce: &str) -> String {
        self.proof(nonce, LOGIN_REQUEST)
    }

    /// True when `proof` is [`ClusterSecret::login_proof`] of `nonce`.
    pub fn verify_login(&self, nonce: &str, proof: &str) -> bool {
        !nonce.is_empty() && self.verify(nonce, LOGIN_REQUEST, proof)
    }
}

/// What a cluster login signs, next to the nonce (so that a login proof is never a valid proof
/// of a registry change, nor the reverse).
const LOGIN_REQUEST: &str = "LOGIN ftpcalc-cluster";

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
    fn a_secret_file_is_made_private_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().expect("folder");
        let path = folder.path().join("state/SV0.secret");
        let (made, created) = ClusterSecret::load_or_create(&path).expect("made");
        assert!(created);
        assert_eq!(std::fs::metadata(&path).expect("file").permissions().mode() & 0o777, 0o600);
        let (again, created) = ClusterSecret::load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(made.proof("c", "r"), again.proof("c", "r"));
        std::fs::write(&path, "short").expect("write");
        assert!(ClusterSecret::load_or_create(&path).is_err(), "a short secret is refused");
    }

    #[test]
    fn login_proofs_bind_the_nonce() {
        let secret = ClusterSecret::new("correct horse battery staple").expect("long enough");
        let proof = secret.login_proof("n1");
        assert!(secret.verify_login("n1", &proof));
        assert!(!secret.verify_login("n2", &proof), "another connection's nonce");
        assert!(!secret.verify_login("", &secret.login_proof("")), "no nonce, no login");
        assert!(!secret.verify("n1", "REGISTER x", &proof), "a login proof proves nothing else");
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
