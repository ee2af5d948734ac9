//! The `ftpcalc client`: one-shot commands and an interactive shell against a cluster.
//!
//! [`command`] parses what the user typed, [`session`] talks FTP, [`progress`] shows transfers,
//! [`shell`] reads lines; this module runs one request and prints its answer. Answers go to
//! stdout alone (so scripts can use them); messages, progress and `--verbose` details go to
//! stderr.

pub mod command;
pub mod credentials;
pub mod error;
pub mod progress;
pub mod session;
pub mod shell;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{parse_lookup, split_answer, INFO, LOOKUP, SERVERS, STATS};
use command::Request;
pub use error::ClientError;
use session::Session;

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
}

/// A lazily opened connection: opened by the first request that needs the server, dropped
/// when it breaks, reopened by the next request.
pub struct Connection {
    config: ClientConfig,
    session: Option<Session>,
}

impl Connection {
    /// No connection yet.
    pub fn new(config: ClientConfig) -> Self {
        Connection { config, session: None }
    }

    fn session(&mut self) -> Result<&mut Session, ClientError> {
        if self.session.is_none() {
            self.session = Some(Session::connect(&self.config)?);
        }
        Ok(self.session.as_mut().expect("connected just above"))
    }

    /// Runs one request and prints its answer; `Ok(false)` means the user asked to quit.
    pub fn run(&mut self, request: &Request) -> Result<bool, ClientError> {
        let result = self.execute(request);
        if let Err(error) = &result {
            if error.breaks_connection() {
                self.session = None;
            }
        }
        result
    }

    fn execute(&mut self, request: &Request) -> Result<bool, ClientError> {
        let verbose = self.config.verbose;
        let folder = self.config.folder.clone();
        match request {
            Request::Help => println!("{}", command::HELP),
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
            Request::Get(remote) => {
                create_folder(&folder)?;
                let local = self.session()?.get(remote, &folder)?;
                println!("{}", local.display());
            }
            Request::Put(file) => {
                let local = if Path::new(file).is_absolute() { PathBuf::from(file) } else { folder.join(file) };
                let stored = self.session()?.put(&local)?;
                println!("{stored}");
            }
        }
        Ok(true)
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
