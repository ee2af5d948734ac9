//! `ftpcalc bench`: a load generator for any FTP server, in the spirit of redis-benchmark.
//! Command round trips over C logged-in connections (ops/s and latency percentiles), and file
//! modes: one big download or upload (MB/s) and many small downloads over one session
//! (files/s). Every loop is bounded in count and in time.
//!
//! It speaks FTP through the cluster's own lean control connection
//! ([`crate::cluster::control`]) so that the client costs as little as possible next to the
//! server being measured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::control::ControlError;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered something the benchmark cannot go on from.
    #[error("unexpected reply to {command}: {reply}")]
    Reply {
        /// The command sent.
        command: String,
        /// The reply received.
        reply: String,
    },
    /// The server did not answer in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server.
    pub address: SocketAddr,
    /// FTP user.
    pub user: String,
    /// FTP password.
    pub password: String,
    /// Bound on every single reply.
    pub timeout: Duration,
}

/// One logged-in control connection (the cluster's own lean client).
pub struct Control {
    control: crate::cluster::control::Control,
    timeout: Duration,
}

impl From<ControlError> for BenchError {
    fn from(error: ControlError) -> Self {
        match error {
            ControlError::Io(error) => BenchError::Io(error),
            ControlError::Unexpected(reply) => {
                BenchError::Reply { command: "(login)".into(), reply: format!("{} {}", reply.code, reply.text()) }
            }
            other => BenchError::Io(std::io::Error::other(other.to_string())),
        }
    }
}

impl Control {
    /// Connects and logs in.
    pub async fn login(target: &Target) -> Result<Control, BenchError> {
        let timeout = target.timeout;
        let login = async {
            let mut control = crate::cluster::control::Control::connect(target.address).await?;
            control.login(&target.user, &target.password).await?;
            control.command("TYPE I").await?;
            Ok::<_, BenchError>(control)
        };
        let control = tokio::time::timeout(timeout, login).await.map_err(|_| BenchError::Timeout(timeout))??;
        Ok(Control { control, timeout })
    }

    /// Sends a command and reads its reply: its code and its text.
    pub async fn command(&mut self, line: &str) -> Result<(u32, String), BenchError> {
        let timeout = self.timeout;
        let reply = tokio::time::timeout(timeout, self.control.command(line))
            .await
            .map_err(|_| BenchError::Timeout(timeout))??;
        Ok((reply.code, reply.text()))
    }

    /// Reads one more reply.
    async fn reply(&mut self) -> Result<(u32, String), BenchError> {
        let timeout = self.timeout;
        let reply =
            tokio::time::timeout(timeout, self.control.reply()).await.map_err(|_| BenchError::Timeout(timeout))??;
        Ok((reply.code, reply.text()))
    }

    /// `EPSV`, then connects the data connection to the control connection's host.
    pub async fn data_connection(&mut self) -> Result<TcpStream, BenchError> {
        let (code, reply) = self.command("EPSV").await?;
        let port =
            reply.rsplit("|||").next().and_then(|rest| rest.split('|').next()).and_then(|port| port.parse().ok());
        match (code, port) {
            (229, Some(port)) => Ok(TcpStream::connect(SocketAddr::new(self.control.peer().ip(), port)).await?),
            _ => Err(BenchError::Reply { command: "EPSV".into(), reply }),
        }
    }

    /// Runs a transfer command over a fresh data connection; `transfer` moves the bytes.
    async fn transfer<T>(
        &mut self,
        line: &str,
        transfer: impl AsyncFnOnce(TcpStream) -> std::io::Result<T>,
    ) -> Result<T, BenchError> {
        let data = self.data_connection().await?;
        let (code, reply) = self.command(line).await?;
        if code != 150 && code != 125 {
            return Err(BenchError::Reply { command: line.into(), reply });
        }
        let moved = transfer(data).await?;
        let (code, reply) = self.reply().await?;
        if code != 226 && code != 250 {
            return Err(BenchError::Reply { command: line.into(), reply });
        }
        Ok(moved)
    }

    /// Downloads `path`, discarding the bytes; returns how many arrived.
    pub async fn retr(&mut self, path: &str) -> Result<u64, BenchError> {
        self.transfer(&format!("RETR {path}"), async |mut data: TcpStream| {
            let mut buffer = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                match data.read(&mut buffer).await? {
                    0 => return Ok(total),
                    read => total += read as u64,
                }
            }
        })
        .await
    }

    /// Uploads `bytes` generated bytes to `path`.
    pub async fn stor(&mut self, path: &str, bytes: u64) -> Result<u64, BenchError> {
        self.transfer(&format!("STOR {path}"), async |mut data: TcpStream| {
            let chunk: Vec<u8> = (0..1usize << 20).map(|index| (index % 251) as u8).collect();
            let mut left = bytes;
            while left > 0 {
                let now = left.min(chunk.len() as u64) as usize;
                data.write_all(&chunk[..now]).await?;
                left -= now as u64;
            }
            data.shutdown().await?;
            Ok(bytes)
        })
        .await
    }

    /// The names in `path` (NLST).
    pub async fn names(&mut self, path: &str) -> Result<Vec<String>, BenchError> {
        let line = if path.is_empty() { "NLST".to_string() } else { format!("NLST {path}") };
        let listing = self
            .transfer(&line, async |mut data: TcpStream| {
                let mut text = String::new();
                data.read_to_string(&mut text).await?;
                Ok(text)
            })
            .await?;
        Ok(listing.lines().map(str::to_string).filter(|name| !name.is_empty()).collect())
    }
}

