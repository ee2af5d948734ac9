//! The `ftpcalc client`: one-shot commands and an interactive shell against a cluster.
//!
//! [`command`] parses what the user typed, [`session`] talks FTP, [`progress`] shows transfers,
//! [`shell`] reads lines; this module runs one request and prints its answer. Answers go to
//! stdout alone (so scripts can use them); messages, progress and `--verbose` details go to
//! stderr.

pub mod cache;
pub mod command;
pub mod completion;
pub mod credentials;
pub mod error;
pub mod help;
pub mod local;
pub mod progress;
pub mod session;
pub mod shell;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::{parse_lookup, split_answer, INFO, LOOKUP, SERVERS, STATS};
use cache::FileCache;
use command::Request;
pub use error::ClientError;
use session::Session;
use transfer::{GetOptions, Got};

/// Where the client connects unless told otherwise.
pub const DEFAULT_SERVER: &str = crate::config::DEFAULT_LISTEN;
/// How long the client waits to connect, and for any reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything the client needs to know.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The client's name, used as the FTP user name.
    pub name: String,
    /// The FTP password, if given (`--password`, `$FTPCALC_PASSWORD`); else `~/.netrc`, else
    /// a prompt on a terminal.
    pub password: Option<String>,
    /// Require explicit FTPS.
    pub tls: bool,
    /// Trust this certificate file for TLS instead of the system's authorities.
    pub tls_ca: Option<PathBuf>,
    /// The local folder: downloads go there, relative uploads are read from there.
    pub folder: PathBuf,
    /// The server as `HOST:PORT`.
    pub server: String,
    /// Also show which server computed an answer, and the raw reply.
    pub verbose: bool,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// The whole-file cache's folder; `None`: no cache (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    /// How long after a check a cached file is used without asking the server.
    pub cache_fresh: Duration,
    /// The cache's size bound in bytes.
    pub cache_max_bytes: u64,
}

/// A lazily opened connection: opened by the first request that needs the server, dropped
/// when it breaks, reopened by the next request (in the remote folder the last one was in).
pub struct Connection {
    config: ClientConfig,
    session: Option<Session>,
    cache: Option<FileCache>,
    /// The remote folder to return to after a reconnection.
    cwd: Option<String>,
    /// The names of the remote folder, for completion: (folder, names, when listed).
    listing: Option<(String, Vec<String>, Instant)>,
}

/// How long a listing serves completion before it is asked again.
const LISTING_FRESH: Duration = Duration::from_secs(10);

