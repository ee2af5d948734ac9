//! Who may log in and how, as configured: [`AccessConfig`] (accounts, anonymous access, TLS,
//! [`Limits`]). Plain data; [`crate::access::AccessPolicy::build`] turns it into what the servers
//! enforce.

use std::path::PathBuf;
use std::time::Duration;

use crate::accounts::{Account, AnonymousPolicy};
use crate::config::DEFAULT_IDLE_TIMEOUT_SECS;

/// Limits on what clients can make a server hold, and the failed-login lockout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most control connections at once, for all servers of the process together (kept within
    /// what the descriptor limit allows).
    pub max_connections: usize,
    /// Most control connections at once from one client address.
    pub max_connections_per_ip: usize,
    /// Most data connections at once (passive listeners waiting for their client, and
    /// transfers), for all servers of the process together; one more gets `425`. With
    /// `max_connections`, kept within what the descriptor limit allows. Read at start.
    pub max_transfers: usize,
    /// Failed logins from one address within `lockout` after which that address is refused
    /// for `lockout` (and ten times as many for one user name, from any address).
    pub failed_logins: u32,
    /// How long failures are remembered, and how long a locked-out address stays locked.
    pub lockout: Duration,
    /// A connection that has not logged in after this long is closed.
    pub login_timeout: Duration,
    /// A logged-in session idle for this long is closed.
    pub idle_timeout: Duration,
    /// A data connection that has not arrived after this long fails its transfer with `425`.
    pub data_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 50,
            max_transfers: 1_000,
            failed_logins: 5,
            lockout: Duration::from_secs(300),
            login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            data_timeout: Duration::from_secs(30),
        }
    }
}

/// Where a server's TLS certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// A PEM certificate chain and its private key.
    Files {
        /// The certificate chain (leaf first).
        certificates: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A self-signed certificate made in memory at start-up (for trying FTPS out).
    SelfSigned,
}

/// FTPS as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate.
    pub source: TlsSource,
    /// Refuse plain-text logins from clients that are not on this machine.
    pub required: bool,
}

/// Who may log in and how, as configured: accounts, anonymous access, TLS, limits. With no
/// users and no anonymous access the server is in open mode (loopback clients only).
#[derive(Clone, Debug, Default)]
pub struct AccessConfig {
    /// The accounts.
    pub users: Vec<Account>,
    /// Anonymous access, if allowed.
    pub anonymous: Option<AnonymousPolicy>,
    /// FTPS, if configured.
    pub tls: Option<TlsConfig>,
    /// Connection limits, lockout, timeouts.
    pub limits: Limits,
}