/// The outcome of a command benchmark.
#[derive(Clone, Debug)]
pub struct CommandReport {
    /// Requests answered (positive or not).
    pub requests: u64,
    /// Requests whose reply was not 2xx, plus connections that failed.
    pub errors: u64,
    /// Wall time of the measurement.
    pub elapsed: Duration,
    /// Latency percentiles 50, 99 and the maximum.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
}

impl CommandReport {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `command` in a request/response loop on `connections` connections until `duration`
/// passed or `max_requests` were sent.
pub async fn commands(
    target: &Target,
    command: &str,
    connections: usize,
    duration: Duration,
    max_requests: u64,
) -> Result<CommandReport, BenchError> {
    let mut controls = Vec::new();
    for _ in 0..connections.max(1) {
        controls.push(Control::login(target).await?);
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut control in controls {
        let (issued, command) = (issued.clone(), command.to_string());
        tasks.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while start.elapsed() < duration && issued.fetch_add(1, Ordering::Relaxed) < max_requests {
                let sent = Instant::now();
                match control.command(&command).await {
                    Ok((code, _)) => {
                        latencies.push(sent.elapsed());
                        errors += u64::from(!(200..300).contains(&code));
                    }
                    Err(_) => return (latencies, errors + 1),
                }
            }
            let _ = control.command("QUIT").await;
            (latencies, errors)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(result) = tasks.join_next().await {
        let (some, failed) = result.map_err(|error| BenchError::Io(std::io::Error::other(error)))?;
        latencies.extend(some);
        errors += failed;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |fraction: f64| {
        latencies
            .get(((latencies.len() as f64 * fraction) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(CommandReport {
        requests: latencies.len() as u64,
        errors,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

/// The outcome of a transfer benchmark.
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// Files moved.
    pub files: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time of the transfers (login and listing excluded).
    pub elapsed: Duration,
}

impl TransferReport {
    /// Megabytes (10^6 bytes) per second.
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Files per second.
    pub fn files_per_second(&self) -> f64 {
        self.files as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Downloads `path` once.
pub async fn download(target: &Target, path: &str) -> Result<TransferReport, BenchError> {
    let mut control = Control::login(target).await?;
    let start = Instant::now();
    let bytes = control.retr(path).await?;
    Ok(TransferReport { files: 1, bytes, elapsed: start.elapsed() })
}

/// Uploads `bytes` generated bytes to `path`, then deletes it (unless `keep`).
pub async fn upload(target: &Target, path: &str, bytes: u64, keep: bool) -> Result<TransferReport, BenchError> {
    let mut control = Control::login(target).await?;
    let start = Instant::now();
    let bytes = control.stor(path, bytes).await?;
    let elapsed = start.elapsed();
    if !keep {
        control.command(&format!("DELE {path}")).await?;
    }
    Ok(TransferReport { files: 1, bytes, elapsed })
}

/// Downloads every file of folder `path` (at most `max_files`, stopping after `duration`) over
/// one session.
pub async fn small_files(
    target: &Target,
    path: &str,
    max_files: usize,
    duration: Duration,
) -> Result<TransferReport, BenchError> {
    let mut control = Control::login(target).await?;
    let names = control.names(path).await?;
    let start = Instant::now();
    let (mut files, mut bytes) = (0, 0);
    for name in names.iter().take(max_files) {
        if start.elapsed() >= duration {
            break;
        }
        let full = if path.is_empty() || name.contains('/') {
            name.clone()
        } else {
            format!("{}/{name}", path.trim_end_matches('/'))
        };
        bytes += control.retr(&full).await?;
        files += 1;
    }
    Ok(TransferReport { files, bytes, elapsed: start.elapsed() })
}

/// The outcome of an idle-sessions benchmark.
#[derive(Clone, Debug)]
pub struct IdleReport {
    /// Sessions that logged in.
    pub logged_in: usize,
    /// Sessions that failed to connect or log in.
    pub failed: usize,
    /// Time to open all of them.
    pub elapsed: Duration,
    /// The server's resident memory (KiB) before and while holding them, when its pid was given.
    pub rss_kib: Option<(u64, u64)>,
}

impl IdleReport {
    /// Resident memory the server added per logged-in session, in KiB.
    pub fn kib_per_session(&self) -> Option<f64> {
        let (before, holding) = self.rss_kib?;
        Some(holding.saturating_sub(before) as f64 / self.logged_in.max(1) as f64)
    }
}

/// Resident memory of process `pid` in KiB (Linux `/proc`).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Opens `count` logged-in sessions (`concurrency` logins at a time, each bounded by the
/// target's timeout), holds them for `hold`, measures the server's memory if `pid` is given,
/// and closes them.
pub async fn idle_sessions(
    target: &Target,
    count: usize,
    concurrency: usize,
    hold: Duration,
    pid: Option<u32>,
) -> IdleReport {
    let before = pid.and_then(resident_kib);
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (gate, target) = (gate.clone(), target.clone());
        logins.spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            Control::login(&target).await.ok()
        });
    }
    let mut sessions = Vec::with_capacity(count);
    let mut failed = 0;
    while let Some(result) = logins.join_next().await {
        match result {
            Ok(Some(control)) => sessions.push(control),
            _ => failed += 1,
        }
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(hold).await;
    let holding = pid.and_then(resident_kib);
    let logged_in = sessions.len();
    drop(sessions);
    IdleReport { logged_in, failed, elapsed, rss_kib: before.zip(holding) }
}
