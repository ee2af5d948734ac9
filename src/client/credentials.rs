//! Where the client's password and trust come from: `--password` or `$FTPCALC_PASSWORD` (given
//! in [`crate::client::ClientConfig`]), then `~/.netrc`, then a prompt without echo when the
//! server asks for a password and the client runs on a terminal; and the rustls client
//! configuration for `--tls` (the system's authorities, or `--tls-ca FILE`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::client::error::ClientError;

/// The password for `user` on `host` in the netrc text (`machine HOST login USER password
/// PASS`, or a `default` entry), if any.
pub fn netrc_password(netrc: &str, host: &str, user: &str) -> Option<String> {
    /// One `machine` (or `default`, as `None`) entry.
    #[derive(Default)]
    struct Entry<'a> {
        machine: Option<&'a str>,
        login: Option<&'a str>,
        password: Option<&'a str>,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut words = netrc.split_whitespace();
    while let Some(word) = words.next() {
        match (word, entries.last_mut()) {
            ("machine", _) => {
                entries.push(Entry { machine: Some(words.next().unwrap_or_default()), ..Entry::default() })
            }
            ("default", _) => entries.push(Entry::default()),
            ("login", Some(entry)) => entry.login = words.next(),
            ("password", Some(entry)) => entry.password = words.next(),
            _ => {}
        }
    }
    let fits = |entry: &&Entry<'_>| entry.login.is_none_or(|login| login == user);
    let named = entries.iter().filter(|entry| entry.machine == Some(host)).find(fits);
    named.or_else(|| entries.iter().filter(|entry| entry.machine.is_none()).find(fits))?.password.map(str::to_string)
}

/// The password from `~/.netrc` for `user` on `host`, if the file has one.
pub fn from_netrc(host: &str, user: &str) -> Option<String> {
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read_to_string(Path::new(&home).join(".netrc")).ok()?;
    netrc_password(&text, host, user)
}

/// Asks for the password on the terminal (no echo), if there is one.
pub fn prompt(user: &str, server: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    rpassword::prompt_password(format!("Password for {user} at {server}: ")).ok()
}

/// The rustls configuration for `--tls`: trust `ca` (a PEM file with one or more
/// certificates) or, without it, the system's certificate authorities.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let local = |source| ClientError::Local { path: path.to_path_buf(), source };
            let pem = std::fs::read(path).map_err(local)?;
            for certificate in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(ClientError::Usage(format!("{} holds no PEM certificate", path.display())));
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Usage(format!("TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::netrc_password;

    #[test]
    fn netrc_entries_match_host_and_user() {
        let netrc = "machine ftp.example.org login alice password wonderland\n\
                     machine 127.0.0.1\n  login bob\n  password builder\n\
                     default login anonymous password me@example.org";
        assert_eq!(netrc_password(netrc, "ftp.example.org", "alice").as_deref(), Some("wonderland"));
        assert_eq!(netrc_password(netrc, "127.0.0.1", "bob").as_deref(), Some("builder"));
        assert_eq!(netrc_password(netrc, "127.0.0.1", "carol"), None, "another user on that machine");
        assert_eq!(netrc_password(netrc, "elsewhere", "anonymous").as_deref(), Some("me@example.org"));
        assert_eq!(netrc_password("", "a", "b"), None);
        assert_eq!(netrc_password("machine", "a", "b"), None);
    }
}
