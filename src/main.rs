//! The `ftpcalc` binary: parses the command line and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ftpcalc::client::{self, ClientConfig, DEFAULT_SERVER, DEFAULT_TIMEOUT};
use ftpcalc::config::{DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT, DEFAULT_WORKER_TIMEOUT, DEFAULT_WORKER_TTL};
use ftpcalc::remote_worker::{Worker, WorkerConfig};
use ftpcalc::secret::ClusterSecret;
use ftpcalc::{Cluster, ClusterConfig, WorkerSpec, DEFAULT_LISTEN};

/// jemalloc: the routed `SITE ADD` allocates on every hop, and with glibc's allocator 13% of
/// the server's samples were malloc/free. Measured with `ftpcalc bench cmd --command
/// "SITE ADD 2 3" -c 64`: 46k ops/s with glibc, 61k with jemalloc (mimalloc: 58k, but 31 KiB
/// instead of 23 KiB per idle session; jemalloc keeps 23). The library leaves the choice to
/// embedders.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A programmable FTP server: SITE services routed from a main server to worker servers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the main server NAME and its workers, all serving FOLDER.
    Server(ServerArgs),
    /// Talk to a cluster as NAME: run COMMAND once, or start a shell when there is none.
    Client(ClientArgs),
    /// Start a worker NAME serving FOLDER in this process and join the main server at --join.
    Worker(WorkerArgs),
    /// Measure an FTP server: command round trips, or file transfers.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The server as HOST:PORT.
    #[arg(long, default_value = DEFAULT_SERVER)]
    server: String,
    /// FTP user.
    #[arg(long, default_value = "bench")]
    user: String,
    /// FTP password.
    #[arg(long, default_value = "bench")]
    password: String,
    /// Seconds to wait for any single reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,
    #[command(subcommand)]
    mode: BenchMode,
}

