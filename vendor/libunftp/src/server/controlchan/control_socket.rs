//! The control connection's socket, shared by the control loop (which reads commands from it and
//! writes replies to it through its codec) and the data channel, which may write a transfer's
//! first reply (`150`) straight to it while the loop waits with nothing left to write: the reply
//! then leaves before the data, as the client expects it, instead of after the transfer, when the
//! loop gets its turn on the worker thread (a small file's whole transfer runs without a pause).

use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::codec::Encoder;

use super::codecs::FtpCodec;
use super::reply::Reply;

/// The control connection (plain TCP: under TLS the loop never opens the gate).
#[derive(Debug)]
pub struct ControlSocket {
    stream: TcpStream,
    gate: Mutex<Gate>,
    /// Set by the loop's reader when a read brought more than one line (see `pipelined` in the
    /// control loop).
    pub read_more: AtomicBool,
    /// How long a write may find no room before it fails (the idle session timeout): a client
    /// that takes none of its replies is treated as gone, as an idle one is.
    write_limit: Duration,
}

/// Whether a reply may be written from outside the control loop now.
#[derive(Debug, Default)]
struct Gate {
    /// The loop waits for its next event, with everything it had to write written.
    open: bool,
    /// What a reply written from outside could not write at once (the socket's buffer was
    /// full): the loop writes it before anything else, and nothing else is written from outside
    /// until it has.
    rest: Option<Vec<u8>>,
}

