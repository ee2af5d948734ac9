//! A lean FTP control connection for the cluster's own hops (main server → worker, worker →
//! main server) and the bench: connect, read the greeting, log in, send a line, read one reply.
//!
//! It is ours rather than suppaftp's because the hop is on the hot path of every routed request
//! (one buffered socket, no locks, no per-command allocation beyond the reply), and because it
//! must bound what a misbehaving peer can make it buffer. Once logged in, the main server's
//! connections to workers become [`crate::cluster::pipeline::Pipeline`]s, which read replies
//! with the same [`read_reply`]. Replies are parsed by [`crate::protocol`], like everywhere
//! else.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cluster::secret::ClusterSecret;
use crate::cluster::tls::{hop_config, hop_name, Stream};
use crate::protocol::{final_code, greeting_nonce, strip_code, CLUSTER_USER};

/// Longest reply line accepted from a peer (a `SITE MUL` answer of 64,000 digits fits).
pub const MAX_LINE_BYTES: u64 = 256 * 1024;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 4096;

/// Why an exchange on a control connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection.
    #[error("the connection was closed")]
    Closed,
    /// The peer sent something that is not an FTP reply, or one over the bounds.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The peer answered with a code other than the one expected.
    #[error("unexpected reply {}: {}", .0.code, .0.text())]
    Unexpected(Reply),
    /// The peer closed the session (`421`, its idle timeout or shutdown) before it read the
    /// request: the request was not carried out.
    #[error("the session was closed before the request was read: {} {}", .0.code, .0.text())]
    Dismissed(Box<Reply>),
}

/// One reply: its code and its text lines without codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, e.g. 200.
    pub code: u32,
    /// The text of each line, codes removed.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text on one line (lines joined by spaces, empty ones dropped).
    pub fn text(&self) -> String {
        let lines: Vec<&str> = self.lines.iter().map(String::as_str).filter(|line| !line.is_empty()).collect();
        lines.join(" ")
    }
}

/// An open control connection.
#[derive(Debug)]
pub struct Control {
    stream: BufReader<Stream>,
    peer: SocketAddr,
    greeting: Reply,
}

impl Control {
    /// Connects to `address` and reads the `220` greeting.
    pub async fn connect(address: SocketAddr) -> Result<Control, ControlError> {
        let socket = TcpStream::connect(address).await?;
        // Requests are single short lines: send them at once rather than wait for Nagle.
        socket.set_nodelay(true)?;
        let mut control =
            Control { stream: BufReader::new(Stream::Plain(socket)), peer: address, greeting: empty_reply() };
        let greeting = control.reply().await?;
        if greeting.code != 220 {
            return Err(ControlError::Unexpected(greeting));
        }
        control.greeting = greeting;
        Ok(control)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// The address this connection goes to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// `USER` and, when asked for, `PASS`; anything but `230` in the end is an error.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ControlError> {
        let mut reply = self.command(&format!("USER {user}")).await?;
        if reply.code == 331 {
            reply = self.command(&format!("PASS {password}")).await?;
        }
        match reply.code {
            230 => Ok(()),
            _ => Err(ControlError::Unexpected(reply)),
        }
    }

    /// Logs in as another server of the cluster: user [`CLUSTER_USER`], password the proof of
    /// `secret` over the nonce of this connection's greeting.
    pub async fn login_cluster(&mut self, secret: &ClusterSecret) -> Result<(), ControlError> {
        let nonce = greeting_nonce(self.greeting.lines.iter().map(String::as_str)).unwrap_or_default().to_string();
        self.login(CLUSTER_USER, &secret.login_proof(&nonce)).await
    }

    /// Sends one command line (CR and LF in it are refused) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ControlError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Sends one command line; CR or LF inside it would smuggle a second command, so they are
    /// refused.
    pub async fn send(&mut self, line: &str) -> Result<(), ControlError> {
        one_line(line)?;
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&bytes).await?;
        self.stream.get_mut().flush().await?;
        Ok(())
    }

    /// Reads one reply (see [`read_reply`]).
    pub async fn reply(&mut self) -> Result<Reply, ControlError> {
        read_reply(&mut self.stream).await
    }

    /// The connection's stream, for a [`crate::cluster::pipeline::Pipeline`]; refused when the
    /// peer sent something not yet read (it would be taken for a reply).
    pub fn into_stream(self) -> Result<Stream, ControlError> {
        if !self.stream.buffer().is_empty() {
            return Err(ControlError::Malformed("data nobody asked for".into()));
        }
        Ok(self.stream.into_inner())
    }

    /// Sends `QUIT` and reads the goodbye, ignoring failures.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
    }

    /// The socket, for the bench's data connections.
    pub fn socket(&self) -> &TcpStream {
        self.stream.get_ref().socket()
    }

    /// Upgrades to TLS with `AUTH TLS` (RFC 4217) when the server has it; a server without
    /// TLS (`5xx`) leaves the connection plain. Returns the connection and whether it is now
    /// under TLS.
    pub async fn secure_if_offered(mut self) -> Result<(Control, bool), ControlError> {
        let reply = self.command("AUTH TLS").await?;
        if reply.code != 234 {
            return Ok((self, false));
        }
        if !self.stream.buffer().is_empty() {
            return Err(ControlError::Malformed("data after the 234 reply".into()));
        }
        let Control { stream, peer, greeting } = self;
        let Stream::Plain(socket) = stream.into_inner() else {
            return Err(ControlError::Malformed("AUTH TLS on a connection under TLS".into()));
        };
        let connector = tokio_rustls::TlsConnector::from(hop_config());
        let tls = connector.connect(hop_name(), socket).await?;
        Ok((Control { stream: BufReader::new(Stream::Tls(Box::new(tls))), peer, greeting }, true))
    }
}

