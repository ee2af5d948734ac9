//! The floor: the least a tokio server does per small download, to measure ftpcalc and the
//! peers against on the same machine (`bench/floor.sh`, BENCHMARKS.md). One task per session,
//! no channels, no locks, no logs. It answers the harness's small-file client (`USER`, `PASS`,
//! `TYPE`, `PASV`, `EPSV`, `RETR`, `NOOP`, `QUIT`, and `MKD` and `STOR` for the uploads that
//! follow the downloads) with the system calls every server makes for it (the passive listener
//! bound per `PASV`; on `RETR` the client's connection accepted, the file opened and its size
//! read, `150`, the data, `shutdown`, `226`) and nothing else.
//!
//! It takes ftpcalc's command line, so the benchmark scripts start it as they start ftpcalc:
//! `ftpcalc-floor server NAME FOLDER --listen ADDR --passive-ports FIRST-LAST [ignored...]`.
//! `FLOOR_THREADS=1` runs it on a current-thread runtime (default: tokio's multi-thread one, as
//! ftpcalc). A benchmark tool for loopback only: no accounts (anyone may upload), no TLS.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Options {
    folder: PathBuf,
    listen: SocketAddr,
    ports: (u16, u16),
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1));
    let folder = args.get(2).filter(|_| args.first().map(String::as_str) == Some("server"));
    let folder =
        PathBuf::from(folder.ok_or("usage: ftpcalc-floor server NAME FOLDER --listen ADDR [--passive-ports A-B]")?);
    let listen = value("--listen").ok_or("--listen ADDR is needed")?;
    let listen = listen.parse().map_err(|_| format!("--listen {listen}: not an address"))?;
    let ports = match value("--passive-ports") {
        None => (40500, 40999),
        Some(range) => {
            let (first, last) = range.split_once('-').ok_or("--passive-ports FIRST-LAST")?;
            let port =
                |text: &str| text.parse::<u16>().map_err(|_| format!("--passive-ports {range}: not a port range"));
            (port(first)?, port(last)?)
        }
    };
    if ports.0 == 0 || ports.0 > ports.1 {
        return Err("--passive-ports FIRST-LAST with 0 < FIRST <= LAST".into());
    }
    Ok(Options { folder, listen, ports })
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ftpcalc-floor: {message}");
            std::process::exit(2);
        }
    };
    let runtime = match std::env::var("FLOOR_THREADS").as_deref() {
        Ok("1") => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    if let Err(error) = runtime.and_then(|runtime| runtime.block_on(serve(options))) {
        eprintln!("ftpcalc-floor: {error}");
        std::process::exit(1);
    }
}

async fn serve(options: Options) -> io::Result<()> {
    let listener = TcpListener::bind(options.listen).await?;
    let folder: &'static Path = Box::leak(options.folder.into_boxed_path());
    let count = u32::from(options.ports.1 - options.ports.0) + 1;
    let mut sessions = 0u32;
    loop {
        let (socket, _) = listener.accept().await?;
        // Each session starts at another port of the range, then takes them in turn.
        let port = options.ports.0 + (sessions.wrapping_mul(97) % count) as u16;
        sessions = sessions.wrapping_add(1);
        tokio::spawn(async move {
            let _ = Session { control: socket, folder, ports: options.ports, port }.run().await;
        });
    }
}

struct Session {
    control: TcpStream,
    folder: &'static Path,
    ports: (u16, u16),
    port: u16,
}

/// Longest command line read.
const LINE_LIMIT: usize = 1024;

impl Session {
    async fn run(mut self) -> io::Result<()> {
        self.control.set_nodelay(true)?;
        self.reply("220 floor").await?;
        let mut buffer = vec![0u8; LINE_LIMIT];
        let mut filled = 0;
        let mut passive: Option<std::net::TcpListener> = None;
        loop {
            let line = loop {
                if let Some(end) = buffer[..filled].iter().position(|&byte| byte == b'\n') {
                    let line = String::from_utf8_lossy(&buffer[..end]).trim_end().to_string();
                    buffer.copy_within(end + 1..filled, 0);
                    filled -= end + 1;
                    break line;
                }
                if filled == buffer.len() {
                    self.reply("500 line too long").await?;
                    return Ok(());
                }
                match self.control.read(&mut buffer[filled..]).await? {
                    0 => return Ok(()),
                    read => filled += read,
                }
            };
            let (verb, argument) = line.split_once(' ').unwrap_or((&line, ""));
            match verb.to_ascii_uppercase().as_str() {
                "USER" => self.reply("331 any password").await?,
                "PASS" => self.reply("230 logged in").await?,
                "TYPE" | "NOOP" => self.reply("200 OK").await?,
                "QUIT" => return self.reply("221 bye").await,
                verb @ ("PASV" | "EPSV") => {
                    let (listener, port) = self.bind_passive()?;
                    passive = Some(listener);
                    let text = match verb {
                        "PASV" => {
                            let [a, b, c, d] = match self.control.local_addr()?.ip() {
                                std::net::IpAddr::V4(ip) => ip.octets(),
                                std::net::IpAddr::V6(_) => [127, 0, 0, 1],
                            };
                            format!("227 Entering Passive Mode ({a},{b},{c},{d},{},{})", port >> 8, port & 255)
                        }
                        _ => format!("229 Entering Extended Passive Mode (|||{port}|)"),
                    };
                    self.reply(&text).await?;
                }
                "RETR" => match passive.take() {
                    Some(listener) => self.retr(listener, argument).await?,
                    None => self.reply("425 PASV or EPSV first").await?,
                },
                "STOR" => match passive.take() {
                    Some(listener) => self.stor(listener, argument).await?,
                    None => self.reply("425 PASV or EPSV first").await?,
                },
                "MKD" => match plain(argument).map(|relative| std::fs::create_dir(self.folder.join(relative))) {
                    Some(Ok(())) => self.reply("257 created").await?,
                    _ => self.reply("550 not created").await?,
                },
                _ => self.reply("502 not in the floor").await?,
            }
        }
    }