impl Connection {
    /// No connection yet.
    pub fn new(config: ClientConfig) -> Self {
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            FileCache::open(dir, config.cache_fresh, config.cache_max_bytes)
                .map_err(|error| eprintln!("warning: no file cache in {}: {error}", dir.display()))
                .ok()
        });
        Connection { config, session: None, cache, cwd: None, listing: None }
    }

    /// The local folder.
    pub fn folder(&self) -> &Path {
        &self.config.folder
    }

    fn session(&mut self) -> Result<&mut Session, ClientError> {
        // A server that restarted (or timed the session out) closed the socket: notice it before
        // sending anything, so that no command is lost or sent twice.
        if self.session.as_ref().is_some_and(Session::is_stale) {
            self.session = None;
        }
        if self.session.is_none() {
            let mut session = Session::connect(&self.config)?;
            if let Some(cwd) = self.cwd.clone() {
                if let Err(error) = session.cd(&cwd) {
                    eprintln!("warning: reconnected, but cannot return to {cwd}: {error:#}");
                    self.cwd = None;
                }
            }
            self.session = Some(session);
        }
        Ok(self.session.as_mut().expect("connected just above"))
    }

    /// Runs one request and prints its answer; `Ok(false)` means the user asked to quit. A
    /// connection that broke under an idempotent request is opened again and the request sent
    /// once more.
    pub fn run(&mut self, request: &Request) -> Result<bool, ClientError> {
        let reused = self.session.is_some();
        let mut result = self.execute(request);
        if let Err(error) = &result {
            if error.breaks_connection() {
                self.session = None;
                if reused && request.idempotent() && !matches!(error, ClientError::Login { .. }) {
                    result = self.execute(request);
                    if result.as_ref().is_err_and(ClientError::breaks_connection) {
                        self.session = None;
                    }
                }
            }
        }
        result
    }

    /// The names in the current remote folder, listed at most every 10 s (for completion).
    pub fn remote_names(&mut self) -> Vec<String> {
        let folder = self.cwd.clone().unwrap_or_default();
        if let Some((listed, names, when)) = &self.listing {
            if *listed == folder && when.elapsed() < LISTING_FRESH {
                return names.clone();
            }
        }
        let names = match self.session().and_then(|session| session.names(None)) {
            Ok(names) => names,
            Err(_) => return Vec::new(),
        };
        self.listing = Some((folder, names.clone(), Instant::now()));
        names
    }

    fn execute(&mut self, request: &Request) -> Result<bool, ClientError> {
        let verbose = self.config.verbose;
        let folder = self.config.folder.clone();
        if request.changes_remote_names() {
            self.listing = None;
        }
        match request {
            Request::Help(None) => println!("{}", help::help_text()),
            Request::Help(Some(name)) => match help::command_help(name) {
                Some(text) => println!("{text}"),
                None => return Err(ClientError::Usage(format!("no command {name:?} (try: help)"))),
            },
            Request::Quit => return Ok(false),
            Request::Service { verb, arguments } => {
                let line = std::iter::once(verb.clone()).chain(arguments.iter().cloned()).collect::<Vec<_>>().join(" ");
                let text = self.session()?.site(&line, &line.to_lowercase())?;
                let (answer, server) = split_answer(&text);
                println!("{answer}");
                if verbose {
                    eprintln!("computed by {}; reply: 200 {text}", server.unwrap_or("?"));
                }
            }
            Request::Lookup(service) => {
                let text = self.session()?.site(&format!("{LOOKUP} {service}"), &format!("lookup {service}"))?;
                print_lookup(&text);
            }
            Request::Servers => {
                let text = self.session()?.site(SERVERS, "servers")?;
                print_table(&text, "NAME ADDRESS ROLE SERVICES");
            }
            Request::Info => {
                let text = self.session()?.site(INFO, "info")?;
                for pair in text.split_whitespace() {
                    println!("{}", pair.replacen('=', ": ", 1));
                }
            }
            Request::Stats(file) => {
                let line = match file {
                    Some(file) => format!("{STATS} {file}"),
                    None => STATS.to_string(),
                };
                let text = self.session()?.site(&line, &line.to_lowercase())?;
                print_table(&text, "PATH DOWNLOADS");
            }
            Request::List(path) => {
                for line in self.session()?.list(path.as_deref())? {
                    println!("{line}");
                }
            }
            Request::Get { remote, resume, force } => {
                create_folder(&folder)?;
                self.get(remote, GetOptions { resume: *resume, force: *force })?;
            }
            Request::Put { local, resume } => {
                let stored = self.session()?.put(&folder.join(local), *resume)?;
                println!("{stored}");
            }
            Request::Mget(patterns) => self.mget(patterns)?,
            Request::Mput(patterns) => self.mput(patterns)?,
            Request::Cd(path) => {
                let cwd = self.session()?.cd(path)?;
                self.cwd = Some(cwd.clone());
                println!("{cwd}");
            }
            Request::Pwd => {
                let cwd = self.session()?.cwd()?;
                println!("{cwd}");
            }
            Request::Mkdir(path) => self.session()?.mkdir(path)?,
            Request::Rm(path) => self.session()?.rm(path)?,
            Request::Rmdir(path) => self.session()?.rmdir(path)?,
            Request::Mv(from, to) => self.session()?.mv(from, to)?,
            Request::Lcd(path) => {
                let target = folder.join(path);
                let canonical =
                    target.canonicalize().map_err(|source| ClientError::Local { path: target.clone(), source })?;
                if !canonical.is_dir() {
                    return Err(ClientError::Usage(format!("{} is not a folder", canonical.display())));
                }
                println!("{}", canonical.display());
                self.config.folder = canonical;
            }
        }
        Ok(true)
    }

    fn get(&mut self, remote: &str, options: GetOptions) -> Result<(), ClientError> {
        let folder = self.config.folder.clone();
        let cache = if options.resume { None } else { self.cache.clone() };
        let got = self.session()?.get(remote, &folder, options, cache.as_ref())?;
        match got {
            Got::Downloaded(path) => println!("{}", path.display()),
            Got::Cached(path) => {
                eprintln!("{remote}: cached (unchanged on the server)");
                println!("{}", path.display());
            }
            Got::Complete(path) => {
                eprintln!("{remote}: already complete");
                println!("{}", path.display());
            }
        }
        Ok(())
    }

    fn mget(&mut self, patterns: &[String]) -> Result<(), ClientError> {
        let mut failed = None;
        for pattern in patterns {
            let (dir, name_pattern) = match pattern.rsplit_once('/') {
                Some((dir, name)) => (Some(if dir.is_empty() { "/" } else { dir }), name),
                None => (None, pattern.as_str()),
            };
            let matcher = glob::Pattern::new(name_pattern)
                .map_err(|error| ClientError::Usage(format!("bad pattern {pattern:?}: {error}")))?;
            let names = self.session()?.names(dir)?;
            let matching: Vec<String> = names.into_iter().filter(|name| matcher.matches(name)).collect();
            if matching.is_empty() {
                eprintln!("mget: nothing matches {pattern}");
            }
            for name in matching {
                let remote = match dir {
                    Some("/") => format!("/{name}"),
                    Some(dir) => format!("{dir}/{name}"),
                    None => name,
                };
                if let Err(error) = self.get(&remote, GetOptions::default()) {
                    eprintln!("error: {error:#}");
                    if error.breaks_connection() {
                        return Err(error);
                    }
                    failed = Some(error);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn mput(&mut self, patterns: &[String]) -> Result<(), ClientError> {
        let folder = self.config.folder.clone();
        let mut failed = None;
        for pattern in patterns {
            let full = folder.join(pattern);
            let paths = glob::glob(&full.to_string_lossy())
                .map_err(|error| ClientError::Usage(format!("bad pattern {pattern:?}: {error}")))?;
            let files: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|path| path.is_file()).collect();
            if files.is_empty() {
                eprintln!("mput: nothing matches {pattern}");
            }
            for file in files {
                match self.session()?.put(&file, false) {
                    Ok(stored) => println!("{stored}"),
                    Err(error) => {
                        eprintln!("error: {error:#}");
                        if error.breaks_connection() {
                            return Err(error);
                        }
                        failed = Some(error);
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Closes the connection politely.
    pub fn close(self) {
        if let Some(session) = self.session {
            session.quit();
        }
    }
}

fn create_folder(folder: &Path) -> Result<(), ClientError> {
    std::fs::create_dir_all(folder).map_err(|source| ClientError::Local { path: folder.to_path_buf(), source })
}

/// `ADD SV1=127.0.0.1:2122 SV5=…` as a table.
fn print_lookup(text: &str) {
    let (service, places) = parse_lookup(text);
    println!("{:<10} {:<10} ADDRESS", "SERVICE", "SERVER");
    for (server, address) in places {
        println!("{service:<10} {server:<10} {address}");
    }
}

/// A multi-line SITE answer (title line, rows, summary line) as a table with `header`.
fn print_table(text: &str, header: &str) {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() < 2 {
        println!("{text}");
        return;
    }
    let rows: Vec<Vec<&str>> = lines[1..lines.len() - 1].iter().map(|line| line.split_whitespace().collect()).collect();
    let header: Vec<&str> = header.split(' ').collect();
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in &rows {
        for (column, cell) in row.iter().enumerate().take(columns) {
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let render = |cells: &[&str]| {
        let mut line = String::new();
        for (column, cell) in cells.iter().enumerate().take(columns) {
            if column + 1 == columns {
                line.push_str(&cells[column..].join(" "));
            } else {
                line.push_str(&format!("{cell:<width$} ", width = widths[column]));
            }
        }
        line.trim_end().to_string()
    };
    println!("{}", render(&header));
    for row in &rows {
        println!("{}", render(row));
    }
}

/// Runs the client: the one command in `words`, or the shell when there is none. Returns the
/// process exit code.
pub fn run(config: ClientConfig, words: &[String]) -> u8 {
    if let Err(error) = create_folder(&config.folder) {
        eprintln!("ftpcalc: {error:#}");
        return error.exit_code();
    }
    if words.is_empty() {
        return shell::run(config);
    }
    let mut connection = Connection::new(config);
    let outcome = command::parse(words).and_then(|request| connection.run(&request));
    connection.close();
    match outcome {
        Ok(_) => error::EXIT_OK,
        Err(error) => {
            eprintln!("ftpcalc: {error:#}");
            error.exit_code()
        }
    }
}
