//! Logins, as libunftp asks us about them: [`SessionAuth`] is the `Authenticator` and
//! `UserDetailProvider` of one connection (we build one libunftp server per connection, so it
//! knows the client's address and the nonce of its greeting).
//!
//! - The cluster's own servers log in as [`CLUSTER_USER`] with a proof of the cluster secret
//!   over this connection's nonce: nothing on the wire can be replayed, and it works from any
//!   address, open mode or not.
//! - In open mode (no accounts) anyone on this machine logs in; anyone else is refused with a
//!   sentence saying how to add accounts.
//! - Otherwise the accounts decide (an Argon2id verification on the blocking pool, at most
//!   [`MAX_VERIFICATIONS`](crate::access::gate::MAX_VERIFICATIONS) at once, also for unknown
//!   names so that timing does not tell them apart), after the lockout had its say.
//!
//! Attempts on one connection are checked one at a time, and every refusal waits
//! [`FAILURE_DELAY`] before it is answered. Refusals are logged with the client's address and
//! the name tried, never the password.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetailError, UserDetailProvider,
};

use crate::access::gate::Gate;
use crate::access::{is_local, AccessPolicy, FAILURE_DELAY, OPEN_MODE_REFUSAL};
use crate::accounts::User;
use crate::protocol::CLUSTER_USER;
use crate::telemetry::{SessionTag, Telemetry};

/// The logins of one connection.
#[derive(Debug)]
pub struct SessionAuth {
    policy: Arc<AccessPolicy>,
    gate: Arc<Gate>,
    peer: SocketAddr,
    nonce: String,
    /// One attempt at a time: libunftp checks pipelined PASS lines in parallel.
    turn: tokio::sync::Mutex<()>,
    user: Mutex<Option<User>>,
    /// Fired at the first successful login (a oneshot: a watch channel costs ~0.5 KiB per
    /// connection).
    logged_in: Mutex<Option<oneshot::Sender<()>>>,
    telemetry: Arc<Telemetry>,
    tag: SessionTag,
}

impl SessionAuth {
    /// The logins of the connection from `peer` whose greeting carried `nonce`; the receiver
    /// completes at the first successful login (and fails if the session ends without one).
    pub fn new(
        policy: Arc<AccessPolicy>,
        gate: Arc<Gate>,
        peer: SocketAddr,
        nonce: String,
        telemetry: Arc<Telemetry>,
        tag: SessionTag,
    ) -> (Arc<Self>, oneshot::Receiver<()>) {
        let (logged_in, watcher) = oneshot::channel();
        let auth = SessionAuth {
            policy,
            gate,
            peer,
            nonce,
            turn: tokio::sync::Mutex::new(()),
            user: Mutex::default(),
            logged_in: Mutex::new(Some(logged_in)),
            telemetry,
            tag,
        };
        (Arc::new(auth), watcher)
    }

    async fn check(&self, name: &str, password: &str) -> Result<User, Refused> {
        let address = self.peer.ip();
        let rule = self.policy.lockout_rule();
        let lockout = &self.gate.lockout;
        if name == CLUSTER_USER {
            let attempt = lockout.begin(address, name, rule).await.map_err(|_| Refused::LockedOut)?;
            let proven =
                self.policy.cluster_secret.as_ref().is_some_and(|secret| secret.verify_login(&self.nonce, password));
            if !proven {
                return Err(Refused::WrongProof);
            }
            attempt.succeeded();
            return Ok(User::cluster(name));
        }
        if self.policy.accounts.is_open() {
            return if is_local(address) { Ok(User::open(name)) } else { Err(Refused::OpenMode) };
        }
        // A failure unless it succeeds (also when this session ends during the check).
        let attempt = lockout.begin(address, name, rule).await.map_err(|_| Refused::LockedOut)?;
        let user = if self.policy.accounts.needs_verification(name) {
            let _permit = self.gate.verifications.clone().acquire_owned().await.map_err(|_| Refused::Wrong)?;
            let (policy, name, password) = (self.policy.clone(), name.to_string(), password.to_string());
            tokio::task::spawn_blocking(move || policy.accounts.verify(&name, &password)).await.ok().flatten()
        } else {
            self.policy.accounts.verify(name, password)
        };
        let user = user.ok_or(Refused::Wrong)?;
        attempt.succeeded();
        Ok(user)
    }
}

/// Why a login was refused (for the log; the client is told less).
#[derive(Clone, Copy, Debug)]
enum Refused {
    Wrong,
    WrongProof,
    LockedOut,
    OpenMode,
}

#[async_trait]
impl Authenticator for SessionAuth {
    async fn authenticate(&self, username: &str, credentials: &Credentials) -> Result<Principal, AuthenticationError> {
        let _turn = self.turn.lock().await;
        let password = credentials.password.as_deref().unwrap_or_default();
        match self.check(username, password).await {
            Ok(user) => {
                self.tag.logged_in(&user.name);
                self.tag.span.in_scope(|| tracing::info!(kind = ?user.kind, "logged in"));
                self.telemetry.metrics.login(&self.tag.server, true);
                *self.user.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(user);
                if let Some(logged_in) = self.logged_in.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
                    let _ = logged_in.send(());
                }
                Ok(Principal { username: username.to_string() })
            }
            Err(reason) => {
                self.tag.span.in_scope(|| tracing::warn!(tried = username, ?reason, "login refused"));
                self.telemetry.metrics.login(&self.tag.server, false);
                tokio::time::sleep(FAILURE_DELAY).await;
                Err(match reason {
                    Refused::OpenMode => AuthenticationError::new(OPEN_MODE_REFUSAL),
                    Refused::LockedOut => {
                        AuthenticationError::new("too many failed logins from your address; try again later")
                    }
                    Refused::Wrong | Refused::WrongProof => AuthenticationError::BadPassword,
                })
            }
        }
    }

    fn name(&self) -> &str {
        "ftpcalc"
    }
}

#[async_trait]
impl UserDetailProvider for SessionAuth {
    type User = User;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<User, UserDetailError> {
        let user = self.user.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        user.filter(|user| user.name == principal.username)
            .ok_or_else(|| UserDetailError::UserNotFound { username: principal.username.clone() })
    }
}
