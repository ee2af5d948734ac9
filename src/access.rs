//! Access: who may connect and log in, what they may do, and over what. [`AccessPolicy`] holds
//! the accounts, the folders they are rooted at, TLS ([`tls`]), the limits; it is built once
//! from the configuration and swapped whole when the configuration is reloaded, and every new
//! connection takes the policy in force when it arrives (sessions already open keep theirs).
//! [`gate::Gate`] is the state every server of a process shares to enforce it: connection
//! counts and the failed-login [`lockout`].

pub mod gate;
pub mod lockout;
pub mod tls;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::accounts::{Accounts, AccountsError};
use crate::cluster::secret::ClusterSecret;
use crate::config::{AccessConfig, Limits, TlsSource};
use crate::ftp_backend::downloads::Downloads;
use crate::ftp_backend::{FolderError, Folders};
use lockout::LockoutRule;
use tls::{TlsError, TlsIdentity};

/// Why an access policy cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The accounts are not acceptable.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The FTP folder or a home cannot be used.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The TLS certificate cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Where the folders live and how uploads behave, for [`AccessPolicy::build`].
#[derive(Clone, Debug)]
pub struct FolderSettings {
    /// The FTP folder (created if missing).
    pub root: PathBuf,
    /// The download counters every folder shares.
    pub downloads: Arc<Downloads>,
    /// Every upload no-clobber.
    pub no_clobber: bool,
}

/// FTPS as a server offers it.
#[derive(Clone, Debug)]
pub struct TlsPolicy {
    /// The certificate and configuration.
    pub identity: TlsIdentity,
    /// Refuse logins without TLS from clients that are not on this machine.
    pub required: bool,
}

/// Everything a server checks about a client.
#[derive(Debug)]
pub struct AccessPolicy {
    /// Who may log in.
    pub accounts: Accounts,
    /// The FTP folder and the homes in it.
    pub folders: Arc<Folders>,
    /// FTPS, when configured.
    pub tls: Option<TlsPolicy>,
    /// Connection limits, lockout, timeouts.
    pub limits: Limits,
    /// What the cluster's own servers prove to log in to each other (`None`: no such logins).
    pub cluster_secret: Option<ClusterSecret>,
}

impl AccessPolicy {
    /// Builds the policy from its configuration: checks the accounts, opens the FTP folder
    /// and every home (creating them, on the blocking pool), loads or makes the TLS
    /// certificate, and keeps `max_connections` within what `descriptors` allow.
    pub async fn build(
        config: &AccessConfig,
        folders: &FolderSettings,
        cluster_secret: Option<ClusterSecret>,
        descriptors: Option<u64>,
    ) -> Result<Self, AccessError> {
        let accounts = Accounts::new(config.users.clone(), config.anonymous.clone())?;
        let (root, homes, downloads, no_clobber) =
            (folders.root.clone(), accounts.homes(), folders.downloads.clone(), folders.no_clobber);
        let opened =
            tokio::task::spawn_blocking(move || Folders::open(&root, &homes, downloads, no_clobber)).await.map_err(
                |error| FolderError::Io { path: folders.root.clone(), source: std::io::Error::other(error) },
            )??;
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                let identity = match &tls.source {
                    TlsSource::Files { certificates, key } => load_tls(certificates, key).await?,
                    TlsSource::SelfSigned => TlsIdentity::self_signed(&[
                        "localhost".to_string(),
                        "127.0.0.1".to_string(),
                        "::1".to_string(),
                    ])?,
                };
                Some(TlsPolicy { identity, required: tls.required })
            }
        };
        let mut limits = config.limits.clone();
        if let Some(descriptors) = descriptors {
            let wanted = gate::Wanted { connections: limits.max_connections, transfers: limits.max_transfers };
            let fitting = gate::connections_within(descriptors, wanted);
            if fitting != wanted {
                tracing::warn!(
                    wanted = limits.max_connections,
                    fitting = fitting.connections,
                    wanted_transfers = limits.max_transfers,
                    fitting_transfers = fitting.transfers,
                    descriptors,
                    "max_connections or max_transfers lowered to fit the descriptor limit"
                );
                limits.max_connections = fitting.connections;
                limits.max_transfers = fitting.transfers;
            }
        }
        Ok(AccessPolicy { accounts, folders: Arc::new(opened), tls, limits, cluster_secret })
    }

    /// The lockout's rule from the limits.
    pub fn lockout_rule(&self) -> LockoutRule {
        LockoutRule { failed_logins: self.limits.failed_logins, period: self.limits.lockout }
    }

    /// True when a client at `address` may use open mode (no accounts configured): only
    /// clients on this machine may.
    pub fn open_to(&self, address: IpAddr) -> bool {
        self.accounts.is_open() && is_local(address)
    }

    /// True when plain-text logins from `address` are refused.
    pub fn tls_required_for(&self, address: IpAddr) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.required) && !is_local(address)
    }
}

async fn load_tls(certificates: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
    let (certificates, key) = (certificates.to_path_buf(), key.to_path_buf());
    tokio::task::spawn_blocking(move || TlsIdentity::load(&certificates, &key))
        .await
        .map_err(|error| TlsError::Generate(error.to_string()))?
}

/// A policy shared by all servers of a process and replaced whole on reload.
pub type SharedPolicy = Arc<ArcSwap<AccessPolicy>>;

/// True for loopback addresses (IPv4 `127.0.0.0/8`, IPv6 `::1`, and `::ffff:127.x.y.z`).
pub fn is_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// How long every refused login (and every wrong proof of the cluster secret) waits before it
/// is answered.
pub const FAILURE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a client outside this machine is told in open mode.
pub const OPEN_MODE_REFUSAL: &str = "this server runs in open mode (no accounts configured) and serves only clients on its own machine; to serve others, add [[users]] or [anonymous] to a configuration file and start it with --config FILE (see the README)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_in_every_form() {
        for local in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            assert!(is_local(local.parse().expect("address")), "{local}");
        }
        for remote in ["10.0.0.1", "192.168.1.1", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(!is_local(remote.parse().expect("address")), "{remote}");
        }
    }
}
