//! The command line: clap types only, turned into library configurations by `commands.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ftpcalc::client::{DEFAULT_SERVER, DEFAULT_TIMEOUT};
use ftpcalc::config::{DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT, DEFAULT_WORKER_TIMEOUT, DEFAULT_WORKER_TTL};
use ftpcalc::{WorkerSpec, DEFAULT_LISTEN};

/// A programmable FTP server: SITE services routed from a main server to worker servers.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
pub struct BenchArgs {
    /// The server as HOST:PORT.
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: String,
    /// FTP user.
    #[arg(long, default_value = "bench")]
    pub user: String,
    /// FTP password.
    #[arg(long, default_value = "bench")]
    pub password: String,
    /// Seconds to wait for any single reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    #[command(subcommand)]
    pub mode: BenchMode,
}

#[derive(Debug, Subcommand)]
pub enum BenchMode {
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
pub struct ServerArgs {
    /// The main server's name, e.g. SV0.
    pub name: String,
    /// The FTP folder every server serves (created if missing).
    pub folder: PathBuf,
    /// The main server's address.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// A worker as NAME=SERVICE[+SERVICE...][@HOST:PORT]; repeat for several. Without it:
    /// SV1=ADD, SV2=SUB, SV3=MUL, SV4=INC on the ports after the main server's.
    #[arg(long = "worker", value_name = "SPEC")]
    pub workers: Vec<WorkerSpec>,
    /// Start no worker (every service request then gets 451).
    #[arg(long, conflicts_with = "workers")]
    pub no_workers: bool,
    /// Seconds the main server waits for a worker's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WORKER_TIMEOUT.as_secs_f64())]
    pub worker_timeout: f64,
    /// Seconds a shutdown waits for open connections.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_GRACE_PERIOD.as_secs_f64())]
    pub grace: f64,
    /// Apply no-clobber to every upload: STOR of an existing NAME.EXT stores NAME_copy1.EXT.
    #[arg(long)]
    pub no_clobber: bool,
    /// Port range for passive data connections, e.g. 40000-40999.
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_port_range)]
    pub passive_ports: Option<(u16, u16)>,
    /// The cluster secret workers must prove to register (at least 16 characters); without
    /// it one is generated and printed once.
    #[arg(long, env = "FTPCALC_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Seconds a remote worker's registration lasts without a heartbeat.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WORKER_TTL.as_secs_f64())]
    pub worker_ttl: f64,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The worker's name, e.g. SV7.
    pub name: String,
    /// The FTP folder it serves (created if missing).
    pub folder: PathBuf,
    /// The main server's address.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: SocketAddr,
    /// The services it offers, e.g. ADD,MUL.
    #[arg(long, value_delimiter = ',', required = true)]
    pub services: Vec<String>,
    /// Where it listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The address it registers, when the main server must reach it at another one (NAT,
    /// several interfaces, a listener on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<SocketAddr>,
    /// The cluster secret printed by `ftpcalc server`.
    #[arg(long, env = "FTPCALC_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Seconds between heartbeats.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_HEARTBEAT.as_secs_f64())]
    pub heartbeat: f64,
    /// Seconds a shutdown waits for open connections.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_GRACE_PERIOD.as_secs_f64())]
    pub grace: f64,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client's name; it logs in with it as the FTP user name.
    pub name: String,
    /// Local folder for downloads and relative uploads (created if missing).
    pub folder: PathBuf,
    /// The server as HOST:PORT.
    #[arg(long, env = "FTPCALC_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The FTP password (ftpcalc servers take any).
    #[arg(long, default_value = "ftpcalc")]
    pub password: String,
    /// Also print the server that computed an answer and the raw reply (on stderr).
    #[arg(long, short)]
    pub verbose: bool,
    /// Seconds to wait for a connection or a reply.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs_f64())]
    pub timeout: f64,
    /// The command and its arguments, e.g. `add 2 3`; `help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = text.split_once('-').ok_or("expected FIRST-LAST")?;
    let first: u16 = first.parse().map_err(|_| "FIRST is not a port")?;
    let last: u16 = last.parse().map_err(|_| "LAST is not a port")?;
    if first == 0 || first > last {
        return Err("expected 1 <= FIRST <= LAST".into());
    }
    Ok((first, last))
}

pub fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{what} must be a non-negative number of seconds"))
}