/// Refuses a command line with CR or LF inside: it would smuggle a second command.
pub fn one_line(line: &str) -> Result<(), ControlError> {
    match line.contains(['\r', '\n']) {
        true => Err(ControlError::Io(io::Error::new(io::ErrorKind::InvalidInput, "a line break in a command"))),
        false => Ok(()),
    }
}

/// Reads one reply, single- or multi-line (RFC 959 §4.2: `ddd-` opens it, `ddd ` with the same
/// code ends it), within [`MAX_LINE_BYTES`] per line and [`MAX_REPLY_LINES`] lines.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ControlError> {
    let first = read_line(reader).await?;
    let code = match first.as_bytes().get(..3) {
        Some(digits) if digits.iter().all(u8::is_ascii_digit) => first[..3].to_string(),
        _ => return Err(ControlError::Malformed(first.chars().take(80).collect())),
    };
    let mut lines = vec![strip_code(&first).to_string()];
    if first.as_bytes().get(3) != Some(&b'-') {
        return Ok(Reply { code: code.parse().unwrap_or(0), lines });
    }
    loop {
        if lines.len() >= MAX_REPLY_LINES {
            return Err(ControlError::Malformed(format!("a reply over {MAX_REPLY_LINES} lines")));
        }
        let line = read_line(reader).await?;
        let last = line.starts_with(&code) && final_code(&line).is_some();
        lines.push(strip_code(&line).to_string());
        if last {
            return Ok(Reply { code: code.parse().unwrap_or(0), lines });
        }
    }
}

/// One line of the peer's, without its line end.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, ControlError> {
    let mut line = Vec::new();
    let read = reader.take(MAX_LINE_BYTES).read_until(b'\n', &mut line).await?;
    if read == 0 {
        return Err(ControlError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(ControlError::Malformed(format!("a reply line over {MAX_LINE_BYTES} bytes")));
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string())
}

fn empty_reply() -> Reply {
    Reply { code: 0, lines: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A peer that sends `script` after the connection opens, then holds the connection.
    async fn peer(script: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let _ = stream.write_all(&script).await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        address
    }

    #[tokio::test]
    async fn replies_are_read_whole_and_bounded() {
        let script =
            b"220-welcome\r\n nonce 1\r\n220 ready\r\n200-a\r\n 200 is not the end\r\n201 nor this\r\n200 end\r\n"
                .to_vec();
        let mut control = Control::connect(peer(script).await).await.expect("greeting");
        assert_eq!(control.greeting().lines, ["welcome", "nonce 1", "ready"]);
        let reply = control.reply().await.expect("reply");
        assert_eq!((reply.code, reply.text()), (200, "a 200 is not the end nor this end".to_string()));

        let mut long = b"220 hi\r\n200 ".to_vec();
        long.extend(std::iter::repeat_n(b'9', MAX_LINE_BYTES as usize));
        let mut control = Control::connect(peer(long).await).await.expect("greeting");
        assert!(matches!(control.reply().await, Err(ControlError::Malformed(_))));

        let garbage = Control::connect(peer(b"hello there\r\n".to_vec()).await).await;
        assert!(matches!(garbage, Err(ControlError::Malformed(_))));
        let refused = Control::connect(peer(b"421 go away\r\n".to_vec()).await).await;
        assert!(matches!(refused, Err(ControlError::Unexpected(Reply { code: 421, .. }))));
    }

    #[tokio::test]
    async fn commands_cannot_smuggle_a_second_line_and_unread_data_is_never_taken_over() {
        let mut control = Control::connect(peer(b"220 hi\r\n200 stray\r\n".to_vec()).await).await.expect("greeting");
        assert!(control.send("NOOP\r\nDELE x").await.is_err(), "no command smuggling");
        assert!(control.send("NOOP\nDELE x").await.is_err(), "no command smuggling");
        assert!(matches!(control.into_stream(), Err(ControlError::Malformed(_))), "a stray reply is waiting");
        let control = Control::connect(peer(b"220 hi\r\n".to_vec()).await).await.expect("greeting");
        assert!(control.into_stream().is_ok());
    }
}