    async fn reply(&mut self, text: &str) -> io::Result<()> {
        let mut line = String::with_capacity(text.len() + 2);
        line.push_str(text);
        line.push_str("\r\n");
        self.control.write_all(line.as_bytes()).await
    }

    /// A listener on the next free port of the range, not watched by the runtime (as
    /// ftpcalc's: a client connecting wakes nobody; `RETR` or `STOR` accepts).
    fn bind_passive(&mut self) -> io::Result<(std::net::TcpListener, u16)> {
        let ip = self.control.local_addr()?.ip();
        let domain = socket2::Domain::for_address(SocketAddr::new(ip, 0));
        let count = u32::from(self.ports.1 - self.ports.0) + 1;
        for _ in 0..count {
            let port = self.port;
            self.port = if self.port >= self.ports.1 { self.ports.0 } else { self.port + 1 };
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            if socket.bind(&SocketAddr::new(ip, port).into()).is_err() {
                continue;
            }
            socket.listen(64)?;
            return Ok((socket.into(), port));
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, "no free passive port"))
    }

    /// The client's data connection on `listener` (non-blocking), or `None` after a `425`.
    async fn accept(&mut self, listener: std::net::TcpListener) -> io::Result<Option<std::net::TcpStream>> {
        let data = match listener.accept() {
            Ok((data, _)) => {
                drop(listener);
                data
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                // Not there yet: the runtime watches the listener from now on.
                let waiting = TcpListener::from_std(listener)?;
                match tokio::time::timeout(std::time::Duration::from_secs(30), waiting.accept()).await {
                    Ok(accepted) => accepted?.0.into_std()?,
                    Err(_) => {
                        self.reply("425 no data connection").await?;
                        return Ok(None);
                    }
                }
            }
            Err(error) => return Err(error),
        };
        // (The listener is closed by now, before the file is opened, as other servers do.)
        data.set_nonblocking(true)?;
        Ok(Some(data))
    }

    async fn retr(&mut self, listener: std::net::TcpListener, name: &str) -> io::Result<()> {
        let Some(data) = self.accept(listener).await? else { return Ok(()) };
        let Some(relative) = plain(name) else {
            return self.reply("550 not a plain relative path").await;
        };
        let mut file = match std::fs::File::open(self.folder.join(relative)) {
            Ok(file) => file,
            Err(_) => return self.reply("550 no such file").await,
        };
        let size = file.metadata()?.len();
        // Read whole into memory: only files the size of uploads it takes.
        if size > UPLOAD_LIMIT as u64 {
            return self.reply("550 larger than the floor sends").await;
        }
        self.reply(&format!("150 Opening data connection for {name} ({size} bytes)")).await?;
        let mut contents = Vec::with_capacity(size as usize);
        Read::by_ref(&mut file).take(size).read_to_end(&mut contents)?;
        drop(file);
        let mut data = TcpStream::from_std(data)?;
        data.write_all(&contents).await?;
        data.shutdown().await?;
        drop(data);
        self.reply("226 Successfully sent").await
    }

    /// An upload as the harness's small-file client makes it (so that every target runs the
    /// same sequence): written in place, not atomically as ftpcalc does, and at most
    /// [`UPLOAD_LIMIT`] bytes.
    async fn stor(&mut self, listener: std::net::TcpListener, name: &str) -> io::Result<()> {
        let Some(data) = self.accept(listener).await? else { return Ok(()) };
        let Some(relative) = plain(name) else {
            return self.reply("550 not a plain relative path").await;
        };
        let path = self.folder.join(relative);
        let mut file = match std::fs::File::create(&path) {
            Ok(file) => file,
            Err(_) => return self.reply("550 not created").await,
        };
        self.reply("150 Ok to send data").await?;
        let mut data = TcpStream::from_std(data)?;
        let mut contents = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let read = data.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            if contents.len() + read > UPLOAD_LIMIT {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return self.reply("552 larger than the floor takes").await;
            }
            contents.extend_from_slice(&chunk[..read]);
        }
        drop(data);
        std::io::Write::write_all(&mut file, &contents)?;
        drop(file);
        self.reply("226 Transfer complete").await
    }
}

/// The largest file sent or upload taken (both are held in memory whole).
const UPLOAD_LIMIT: usize = 16 << 20;

/// `name` as a path of plain components under the folder, or `None`.
fn plain(name: &str) -> Option<&Path> {
    let relative = Path::new(name);
    let plain = !name.is_empty() && relative.components().all(|part| matches!(part, Component::Normal(_)));
    plain.then_some(relative)
}
