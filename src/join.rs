//! The worker's side of membership: the only code in a worker that talks to the main server.
//! It registers the worker (challenge, then `REGISTER` with the proof), renews the registration
//! with a heartbeat, and deregisters on a clean shutdown. Each exchange uses a fresh control
//! connection, so a restarted main server is found again without any special case.

use std::net::SocketAddr;
use std::time::Duration;

use suppaftp::tokio::AsyncFtpStream;
use suppaftp::FtpError;
use tokio::sync::watch;

use crate::registry::{Role, ServerEntry};
use crate::secret::ClusterSecret;
use crate::site_cluster::{deregister_request, register_request, CHALLENGE};
use crate::site_cmds::INFO;
use crate::worker_client::SITE_REPLY_CODES;

/// Why talking to the main server failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The main server cannot be reached or the connection broke.
    #[error("cannot reach the main server at {address}: {source}")]
    Connect {
        /// The main server's address.
        address: SocketAddr,
        /// What failed.
        source: FtpError,
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
}

impl Join {
    async fn exchange<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncFtpStream) -> Result<T, JoinError>,
    ) -> Result<T, JoinError> {
        let address = self.main;
        let timeout = self.timeout;
        let attempt = async {
            let connect = |source| JoinError::Connect { address, source };
            let mut ftp = AsyncFtpStream::connect(address).await.map_err(connect)?;
            ftp.login(self.worker.name.as_str(), "ftpcalc").await.map_err(connect)?;
            let result = work(&mut ftp).await;
            let _ = ftp.quit().await;
            result
        };
        tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(JoinError::Timeout { address, timeout }))
    }

    async fn site(&self, ftp: &mut AsyncFtpStream, line: &str) -> Result<String, JoinError> {
        let address = self.main;
        let response = ftp
            .custom_command(format!("SITE {line}"), &SITE_REPLY_CODES)
            .await
            .map_err(|source| JoinError::Connect { address, source })?;
        let body = String::from_utf8_lossy(&response.body);
        let text = body.lines().last().unwrap_or_default().get(4..).unwrap_or_default().trim_end().to_string();
        match response.status.code() {
            200 => Ok(text),
            code => Err(JoinError::Refused { address, code, text }),
        }
    }

    /// Registers (or renews) the worker; returns the main server's entry, from its `SITE INFO`.
    pub async fn register(&self) -> Result<ServerEntry, JoinError> {
        self.exchange(async |ftp: &mut AsyncFtpStream| {
            let info = self.site(ftp, INFO).await?;
            let challenge = self.site(ftp, CHALLENGE).await?;
            let request = register_request(&self.worker.name, self.worker.address, &self.worker.services);
            let proof = self.secret.proof(&challenge, &request);
            self.site(ftp, &format!("{request} {proof}")).await?;
            let name = info.split_whitespace().find_map(|pair| pair.strip_prefix("name=")).unwrap_or("main");
            Ok(ServerEntry { name: name.to_string(), address: self.main, role: Role::Main, services: Vec::new() })
        })
        .await
    }

    /// Removes the worker from the registry.
    pub async fn deregister(&self) -> Result<(), JoinError> {
        self.exchange(async |ftp: &mut AsyncFtpStream| {
            let challenge = self.site(ftp, CHALLENGE).await?;
            let request = deregister_request(&self.worker.name);
            let proof = self.secret.proof(&challenge, &request);
            self.site(ftp, &format!("{request} {proof}")).await.map(|_| ())
        })
        .await
    }

    /// Renews the registration every `interval` until `stop` turns true; failures are logged
    /// and retried at the next beat (so a restarted main server gets the worker back).
    pub async fn heartbeat(&self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut registered = true;
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.register().await {
                Ok(_) if !registered => {
                    tracing::info!(main = %self.main, "registered again with the main server");
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
        }
    }
}
