//! Real etcd clusters (Debian's etcd-server) and HAProxy for the tests of several main servers:
//! members on loopback ports, killed and restarted at will, and a proxy in front of main servers.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::{eventually, stock_client};

/// A free loopback port (bound then released: a small race other tests could lose, never a
/// wrong result).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

/// One etcd member.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A cluster of etcd members on loopback, with short election timeouts so that losing a member
/// costs well under a second.
pub struct EtcdCluster {
    program: PathBuf,
    folder: TempDir,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `size` members and waits (at most 20 s) until the cluster answers; `None` (with a
    /// notice) when etcd is not installed on a developer's machine.
    pub async fn start(size: usize) -> Option<EtcdCluster> {
        let program = stock_client("etcd")?;
        let members = (0..size)
            .map(|index| Member { name: format!("m{index}"), client: free_port(), peer: free_port(), child: None })
            .collect();
        let mut cluster = EtcdCluster { program, folder: tempfile::tempdir().expect("temporary folder"), members };
        for index in 0..size {
            cluster.start_member(index);
        }
        assert!(cluster.answers().await, "etcd did not come up within 20 s");
        Some(cluster)
    }

    fn start_member(&mut self, index: usize) {
        let initial: Vec<String> =
            self.members.iter().map(|member| format!("{}=http://127.0.0.1:{}", member.name, member.peer)).collect();
        let member = &self.members[index];
        let client = format!("http://127.0.0.1:{}", member.client);
        let peer = format!("http://127.0.0.1:{}", member.peer);
        let data = self.folder.path().join(&member.name);
        let child = Command::new(&self.program)
            .args(["--name", &member.name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                "ftpcalc-test",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .args(["--log-level", "error", "--logger", "zap"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.members[index].child = Some(child);
    }

    /// The client endpoints, `127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|member| format!("127.0.0.1:{}", member.client)).collect()
    }

    /// `etcd://…` for `--registry`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// True once a write and a linearizable read succeed (within 20 s).
    pub async fn answers(&self) -> bool {
        let endpoints: Vec<String> = self.endpoints().iter().map(|endpoint| format!("http://{endpoint}")).collect();
        eventually(Duration::from_secs(20), async || {
            let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(1));
            let Ok(Ok(mut client)) =
                tokio::time::timeout(Duration::from_secs(2), etcd_client::Client::connect(&endpoints, Some(options)))
                    .await
            else {
                return false;
            };
            let write = tokio::time::timeout(Duration::from_secs(2), client.put("/test/alive", "yes", None)).await;
            matches!(write, Ok(Ok(_)))
        })
        .await
    }

    /// `kill -9` of member `index`.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9` of every member.
    pub fn kill_all(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }

    /// Starts every stopped member again on its data, and waits until the cluster answers.
    pub async fn restart_stopped(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                self.start_member(index);
            }
        }
        assert!(self.answers().await, "etcd did not come back within 20 s");
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// HAProxy in TCP mode in front of main servers, sending the PROXY protocol v2 header.
pub struct Haproxy {
    child: Child,
    _folder: TempDir,
    /// Where clients connect.
    pub address: SocketAddr,
}

impl Haproxy {
    /// Listens on `front` (`127.0.0.2:PORT`) and spreads connections over `backends` (control
    /// ports, with `send-proxy-v2`, a health check every 200 ms and failed connections retried
    /// on another backend); each `(range, backend)` of `passive` forwards a passive port range
    /// on the front address to that backend's same port. `None` (with a notice) when HAProxy is
    /// not installed on a developer's machine.
    pub async fn start(
        front: SocketAddr,
        backends: &[SocketAddr],
        passive: &[(String, SocketAddr)],
    ) -> Option<Haproxy> {
        let program = stock_client("haproxy")?;
        let folder = tempfile::tempdir().expect("temporary folder");
        let mut config = String::from(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n",
        );
        config.push_str(&format!("frontend ftp\n  bind {front}\n  default_backend mains\n"));
        // A connection to a main server that just died is retried on another one (every retry
        // redispatched), not three times on the dead one a second apart: a worker's heartbeat
        // stuck that long outlived the tests' 3 s registration (the registration lapsed).
        config.push_str("backend mains\n  balance roundrobin\n  option redispatch 1\n  retries 3\n");
        for (index, backend) in backends.iter().enumerate() {
            config.push_str(&format!("  server main{index} {backend} send-proxy-v2 check inter 200 fall 1 rise 1\n"));
        }
        for (index, (range, backend)) in passive.iter().enumerate() {
            config.push_str(&format!(
                "frontend passive{index}\n  bind {}:{range}\n  default_backend passive{index}\nbackend passive{index}\n  server main{index} {}\n",
                front.ip(),
                backend.ip()
            ));
        }
        let path = folder.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let check = Command::new(&program).arg("-c").arg("-f").arg(&path).output().expect("haproxy -c");
        assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new(&program)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let proxy = Haproxy { child, _folder: folder, address: front };
        let up =
            eventually(Duration::from_secs(10), async || tokio::net::TcpStream::connect(front).await.is_ok()).await;
        assert!(up, "haproxy did not listen on {front} within 10 s");
        Some(proxy)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder of a temporary directory as a `&str` argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
