//! The command line: clap types only, turned into library configurations by `commands.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ftpcalc::client::{DEFAULT_SERVER, DEFAULT_TIMEOUT};
use ftpcalc::config::{DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT, DEFAULT_WORKER_TIMEOUT, DEFAULT_WORKER_TTL};
use ftpcalc::WorkerSpec;

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
    /// Read a password from standard input (without echo on a terminal) and print its Argon2id
    /// hash, for the `password` of a `[[users]]` entry.
    HashPassword,
    /// Print a shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or with DIR write ftpcalc.1 and one page per subcommand
    /// (ftpcalc-server.1, ...) there.
    Man {
        /// The folder to write the pages to.
        dir: Option<PathBuf>,
    },
}

/// What `server` and `worker` share: the configuration file and the flags that override it.
#[derive(Debug, Args)]
pub struct Serving {
    /// A TOML configuration file: accounts, anonymous access, TLS, limits (see the README).
    /// Flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TLS certificate chain (PEM) for FTPS (explicit, AUTH TLS); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Make a self-signed certificate in memory for FTPS and print its SHA-256 fingerprint.
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Refuse plain-text logins from clients not on this machine (needs TLS).
    #[arg(long)]
    pub tls_required: bool,
    /// Most control connections at once (default 10000, within the descriptor limit).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most control connections at once from one client address (default 50).
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Port range for passive data connections, e.g. 40000-40999.
    #[arg(long, value_name = "FIRST-LAST")]
    pub passive_ports: Option<String>,
    /// The address PASV announces (behind NAT, in a container): an IPv4 address or a host name.
    #[arg(long, value_name = "HOST|IP")]
    pub passive_host: Option<String>,
    /// Seconds a shutdown waits for open connections.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_GRACE_PERIOD.as_secs_f64())]
    pub grace: f64,
    /// The file the cluster secret is kept in (created with mode 0600 if missing).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Serve /metrics (Prometheus), /health and /ready over HTTP on this address, e.g.
    /// 127.0.0.1:9121 (off by default).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Append one line per upload and download, in xferlog format, to FILE.
    #[arg(long, value_name = "FILE")]
    pub transfer_log: Option<PathBuf>,
    /// Every control connection starts with a PROXY protocol header (v1 or v2: HAProxy's
    /// send-proxy, send-proxy-v2) carrying the client's address; others are refused.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Log lines on stderr as text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    Text,
    /// One JSON object per line, with the session's id, user and client address.
    Json,
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
    /// The main server's address [default: 127.0.0.1:2121].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
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
    /// Apply no-clobber to every upload: STOR of an existing NAME.EXT stores NAME_copy1.EXT.
    #[arg(long)]
    pub no_clobber: bool,
    /// The cluster secret workers must prove to register (at least 16 characters); without
    /// it, the one in --secret-file (or the default secret file) is used, made if missing.
    #[arg(long, env = "FTPCALC_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    #[command(flatten)]
    pub serving: Serving,
    /// Seconds a remote worker's registration lasts without a heartbeat.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WORKER_TTL.as_secs_f64())]
    pub worker_ttl: f64,
    /// Share the registry of workers and the download counts with other main servers on etcd,
    /// e.g. etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 (default: in this process).
    #[arg(long, value_name = "etcd://HOST:PORT[,HOST:PORT...]")]
    pub registry: Option<String>,
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
    /// Where it listens [default: 127.0.0.1:0].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The address it registers, when the main server must reach it at another one (NAT,
    /// several interfaces, a listener on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<SocketAddr>,
    /// The cluster secret (or give the main server's secret file with --secret-file).
    #[arg(long, env = "FTPCALC_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_HEARTBEAT.as_secs_f64())]
    pub heartbeat: f64,
    #[command(flatten)]
    pub serving: Serving,
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
    /// The FTP password; else $FTPCALC_PASSWORD, then ~/.netrc, then a prompt on a terminal
    /// when the server asks for one.
    #[arg(long, env = "FTPCALC_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Require explicit FTPS (AUTH TLS) on the control and data connections.
    #[arg(long)]
    pub tls: bool,
    /// Trust this CA (or self-signed) certificate (PEM) for --tls instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// Also print the server that computed an answer and the raw reply (on stderr).
    #[arg(long, short)]
    pub verbose: bool,
    /// Seconds to wait for a connection or a reply.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs_f64())]
    pub timeout: f64,
    /// Download every file: no whole-file cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Seconds after a check during which a cached file is used without asking the server.
    #[arg(long, value_name = "SECONDS", default_value_t = ftpcalc::client::cache::DEFAULT_FRESH.as_secs_f64())]
    pub cache_fresh: f64,
    /// The cache's size bound in MiB (least recently used files go first).
    #[arg(long, value_name = "MIB", default_value_t = ftpcalc::client::cache::DEFAULT_MAX_BYTES >> 20)]
    pub cache_size: u64,
    /// The cache's folder [default: $XDG_CACHE_HOME/ftpcalc or ~/.cache/ftpcalc].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The command and its arguments, e.g. `add 2 3`; `help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{what} must be a non-negative number of seconds"))
}
