//! [`Reloader`]: replaces the access policy of running servers (users, permissions, anonymous
//! access, TLS certificates, limits) for new sessions, leaving open ones as they are. The
//! `ftpcalc` binary calls it on `SIGHUP` with the configuration file read again; a file that
//! fails to parse or check never gets here, and a policy that fails to build (a certificate
//! that cannot be read, a home outside the folder) leaves the old one in force.

use std::sync::Arc;

use crate::access::{AccessError, AccessPolicy, FolderSettings, SharedPolicy};
use crate::cluster::secret::ClusterSecret;
use crate::config::AccessConfig;
use crate::telemetry::Telemetry;

/// What a reload needs besides the new configuration.
#[derive(Clone, Debug)]
pub struct Reloader {
    pub(crate) policy: SharedPolicy,
    pub(crate) folders: FolderSettings,
    pub(crate) secret: Option<ClusterSecret>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// `max_transfers` as configured at start (before fitting the descriptor limit): the places
    /// for data connections are made once.
    pub(crate) max_transfers: usize,
}

impl Reloader {
    /// Builds the policy of `access` and puts it in force for new sessions; reopens the
    /// transfer log (after logrotate). On error the old policy stays.
    pub async fn reload(&self, access: &AccessConfig) -> Result<(), AccessError> {
        let descriptors = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
        let mut access = access.clone();
        if access.limits.max_transfers != self.max_transfers {
            tracing::warn!(
                configured = access.limits.max_transfers,
                kept = self.max_transfers,
                "max_transfers is read at start: the running value is kept until a restart"
            );
            access.limits.max_transfers = self.max_transfers;
        }
        let policy = AccessPolicy::build(&access, &self.folders, self.secret.clone(), descriptors).await?;
        self.policy.store(Arc::new(policy));
        if let Some(log) = &self.telemetry.transfer_log {
            log.reopen();
        }
        Ok(())
    }
}
