//! The one test harness: starts real clusters on ephemeral loopback ports and connects real
//! clients to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ftpcalc::{Cluster, ClusterConfig, RunningCluster};
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::Status;
use tempfile::TempDir;

/// A running cluster with its own temporary FTP folder.
pub struct TestCluster {
    pub cluster: RunningCluster,
    pub root: TempDir,
}

/// A configuration for a cluster on ephemeral ports: the default topology (SV0 main, SV1 ADD,
/// SV2 SUB, SV3 MUL, SV4 INC) unless changed, a short grace period and worker timeout.
pub fn test_config(root: &Path) -> ClusterConfig {
    let mut config = ClusterConfig::new("SV0", root).listen(loopback(0));
    config.grace_period = Duration::from_millis(500);
    config.worker_timeout = Duration::from_secs(2);
    config
}

impl TestCluster {
    /// The default cluster.
    pub async fn start() -> Self {
        Self::start_with(|cluster| cluster).await
    }

    /// A cluster built from the test configuration, changed by `change`.
    pub async fn start_with(change: impl FnOnce(Cluster) -> Cluster) -> Self {
        Self::start_config(|config| config, change).await
    }

    /// A cluster whose configuration and catalogue are changed by the two closures.
    pub async fn start_config(
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
        change: impl FnOnce(Cluster) -> Cluster,
    ) -> Self {
        let root = tempfile::tempdir().expect("temporary folder");
        let config = configure(test_config(root.path()));
        let cluster = change(Cluster::new(config)).start().await.expect("cluster starts");
        TestCluster { cluster, root }
    }

    /// The main server's address.
    pub fn main(&self) -> SocketAddr {
        self.cluster.main_address()
    }

    /// The address of server `name`.
    pub fn address(&self, name: &str) -> SocketAddr {
        self.cluster.address_of(name).unwrap_or_else(|| panic!("no server {name}"))
    }

    /// Writes `contents` to `name` in the FTP folder.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.root.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A logged-in async FTP connection to `address`.
pub async fn connect(address: SocketAddr) -> AsyncFtpStream {
    let mut ftp = AsyncFtpStream::connect(address).await.expect("connect");
    ftp.login("tester", "secret").await.expect("login");
    ftp
}

/// Every reply code a SITE command may get, so that `site` never fails on a refusal.
const ANY_SITE_REPLY: [Status; 9] = [
    Status::CommandOk,
    Status::Help,
    Status::ActionAborted,
    Status::BadCommand,
    Status::BadArguments,
    Status::NotImplemented,
    Status::NotImplementedParameter,
    Status::NotLoggedIn,
    Status::FileUnavailable,
];

/// Sends `SITE <line>` and returns the reply code and its text (without the code).
pub async fn site(ftp: &mut AsyncFtpStream, line: &str) -> (u32, String) {
    let response = ftp
        .custom_command(format!("SITE {line}"), &ANY_SITE_REPLY)
        .await
        .unwrap_or_else(|error| panic!("SITE {line}: {error}"));
    let body = String::from_utf8_lossy(&response.body).trim_end().to_string();
    let text = body.get(4..).unwrap_or_default().to_string();
    (response.status.code(), text)
}

/// Splits `5 (computed by SV1)` into the answer and the server's name.
pub fn answer_and_server(text: &str) -> (&str, &str) {
    let (answer, server) = text.rsplit_once(" (computed by ").unwrap_or_else(|| panic!("no server named in {text:?}"));
    (answer, server.trim_end_matches(')'))
}

/// The path of the stock client `program`, or `None` (with a notice) when it is not installed
/// on a developer's machine. Under `CI=true` a missing client fails the test.
pub fn stock_client(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|folder| folder.join(program))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{program} is required when CI=true (.ci/run installs it)");
        }
        eprintln!("NOTICE: {program} is not installed; skipping this test");
    }
    found
}

/// Runs a stock client with a time limit and returns (success, stdout, stderr).
pub async fn run_stock(program: &Path, args: &[&str]) -> (bool, String, String) {
    let child = tokio::process::Command::new(program).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .unwrap_or_else(|_| panic!("{program:?} {args:?} did not finish within 30 s"))
        .expect("stock client runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