impl ControlSocket {
    pub fn new(stream: TcpStream, write_limit: Duration) -> Arc<Self> {
        Arc::new(ControlSocket {
            stream,
            gate: Mutex::default(),
            read_more: AtomicBool::new(false),
            write_limit,
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The loop is about to wait, with everything it fed written: replies may be written from
    /// outside until [`Self::close`].
    pub fn open(&self) {
        if let Ok(mut gate) = self.gate.lock() {
            gate.open = true;
        }
    }

    /// The loop is awake: nothing more is written from outside (a write under way finishes
    /// first). Gives what a reply written meanwhile could not write at once, which the loop
    /// writes before anything else (through a [`SharedSocket`], with the same write limit).
    pub fn close(&self) -> Option<Vec<u8>> {
        let mut gate = self.gate.lock().ok()?;
        gate.open = false;
        gate.rest.take()
    }

    /// Writes `reply` now if the loop waits with nothing to write; false when it did not (the
    /// reply is then for the loop to write). A reply written in part counts as written: the loop
    /// writes the rest before anything else.
    pub fn write_now(&self, reply: &Reply) -> bool {
        let Ok(mut gate) = self.gate.lock() else { return false };
        if !gate.open || gate.rest.is_some() {
            return false;
        }
        let mut bytes = BytesMut::new();
        if FtpCodec::new().encode(reply.clone(), &mut bytes).is_err() || bytes.is_empty() {
            return false;
        }
        match self.stream.try_write(&bytes) {
            Ok(written) if written == bytes.len() => true,
            Ok(written) => {
                gate.rest = Some(bytes[written..].to_vec());
                true
            }
            // Nothing written (a full buffer, or a broken connection, which the loop finds).
            Err(_) => false,
        }
    }
}

/// The error of a write that found no room for the write limit.
fn no_reply_taken() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client took no reply within the idle session timeout")
}

/// The loop's reading and writing end of a shared [`ControlSocket`].
#[derive(Debug)]
pub struct SharedSocket {
    pub socket: Arc<ControlSocket>,
    /// Since when a write has found no room (made on the first such write: an allocation only
    /// for a client that does not read its replies).
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SharedSocket {
    pub fn new(socket: Arc<ControlSocket>) -> Self {
        SharedSocket { socket, stalled: None }
    }
}

impl AsyncRead for SharedSocket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = &self.socket.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let stream = &this.socket.stream;
        loop {
            match stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => match stream.try_write(bytes) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    written => {
                        this.stalled = None;
                        return Poll::Ready(written);
                    }
                },
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                // No room: the client has taken none of the replies sent to it lately. It gets
                // the write limit to take some, or the session ends.
                Poll::Pending => {
                    let limit = this.socket.write_limit;
                    ready!(this.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit))).as_mut().poll(cx));
                    return Poll::Ready(Err(no_reply_taken()));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.socket.stream).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::controlchan::ReplyCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn connected() -> (Arc<ControlSocket>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        // As the loop's greeting does: the runtime then knows the socket is writable.
        server.writable().await.expect("writable");
        (ControlSocket::new(server, std::time::Duration::from_secs(600)), client)
    }

    fn reply(text: &str) -> Reply {
        Reply::new_with_string(ReplyCode::FileStatusOkay, text.to_string())
    }

    async fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        tokio::time::timeout(std::time::Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        got
    }

    #[tokio::test]
    async fn a_reply_is_written_from_outside_only_while_the_gate_is_open() {
        let (socket, mut client) = connected().await;
        assert!(!socket.write_now(&reply("closed at first")), "closed until the loop opens it");
        socket.open();
        assert!(socket.write_now(&reply("now")));
        assert_eq!(read_exactly(&mut client, 9).await, b"150 now\r\n");
        assert_eq!(socket.close(), None, "all of it was written");
        assert!(!socket.write_now(&reply("closed again")));
        // The loop's own writes go through the same socket, after.
        let mut shared = SharedSocket::new(socket.clone());
        shared.write_all(b"226 done\r\n").await.expect("write");
        assert_eq!(read_exactly(&mut client, 10).await, b"226 done\r\n");
        client.write_all(b"NOOP\r\n").await.expect("send");
        let mut read = [0; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), shared.read(&mut read))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&read[..n], b"NOOP\r\n");
    }

    #[tokio::test]
    async fn the_rest_of_a_reply_written_in_part_comes_before_anything_else() {
        let (socket, mut client) = connected().await;
        // Fill the socket's buffers (the client reads nothing) until a write takes nothing.
        let filler = vec![b'x'; 64 * 1024];
        let mut queued = 0usize;
        loop {
            match socket.stream().try_write(&filler) {
                Ok(written) => queued += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("write: {error}"),
            }
        }
        socket.open();
        assert!(!socket.write_now(&reply("no room")), "nothing written: the loop writes it");
        // Room for part of a reply: read a little, then write a long reply.
        // Longer than the socket's send buffer can ever grow (4 MiB by default).
        let long = "y".repeat(16 << 20);
        let _ = read_exactly(&mut client, 1).await;
        queued -= 1;
        let mut written = false;
        for _ in 0..10_000 {
            if socket.write_now(&reply(&long)) {
                written = true;
                break;
            }
            let _ = read_exactly(&mut client, 4096.min(queued)).await;
            queued -= 4096.min(queued);
            // The runtime learns that the socket is writable again when it polls for events.
            tokio::task::yield_now().await;
        }
        assert!(written, "a write took part of the reply");
        assert!(!socket.write_now(&reply("after")), "nothing from outside while a rest waits");
        let rest = socket.close().expect("the rest waits for the loop");
        assert!(!rest.is_empty() && rest.ends_with(b"\r\n"));
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut chunk = vec![0; 65536];
            while !all.ends_with(b"226 after\r\n") {
                let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut chunk))
                    .await
                    .expect("in time")
                    .expect("read");
                assert!(n > 0, "connection open");
                all.extend_from_slice(&chunk[..n]);
            }
            all
        });
        SharedSocket::new(socket.clone()).write_all(&rest).await.expect("the rest");
        SharedSocket::new(socket.clone()).write_all(b"226 after\r\n").await.expect("write");
        let all = reader.await.expect("reader");
        let text = &all[queued..];
        assert_eq!(text.len(), 4 + long.len() + 2 + 11, "the reply whole, then the next");
        assert!(text.starts_with(b"150 yyy") && text.ends_with(b"y\r\n226 after\r\n"));
    }
}
