//! The worker's side of membership: the only code in a worker that talks to the main server.
//! It registers the worker (challenge, then `REGISTER` with the proof), renews the registration
//! with a heartbeat, and deregisters on a clean shutdown. Each exchange uses a fresh control
//! connection, so a restarted main server is found again without any special case.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::cluster::control::{Control, ControlError, Reply};
use crate::cluster::registry::{Role, ServerEntry};
use crate::cluster::secret::ClusterSecret;
use crate::protocol::{deregister_request, field, register_request, CHALLENGE, INFO};

/// Why talking to the main server failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The main server cannot be reached or the connection broke.
    #[error("cannot reach the main server at {address}: {source}")]
    Connect {
        /// The main server's address.
        address: SocketAddr,
        /// What failed.
        source: ControlError,
    },
    /// The main server refused.
    #[error("the main server at {address} refused: {code} {text}")]
    Refused {
        /// The main server's address.
        address: SocketAddr,
        /// The reply code.
        code: u32,
        /// The reply text.
        text: String,
    },
    /// The main server did not answer in time.
    #[error("the main server at {address} did not answer within {timeout:?}")]
    Timeout {
        /// The main server's address.
        address: SocketAddr,
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// The main server as a worker knows it: unknown until a registration succeeds, and updated
/// at every heartbeat. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct KnownMain(Arc<Mutex<Option<ServerEntry>>>);

impl KnownMain {
    /// The main server's entry, if known.
    pub fn get(&self) -> Option<ServerEntry> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records the main server's entry.
    pub fn set(&self, main: ServerEntry) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(main);
    }
}

/// A worker's membership in a cluster.
#[derive(Clone, Debug)]
pub struct Join {
    /// The main server's address.
    pub main: SocketAddr,
    /// The worker's entry as it registers it (name, reachable address, services).
    pub worker: ServerEntry,
    /// The cluster secret.
    pub secret: ClusterSecret,
    /// Bound on each exchange with the main server.
    pub timeout: Duration,
    /// Where the main server's entry is kept once known.
    pub known: KnownMain,
}

impl Join {
    async fn exchange<T>(&self, work: impl AsyncFnOnce(&mut Control) -> Result<T, JoinError>) -> Result<T, JoinError> {
        let address = self.main;
        let timeout = self.timeout;
        let attempt = async {
            let connect = |source| JoinError::Connect { address, source };
            let control = Control::connect(address).await.map_err(connect)?;
            let (mut control, _) = control.secure_if_offered().await.map_err(connect)?;
            control.login_cluster(&self.secret).await.map_err(|error| match error {
                // The main server answered and said no: the secret is wrong (or this address
                // is locked out); retrying would not help.
                ControlError::Unexpected(reply) => JoinError::Refused {
                    address,
                    code: reply.code,
                    text: format!("{} (the cluster login: is the cluster secret right?)", reply.text()),
                },
                other => connect(other),
            })?;
            let result = work(&mut control).await;
            control.quit().await;
            result
        };
        tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(JoinError::Timeout { address, timeout }))
    }

    async fn site(&self, control: &mut Control, line: &str) -> Result<String, JoinError> {
        let address = self.main;
        let reply: Reply =
            control.command(&format!("SITE {line}")).await.map_err(|source| JoinError::Connect { address, source })?;
        match reply.code {
            200 => Ok(reply.text()),
            code => Err(JoinError::Refused { address, code, text: reply.text() }),
        }
    }

    /// Registers (or renews) the worker; returns the main server's entry, from its `SITE INFO`,
    /// and records it in [`Join::known`].
    pub async fn register(&self) -> Result<ServerEntry, JoinError> {
        let main = self
            .exchange(async |control: &mut Control| {
                let info = self.site(control, INFO).await?;
                let challenge = self.site(control, CHALLENGE).await?;
                let request = register_request(&self.worker.name, self.worker.address, &self.worker.services);
                let proof = self.secret.proof(&challenge, &request);
                self.site(control, &format!("{request} {proof}")).await?;
                let name = field(&info, "name").unwrap_or("main");
                Ok(ServerEntry { name: name.to_string(), address: self.main, role: Role::Main, services: Vec::new() })
            })
            .await?;
        self.known.set(main.clone());
        Ok(main)
    }

    /// Removes the worker from the registry.
    pub async fn deregister(&self) -> Result<(), JoinError> {
        self.exchange(async |control: &mut Control| {
            let challenge = self.site(control, CHALLENGE).await?;
            let request = deregister_request(&self.worker.name);
            let proof = self.secret.proof(&challenge, &request);
            self.site(control, &format!("{request} {proof}")).await.map(|_| ())
        })
        .await
    }

    /// Renews the registration about every `interval` (each beat 10% early or late at random,
    /// so that workers started together do not beat together) until `stop` turns true;
    /// failures are logged and retried at the next beat (so a restarted main server gets the
    /// worker back, and a worker started before its main server joins when it comes up).
    /// `registered` says, all along, whether the last attempt succeeded.
    pub async fn heartbeat(
        &self,
        interval: Duration,
        registered_flag: Arc<AtomicBool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut registered = registered_flag.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => return,
                () = tokio::time::sleep(jittered(interval)) => {}
            }
            match self.register().await {
                Ok(main) if !registered => {
                    tracing::info!(main = %main.name, address = %self.main, "registered with the main server");
                    registered = true;
                }
                Ok(_) => {}
                Err(error) => {
                    if registered {
                        tracing::warn!(%error, "heartbeat failed; retrying every {interval:?}");
                    }
                    registered = false;
                }
            }
            registered_flag.store(registered, Ordering::Relaxed);
        }
    }
}

/// `interval` changed by up to 10% either way, at random.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_vary_within_ten_percent() {
        let interval = Duration::from_secs(3);
        let beats: Vec<Duration> = (0..200).map(|_| jittered(interval)).collect();
        assert!(beats.iter().all(|beat| *beat >= interval.mul_f64(0.9) && *beat <= interval.mul_f64(1.1)));
        assert!(beats.iter().any(|beat| *beat != beats[0]), "not all the same");
    }
}
