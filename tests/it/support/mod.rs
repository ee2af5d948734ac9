//! The one test harness: starts real clusters on ephemeral loopback ports and connects real
//! clients to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod netns;

use ftpcalc::{Cluster, ClusterConfig, Downloads, RunningCluster};
use suppaftp::tokio::AsyncFtpStream;
use tempfile::TempDir;

/// A running cluster with its own temporary FTP folder.
pub struct TestCluster {
    pub cluster: RunningCluster,
    pub root: TempDir,
    /// The download log lines the cluster wrote (instead of printing them).
    pub download_log: Arc<Mutex<Vec<String>>>,
}

/// A configuration for a cluster on ephemeral ports: the default topology (SV0 main, SV1 ADD,
/// SV2 SUB, SV3 MUL, SV4 INC) unless changed, a short grace period and worker timeout.
pub fn test_config(root: &Path) -> ClusterConfig {
    let mut config = ClusterConfig::new("SV0", root).listen(loopback(0));
    config.options.grace_period = Duration::from_millis(500);
    // The concurrency tests open more connections from 127.0.0.1 than the default allows.
    config.options.access.limits.max_connections_per_ip = 10_000;
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
        let download_log = Arc::new(Mutex::new(Vec::new()));
        let sink = download_log.clone();
        let downloads = Downloads::new(move |line| sink.lock().expect("log lock").push(line.to_string()));
        let cluster =
            change(Cluster::new(config).downloads(Arc::new(downloads))).start().await.expect("cluster starts");
        TestCluster { cluster, root, download_log }
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

/// A folder for the state of the `ftpcalc` processes the tests start (`XDG_STATE_HOME`: the
/// default cluster secret file), so that tests never write to the home folder.
pub fn state_folder() -> PathBuf {
    std::env::temp_dir().join(format!("ftpcalc-it-state-{}", std::process::id()))
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A logged-in async FTP connection to `address` (open mode: any name and password).
pub async fn connect(address: SocketAddr) -> AsyncFtpStream {
    connect_as(address, "tester", "secret").await
}

/// Waits (at most `within`, else the test fails) for every task of `tasks` and adds up what they
/// return; a task that panicked fails the test.
pub async fn sum_of(mut tasks: tokio::task::JoinSet<usize>, within: Duration) -> usize {
    let all = async {
        let mut sum = 0;
        while let Some(outcome) = tasks.join_next().await {
            sum += outcome.expect("task");
        }
        sum
    };
    tokio::time::timeout(within, all).await.expect("every task ends in time")
}

/// An async FTP connection to `address`, logged in as `user` with `password`.
pub async fn connect_as(address: SocketAddr, user: &str, password: &str) -> AsyncFtpStream {
    let mut ftp = AsyncFtpStream::connect(address).await.expect("connect");
    ftp.login(user, password).await.expect("login");
    // suppaftp starts in ASCII mode, which would rewrite line ends in test data.
    ftp.transfer_type(suppaftp::types::FileType::Binary).await.expect("TYPE I");
    ftp
}

/// Runs the binary with `args` and `stdin`; returns (exit code, stdout, stderr).
pub fn run_ftpcalc<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    stdin: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ftpcalc"))
        .args(args)
        .envs(env.iter().copied())
        .env("XDG_STATE_HOME", crate::support::state_folder())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What one run of the client printed and how it ended.
pub struct ClientRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ftpcalc client CL1 FOLDER --server ADDRESS ARGS...` with `input` on stdin.
pub async fn run_client(server: SocketAddr, folder: &Path, args: &[&str], input: &str) -> ClientRun {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ftpcalc"))
        .args(["client", "CL1"])
        .arg(folder)
        .args(["--server", &server.to_string(), "--timeout", "10"])
        .env("XDG_CACHE_HOME", state_folder().join("cache"))
        .env("XDG_STATE_HOME", state_folder())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the client");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes()).await.expect("write stdin");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the client ends within 60 s")
        .expect("client output");
    ClientRun {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Downloads `name` whole (RETR, then the 226).
pub async fn download(ftp: &mut AsyncFtpStream, name: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut stream = ftp.retr_as_stream(name).await.unwrap_or_else(|error| panic!("RETR {name}: {error}"));
    let mut data = Vec::new();
    stream.read_to_end(&mut data).await.expect("read data");
    stream.finish().await.expect("226 after RETR");
    data
}

/// Sends `SITE <line>` and returns the reply code and its text (without the code).
pub async fn site(ftp: &mut AsyncFtpStream, line: &str) -> (u32, String) {
    let response = ftp
        .custom_command(format!("SITE {line}"), &ftpcalc::protocol::SITE_REPLY_CODES)
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
    run_stock_with_input(program, args, "").await
}

/// Runs a stock client that reads its commands from stdin (`input`), with a time limit.
pub async fn run_stock_with_input(program: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let run = async {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A client that exits early closes its stdin; what it printed tells why.
        let _ = stdin.write_all(input.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("{program:?} {args:?} did not finish within 30 s"))
        .expect("stock client runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A bare FTP control connection over a raw socket, for tests that must misbehave (cut a
/// transfer off half-way) in ways a client library will not.
pub struct RawFtp {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawFtp {
    /// Connects and logs in (open mode: any name and password).
    pub async fn login(address: SocketAddr) -> RawFtp {
        let (mut ftp, greeting) = RawFtp::connect(address).await;
        assert_eq!(greeting.0, 220, "{}", greeting.1);
        assert_eq!(ftp.command("USER raw").await.0, 331);
        assert_eq!(ftp.command("PASS raw").await.0, 230);
        ftp
    }

    /// [`RawFtp::login`], then `TYPE I` (binary transfers).
    pub async fn login_binary(address: SocketAddr) -> RawFtp {
        let mut ftp = RawFtp::login(address).await;
        assert_eq!(ftp.command("TYPE I").await.0, 200);
        ftp
    }

    /// Connects from 127.0.0.1 and reads the greeting (or the refusal).
    pub async fn connect(address: SocketAddr) -> (RawFtp, (u32, String)) {
        RawFtp::connect_from(std::net::IpAddr::from([127, 0, 0, 1]), address).await
    }

    /// Connects from `source` (another loopback address, say) and reads the greeting.
    pub async fn connect_from(source: std::net::IpAddr, address: SocketAddr) -> (RawFtp, (u32, String)) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(source, 0)).expect("bind the source address");
        let stream = socket.connect(address).await.expect("connect");
        let (read, writer) = stream.into_split();
        let mut ftp = RawFtp { reader: tokio::io::BufReader::new(read), writer };
        let greeting = ftp.reply().await;
        (ftp, greeting)
    }

    /// Connects from 127.0.0.1, sends `first` at once (a PROXY protocol header, or not one),
    /// and reads the first reply.
    pub async fn connect_from_sending(address: SocketAddr, first: &[u8]) -> (RawFtp, (u32, String)) {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        stream.write_all(first).await.expect("send the first bytes");
        let (read, writer) = stream.into_split();
        let mut ftp = RawFtp { reader: tokio::io::BufReader::new(read), writer };
        let reply = ftp.reply().await;
        (ftp, reply)
    }

    /// Reads the greeting on an already connected socket (any address family).
    pub async fn over(stream: tokio::net::TcpStream) -> RawFtp {
        let (read, writer) = stream.into_split();
        let mut ftp = RawFtp { reader: tokio::io::BufReader::new(read), writer };
        assert_eq!(ftp.reply().await.0, 220);
        ftp
    }

    /// `USER` then `PASS`; the last reply.
    pub async fn log_in_as(&mut self, user: &str, password: &str) -> (u32, String) {
        let reply = self.command(&format!("USER {user}")).await;
        if reply.0 != 331 {
            return reply;
        }
        self.command(&format!("PASS {password}")).await
    }

    /// True when the server closed the connection (reads until the end or a reset, at most 20 s).
    pub async fn closed(&mut self) -> bool {
        self.read_rest(Duration::from_secs(20)).await.1
    }

    /// Reads until the server closes the connection (its end, or a reset), at most `within`:
    /// what came, and whether it was closed in time.
    pub async fn read_rest(&mut self, within: Duration) -> (Vec<u8>, bool) {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(within, self.reader.read_to_end(&mut rest)).await.is_ok();
        (rest, ended)
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> (u32, String) {
        use tokio::io::AsyncBufReadExt;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("a reply within 20 s")
                .expect("read");
            assert!(read > 0, "connection closed while waiting for a reply");
            text.push_str(&line);
            let bytes = line.as_bytes();
            if bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ' {
                let code = line[..3].parse().expect("digits");
                return (code, text.trim_end().to_string());
            }
        }
    }

    /// Reads the next `N` replies: their codes, in order.
    pub async fn codes<const N: usize>(&mut self) -> [u32; N] {
        let mut codes = [0; N];
        for code in &mut codes {
            *code = self.reply().await.0;
        }
        codes
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> (u32, String) {
        self.send(line).await;
        self.reply().await
    }

    /// Sends one command line.
    pub async fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await;
    }

    /// Closes the sending side of the control connection (a client that sent its last
    /// command and still reads the replies).
    pub async fn finish_sending(&mut self) {
        use tokio::io::AsyncWriteExt;
        self.writer.shutdown().await.expect("shutdown");
    }

    /// Sends raw bytes on the control connection.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("send");
    }

    /// Enters passive mode and connects the data connection.
    pub async fn passive(&mut self, control: SocketAddr) -> tokio::net::TcpStream {
        let port = self.passive_port().await;
        tokio::net::TcpStream::connect(SocketAddr::new(control.ip(), port)).await.expect("data connection")
    }

    /// Enters passive mode (`EPSV`): the port to connect the data connection to.
    pub async fn passive_port(&mut self) -> u16 {
        let (code, text) = self.command("EPSV").await;
        assert_eq!(code, 229, "{text}");
        epsv_port(&text)
    }
}

/// The port of an `EPSV` reply.
pub fn epsv_port(text: &str) -> u16 {
    text.rsplit("|||")
        .next()
        .and_then(|rest| rest.split('|').next())
        .and_then(|port| port.parse().ok())
        .expect("EPSV port")
}

/// Creates `name` in the cluster's FTP folder as a sparse file of `size` bytes (zeros).
pub fn sparse(cluster: &TestCluster, name: &str, size: u64) {
    let file = std::fs::File::create(cluster.root.path().join(name)).expect("create");
    file.set_len(size).expect("set_len");
}

/// A binary session in the middle of downloading a 4 GiB (sparse) file, `first` bytes of it
/// read: the session and its data connection.
pub async fn in_a_big_download(cluster: &TestCluster, first: usize) -> (RawFtp, tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    sparse(cluster, "big.bin", 4 << 30);
    let mut raw = RawFtp::login_binary(cluster.main()).await;
    let mut data = raw.passive(cluster.main()).await;
    assert_eq!(raw.command("RETR big.bin").await.0, 150);
    let mut some = vec![0u8; first];
    data.read_exact(&mut some).await.expect("the first bytes");
    (raw, data)
}

/// The names in `folder` (one level), sorted.
pub fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .expect("read folder")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A running `ftpcalc` process whose stdout is read line by line; killed on drop.
pub struct Process {
    pub child: std::process::Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `ftpcalc ARGS...` (or `PREFIX... ftpcalc ARGS...`, e.g. `ip netns exec NS`).
    pub fn start(prefix: &[&str], args: &[&str]) -> Process {
        Process::spawn(prefix, args, std::process::Stdio::null())
    }

    /// Starts `ftpcalc ARGS...` with its stderr (the log) written to `stderr`.
    pub fn start_logging(args: &[&str], stderr: &Path) -> Process {
        let file = std::fs::File::create(stderr).expect("create the log file");
        Process::spawn(&[], args, std::process::Stdio::from(file))
    }

    fn spawn(prefix: &[&str], args: &[&str], stderr: std::process::Stdio) -> Process {
        let program = env!("CARGO_BIN_EXE_ftpcalc");
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut command = std::process::Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => std::process::Command::new(program),
        };
        let mut child = command
            .args(args)
            .env("XDG_STATE_HOME", state_folder())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ftpcalc");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Process { child, lines }
    }

    /// The next stdout line (waits at most 20 s).
    pub fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("a line on stdout within 20 s")
    }

    /// The address in the first row of the table the process printed (its own server).
    pub fn address_from_table(&self) -> SocketAddr {
        let header = self.line();
        assert!(header.starts_with("NAME"), "{header}");
        let row = self.line();
        row.split_whitespace()
            .nth(1)
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no address in {row:?}"))
    }

    /// Sends `signal` (`HUP`, `TERM`...) to the process.
    pub fn signal(&self, signal: &str) {
        let sent =
            std::process::Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|status| status.success()), "kill -{signal}");
    }

    /// Sends SIGKILL (no goodbye, no deregistration).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ftpcalc worker NAME FOLDER --join MAIN --services SERVICES --secret SECRET --listen LISTEN`
/// (heartbeat 0.5 s) under `prefix` (e.g. `ip netns exec NS`); returns it, its address and the
/// line saying whom it joined.
pub fn start_worker_process(
    prefix: &[&str],
    (name, folder, services): (&str, &Path, &str),
    main: SocketAddr,
    secret: &str,
    listen: &str,
) -> (Process, SocketAddr, String) {
    let root = folder.to_str().expect("utf-8 path");
    let main = main.to_string();
    let args = [
        "worker",
        name,
        root,
        "--join",
        &main,
        "--services",
        services,
        "--secret",
        secret,
        "--heartbeat",
        "0.5",
        "--listen",
        listen,
        "--grace",
        "0.5",
    ];
    let worker = Process::start(prefix, &args);
    let address = worker.address_from_table();
    let joined = worker.line();
    (worker, address, joined)
}

/// Polls `condition` every 100 ms for at most `limit`; true once it holds.
pub async fn eventually(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a [`FakeWorker`] does with a SITE request: answer with this reply line (code and text),
/// compute an ADD like a real worker, or close the connection.
#[derive(Clone, Copy, Debug)]
pub enum Fake {
    Answer(&'static str),
    Add,
    Close,
}

/// A scripted FTP server standing in for a worker: greets, accepts any login, answers NOOP, and
/// treats every SITE request as `behaviour` says, recording the request lines it received.
/// [`FakeWorker::freeze`] makes it behave like a stopped process (SIGSTOP): nothing more is
/// sent on any connection, and new connections get no greeting.
pub struct FakeWorker {
    pub address: SocketAddr,
    pub received: Arc<Mutex<Vec<String>>>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeWorker {
    pub async fn start(behaviour: Fake) -> FakeWorker {
        let listener = tokio::net::TcpListener::bind(loopback(0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (record, freeze) = (received.clone(), frozen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(fake_session(stream, behaviour, record.clone(), freeze.clone()));
            }
        });
        FakeWorker { address, received, frozen, task }
    }

    /// From now on, answer nothing at all.
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The SITE request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }

    /// A registry entry for this fake under `name`, offering `services`.
    pub fn entry(&self, name: &str, services: &[&str]) -> ftpcalc::ServerEntry {
        ftpcalc::ServerEntry {
            name: name.into(),
            address: self.address,
            role: ftpcalc::Role::Worker,
            services: services.iter().map(|service| service.to_string()).collect(),
        }
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_session(
    stream: tokio::net::TcpStream,
    behaviour: Fake,
    received: Arc<Mutex<Vec<String>>>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let is_frozen = || frozen.load(std::sync::atomic::Ordering::SeqCst);
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    if is_frozen() {
        return std::future::pending().await;
    }
    if write.write_all(b"220 fake worker\r\n").await.is_err() {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        if verb == "SITE" {
            received.lock().expect("lock").push(line[5..].to_string());
        }
        if is_frozen() {
            return std::future::pending().await;
        }
        let reply = match verb.as_str() {
            "USER" => "331 password please".to_string(),
            "PASS" => "230 logged in".to_string(),
            "NOOP" => "200 ok".to_string(),
            "QUIT" => "221 bye".to_string(),
            "SITE" => match behaviour {
                Fake::Answer(reply) => reply.to_string(),
                Fake::Add => {
                    let sum: i128 = line.split_whitespace().skip(2).filter_map(|word| word.parse::<i128>().ok()).sum();
                    format!("200 {sum} (computed by FAKE)")
                }
                Fake::Close => return,
            },
            _ => "502 not here".to_string(),
        };
        if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
            return;
        }
    }
}