#[derive(Debug, Subcommand)]
enum BenchMode {
    /// Send a command in a request/response loop on C connections: ops/s, latency p50/p99/max.
    Cmd {
        /// The command line, e.g. NOOP or "SITE ADD 2 3".
        #[arg(long, default_value = "NOOP")]
        command: String,
        /// Logged-in connections.
        #[arg(short = 'c', long, default_value_t = 1)]
        connections: usize,
        /// Seconds to run.
        #[arg(short = 'd', long, default_value_t = 5.0)]
        duration: f64,
        /// Most requests in all.
        #[arg(short = 'n', long, default_value_t = 10_000_000)]
        requests: u64,
    },
    /// Download one file: MB/s.
    Retr {
        /// Its path on the server.
        path: String,
    },
    /// Upload generated data to one file, then delete it: MB/s.
    Stor {
        /// Its path on the server.
        #[arg(long, default_value = "ftpcalc-bench.bin")]
        path: String,
        /// MiB to upload.
        #[arg(long, default_value_t = 256)]
        mib: u64,
        /// Keep the file instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
    /// Open N logged-in sessions and hold them: how many log in, and (with --pid) the server's
    /// resident memory per session.
    Idle {
        /// Sessions to open.
        #[arg(short = 'n', long, default_value_t = 1000)]
        sessions: usize,
        /// Logins in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to hold them before measuring.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        /// The server's process id, to read its memory from /proc.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Download every file of a folder over one session: files/s.
    Small {
        /// The folder on the server.
        #[arg(default_value = "")]
        path: String,
        /// Most files.
        #[arg(long, default_value_t = 2000)]
        max_files: usize,
        /// Most seconds.
        #[arg(short = 'd', long, default_value_t = 60.0)]
        duration: f64,
    },
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// The main server's name, e.g. SV0.
    name: String,
    /// The FTP folder every server serves (created if missing).
    folder: PathBuf,
    /// The main server's address.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// A worker as NAME=SERVICE[+SERVICE...][@HOST:PORT]; repeat for several. Without it:
    /// SV1=ADD, SV2=SUB, SV3=MUL, SV4=INC on the ports after the main server's.
    #[arg(long = "worker", value_name = "SPEC")]
    workers: Vec<WorkerSpec>,
    /// Start no worker (every service request then gets 451).
    #[arg(long, conflicts_with = "workers")]
    no_workers: bool,
    /// Seconds the main server waits for a worker's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WORKER_TIMEOUT.as_secs_f64())]
    worker_timeout: f64,
    /// Seconds a shutdown waits for open connections.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_GRACE_PERIOD.as_secs_f64())]
    grace: f64,
    /// Apply no-clobber to every upload: STOR of an existing NAME.EXT stores NAME_copy1.EXT.
    #[arg(long)]
    no_clobber: bool,
    /// Port range for passive data connections, e.g. 40000-40999.
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_port_range)]
    passive_ports: Option<(u16, u16)>,
    /// The cluster secret workers must prove to register (at least 16 characters); without
    /// it one is generated and printed once.
    #[arg(long, env = "FTPCALC_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Seconds a remote worker's registration lasts without a heartbeat.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WORKER_TTL.as_secs_f64())]
    worker_ttl: f64,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// The worker's name, e.g. SV7.
    name: String,
    /// The FTP folder it serves (created if missing).
    folder: PathBuf,
    /// The main server's address.
    #[arg(long, value_name = "HOST:PORT")]
    join: SocketAddr,
    /// The services it offers, e.g. ADD,MUL.
    #[arg(long, value_delimiter = ',', required = true)]
    services: Vec<String>,
    /// Where it listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The address it registers, when the main server must reach it at another one (NAT,
    /// several interfaces, a listener on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<SocketAddr>,
    /// The cluster secret printed by `ftpcalc server`.
    #[arg(long, env = "FTPCALC_SECRET", hide_env_values = true)]
    secret: String,
    /// Seconds between heartbeats.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_HEARTBEAT.as_secs_f64())]
    heartbeat: f64,
    /// Seconds a shutdown waits for open connections.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_GRACE_PERIOD.as_secs_f64())]
    grace: f64,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The client's name; it logs in with it as the FTP user name.
    name: String,
    /// Local folder for downloads and relative uploads (created if missing).
    folder: PathBuf,
    /// The server as HOST:PORT.
    #[arg(long, env = "FTPCALC_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// The FTP password (ftpcalc servers take any).
    #[arg(long, default_value = "ftpcalc")]
    password: String,
    /// Also print the server that computed an answer and the raw reply (on stderr).
    #[arg(long, short)]
    verbose: bool,
    /// Seconds to wait for a connection or a reply.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs_f64())]
    timeout: f64,
    /// The command and its arguments, e.g. `add 2 3`; `help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = text.split_once('-').ok_or("expected FIRST-LAST")?;
    let first: u16 = first.parse().map_err(|_| "FIRST is not a port")?;
    let last: u16 = last.parse().map_err(|_| "LAST is not a port")?;
    if first == 0 || first > last {
        return Err("expected 1 <= FIRST <= LAST".into());
    }
    Ok((first, last))
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{what} must be a non-negative number of seconds"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Client(args) => client_main(args),
        Command::Server(args) => with_runtime(serve(args)),
        Command::Worker(args) => with_runtime(work(args)),
        Command::Bench(args) => with_runtime(bench(args)),
    }
}

fn client_main(args: ClientArgs) -> ExitCode {
    let timeout = match seconds(args.timeout, "--timeout") {
        Ok(timeout) => timeout,
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            return ExitCode::from(client::error::EXIT_USAGE_OR_CONNECTION);
        }
    };
    let ClientArgs { name, folder, server, password, verbose, command, .. } = args;
    let config = ClientConfig { name, password, folder, server, verbose, timeout };
    ExitCode::from(client::run(config, &command))
}

/// Sets up logging and runs `job` on a tokio runtime; errors exit with 2.
fn with_runtime(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,libunftp=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome =
        tokio::runtime::Runtime::new().context("cannot start the runtime").and_then(|runtime| runtime.block_on(job));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = ClusterConfig::new(args.name, args.folder).listen(args.listen);
    if args.no_workers {
        config.workers.clear();
    } else if !args.workers.is_empty() {
        config.workers = args.workers;
    }
    config.worker_timeout = seconds(args.worker_timeout, "--worker-timeout")?;
    config.grace_period = seconds(args.grace, "--grace")?;
    config.passive_ports = args.passive_ports.map(|(first, last)| first..=last);
    config.no_clobber = args.no_clobber;
    // The process exits after the shutdown: sessions need no second handle to be closed.
    config.close_on_stop = false;
    config.worker_ttl = seconds(args.worker_ttl, "--worker-ttl")?;
    let generated = match &args.secret {
        Some(text) => {
            config.secret = Some(ClusterSecret::new(text)?);
            None
        }
        None => {
            let (secret, text) = ClusterSecret::generate();
            config.secret = Some(secret);
            Some(text)
        }
    };
    let cluster = Cluster::new(config).start().await?;
    let mut console = cluster.table();
    if let Some(text) = generated {
        console.push_str(&format!("cluster secret for `ftpcalc worker --secret`: {text}\n"));
    }
    say(&console);
    shutdown_signal().await;
    eprintln!("ftpcalc: shutting down");
    cluster.shutdown().await;
    Ok(())
}

