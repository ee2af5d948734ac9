//! FTPS (explicit, RFC 4217) identity: a rustls server configuration built once (from PEM
//! files, or a self-signed certificate made in memory) and shared by every connection, with TLS
//! 1.2 and 1.3 only and rustls's modern cipher suites (AEAD with forward secrecy).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

/// Why a TLS identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The file holds no certificate, or no private key.
    #[error("{path:?} holds no {what} in PEM form")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the certificate and key (they do not match, or are of an unsupported kind).
    #[error("the certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

/// A server's TLS configuration and its certificate's SHA-256 fingerprint.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The configuration every connection's TLS handshakes use.
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as `AB:CD:…`.
    pub fingerprint: String,
    /// A self-signed certificate in PEM, for clients that want to trust it.
    pub self_signed_pem: Option<String>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TlsIdentity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads a PEM certificate chain and private key.
    pub fn load(certificates: &Path, key: &Path) -> Result<Self, TlsError> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
        let chain_pem = read(certificates)?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&chain_pem).filter_map(Result::ok).collect();
        if chain.is_empty() {
            return Err(TlsError::Missing { path: certificates.to_path_buf(), what: "certificate" });
        }
        let key_pem = read(key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::Missing { path: key.to_path_buf(), what: "private key" })?;
        Self::build(chain, key, None)
    }

    /// A self-signed certificate for `names` (DNS names or IP addresses), made in memory.
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let certified = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|error| TlsError::Generate(error.to_string()))?;
        let certificate = certified.cert.der().clone();
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .map_err(|error| TlsError::Generate(error.to_string()))?;
        Self::build(vec![certificate], key, Some(certified.cert.pem()))
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        self_signed_pem: Option<String>,
    ) -> Result<Self, TlsError> {
        let fingerprint = fingerprint(&chain[0]);
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // Session resumption across the data connections of a session (clients such as lftp
        // and curl resume the control connection's session on each data connection).
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
        config.ticketer = ring::Ticketer::new()?;
        // No TLS 1.3 session tickets: with them lftp (GnuTLS) reset one upload data
        // connection in five here (`put` then `Fatal error: max-retries exceeded`); without
        // them 20 of 20 went through. libunftp turns TLS 1.3 off for the same lftp bug; we keep
        // 1.3 and drop only its tickets (TLS 1.2 resumption stays).
        config.send_tls13_tickets = 0;
        // Our order of cipher suites (strongest first), not the client's.
        config.ignore_client_order = true;
        Ok(TlsIdentity { config: Arc::new(config), fingerprint, self_signed_pem })
    }
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex.
pub fn fingerprint(certificate: &[u8]) -> String {
    let digest = Sha256::digest(certificate);
    let mut text = String::with_capacity(digest.len() * 3);
    for (index, byte) in digest.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02X}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_identity_round_trips_through_pem_files() {
        let identity = TlsIdentity::self_signed(&["localhost".into(), "127.0.0.1".into()]).expect("self-signed");
        assert_eq!(identity.fingerprint.len(), 32 * 3 - 1);
        let folder = tempfile::tempdir().expect("folder");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("generate");
        std::fs::write(folder.path().join("cert.pem"), certified.cert.pem()).expect("write");
        std::fs::write(folder.path().join("key.pem"), certified.signing_key.serialize_pem()).expect("write");
        let loaded = TlsIdentity::load(&folder.path().join("cert.pem"), &folder.path().join("key.pem")).expect("load");
        assert_eq!(loaded.fingerprint, fingerprint(certified.cert.der()));
        assert!(loaded.self_signed_pem.is_none() && identity.self_signed_pem.is_some());
    }

    #[test]
    fn bad_files_get_a_clear_error() {
        let folder = tempfile::tempdir().expect("folder");
        let missing = TlsIdentity::load(&folder.path().join("nope.pem"), &folder.path().join("nope.key"));
        assert!(matches!(missing, Err(TlsError::Read { .. })));
        std::fs::write(folder.path().join("empty.pem"), "not pem").expect("write");
        let empty = TlsIdentity::load(&folder.path().join("empty.pem"), &folder.path().join("empty.pem"));
        assert!(matches!(empty, Err(TlsError::Missing { what: "certificate", .. })));
        let one = rcgen::generate_simple_self_signed(vec!["a".to_string()]).expect("generate");
        let other = rcgen::generate_simple_self_signed(vec!["b".to_string()]).expect("generate");
        std::fs::write(folder.path().join("cert.pem"), one.cert.pem()).expect("write");
        std::fs::write(folder.path().join("key.pem"), other.signing_key.serialize_pem()).expect("write");
        let mismatch = TlsIdentity::load(&folder.path().join("cert.pem"), &folder.path().join("key.pem"));
        assert!(mismatch.is_err(), "a key that does not match its certificate");
    }
}