async fn work(args: WorkerArgs) -> anyhow::Result<()> {
    let services: Vec<&str> = args.services.iter().map(String::as_str).collect();
    let mut config =
        WorkerConfig::new(&args.name, args.folder, args.join, &services, ClusterSecret::new(&args.secret)?);
    config.listen = args.listen;
    config.advertise = args.advertise;
    config.heartbeat = seconds(args.heartbeat, "--heartbeat")?;
    config.server.grace_period = seconds(args.grace, "--grace")?;
    config.server.close_on_stop = false;
    let heartbeat = config.heartbeat;
    let worker = Worker::new(config).start().await?;
    let identity = worker.identity();
    let mut console = format!("{:<8} {:<22} {:<7} SERVICES\n", "NAME", "ADDRESS", "ROLE");
    let address = identity.address.to_string();
    console.push_str(&format!("{:<8} {address:<22} {:<7} {}\n", identity.name, "worker", identity.services.join(",")));
    console.push_str(&match worker.main() {
        Some(main) => format!("joined {} at {}\n", main.name, main.address),
        None => format!("main server at {} not reachable yet; retrying every {heartbeat:?}\n", args.join),
    });
    say(&console);
    shutdown_signal().await;
    eprintln!("ftpcalc: shutting down");
    worker.shutdown().await;
    Ok(())
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let address = tokio::net::lookup_host(&args.server)
        .await?
        .next()
        .with_context(|| format!("{} has no address", args.server))?;
    let target = ftpcalc::bench::Target {
        address,
        user: args.user,
        password: args.password,
        timeout: seconds(args.timeout, "--timeout")?,
    };
    let report = match args.mode {
        BenchMode::Cmd { command, connections, duration, requests } => {
            let report =
                ftpcalc::bench::commands(&target, &command, connections, seconds(duration, "--duration")?, requests)
                    .await?;
            format!(
                "command {command:?}: {connections} connections, {:.2} s\nrequests {}, errors {}, {:.0} ops/s\nlatency p50 {} us, p99 {} us, max {} us\n",
                report.elapsed.as_secs_f64(),
                report.requests,
                report.errors,
                report.rate(),
                report.p50.as_micros(),
                report.p99.as_micros(),
                report.max.as_micros()
            )
        }
        BenchMode::Idle { sessions, concurrency, hold, pid } => {
            let report =
                ftpcalc::bench::idle_sessions(&target, sessions, concurrency, seconds(hold, "--hold")?, pid).await;
            let memory = match (report.rss_kib, report.kib_per_session()) {
                (Some((before, holding)), Some(per_session)) => {
                    format!("server RSS {before} KiB before, {holding} KiB holding, {per_session:.1} KiB per session\n")
                }
                _ => String::new(),
            };
            format!(
                "idle: {} of {sessions} sessions logged in, {} failed, opened in {:.2} s\n{memory}",
                report.logged_in,
                report.failed,
                report.elapsed.as_secs_f64()
            )
        }
        BenchMode::Retr { path } => transfer_report("retr", &ftpcalc::bench::download(&target, &path).await?),
        BenchMode::Stor { path, mib, keep } => {
            transfer_report("stor", &ftpcalc::bench::upload(&target, &path, mib << 20, keep).await?)
        }
        BenchMode::Small { path, max_files, duration } => transfer_report(
            "small",
            &ftpcalc::bench::small_files(&target, &path, max_files, seconds(duration, "--duration")?).await?,
        ),
    };
    say(&report);
    Ok(())
}

fn transfer_report(mode: &str, report: &ftpcalc::bench::TransferReport) -> String {
    format!(
        "{mode}: files {}, bytes {}, {:.3} s\n{:.1} MB/s, {:.0} files/s\n",
        report.files,
        report.bytes,
        report.elapsed.as_secs_f64(),
        report.megabytes_per_second(),
        report.files_per_second()
    )
}

/// Prints `text` on stdout; a closed stdout is not a reason to stop serving.
fn say(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
