//! A data connection that is registered with the runtime only when it has to wait.
//!
//! A tokio `TcpStream` starts with no known readiness: its first write (or read) returns
//! `Pending` and waits for the epoll event that says what was true all along, so every transfer
//! paid an `epoll_ctl` to register, a trip through `epoll_wait` and a task wake-up before its
//! first byte, and an `epoll_ctl` to deregister after its last. A small file fits the socket's
//! buffer and is written at once: [`DataStream`] tries each read and write on the plain
//! non-blocking socket first, and registers it (for good) the first time one would block.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A data connection, registered with the runtime on its first read or write that would block.
#[derive(Debug)]
pub(crate) struct DataStream(State);

#[derive(Debug)]
enum State {
    /// A non-blocking socket the runtime does not watch.
    Plain(std::net::TcpStream),
    Registered(TcpStream),
    /// Registration failed (the error was returned); nothing more can be done with it.
    Failed,
}

impl DataStream {
    /// A connection not (yet) registered; `stream` must be in non-blocking mode.
    pub(crate) fn plain(stream: std::net::TcpStream) -> Self {
        DataStream(State::Plain(stream))
    }

    /// A connection already registered with the runtime.
    pub(crate) fn registered(stream: TcpStream) -> Self {
        DataStream(State::Registered(stream))
    }

    /// Waits for data without taking it (registering the connection).
    pub(crate) async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.register()?.peek(buf).await
    }

    fn register(&mut self) -> io::Result<&mut TcpStream> {
        if let State::Plain(_) = self.0 {
            let State::Plain(stream) = std::mem::replace(&mut self.0, State::Failed) else {
                unreachable!("checked above")
            };
            self.0 = State::Registered(TcpStream::from_std(stream)?);
        }
        match &mut self.0 {
            State::Registered(stream) => Ok(stream),
            _ => Err(failed()),
        }
    }
}

fn failed() -> io::Error {
    io::Error::other("the data connection could not be registered with the runtime")
}

/// True for the errors after which the operation is to be retried once registered.
fn would_block(result: &io::Result<usize>) -> bool {
    matches!(result, Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted))
}

impl AsyncRead for DataStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Plain(stream) = &mut this.0 {
            let read = stream.read(buf.initialize_unfilled());
            if !would_block(&read) {
                return Poll::Ready(read.map(|count| buf.advance(count)));
            }
        }
        match this.register() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

impl AsyncWrite for DataStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let State::Plain(stream) = &mut this.0 {
            let written = stream.write(bytes);
            if !would_block(&written) {
                return Poll::Ready(written);
            }
        }
        match this.register() {
            Ok(stream) => Pin::new(stream).poll_write(cx, bytes),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            State::Plain(_) => Poll::Ready(Ok(())),
            State::Registered(stream) => Pin::new(stream).poll_flush(cx),
            State::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            State::Plain(stream) => Poll::Ready(stream.shutdown(std::net::Shutdown::Write)),
            State::Registered(stream) => Pin::new(stream).poll_shutdown(cx),
            State::Failed => Poll::Ready(Err(failed())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair: the server side as a plain non-blocking socket, and the client side.
    async fn pair() -> (DataStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).await.expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        (DataStream::plain(server), client)
    }

    #[tokio::test]
    async fn a_small_write_goes_out_without_registering_and_a_big_one_registers_and_completes() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"small").await.expect("write");
        assert!(matches!(server.0, State::Plain(_)), "not registered for a write that fits");
        let big = vec![7u8; 32 << 20];
        let reading = tokio::spawn(async move {
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.expect("read");
            received
        });
        server.write_all(&big).await.expect("write");
        assert!(matches!(server.0, State::Registered(_)), "registered once the socket was full");
        server.shutdown().await.expect("shutdown");
        drop(server);
        let received = reading.await.expect("reader");
        assert_eq!(received.len(), 5 + big.len());
        assert_eq!(&received[..5], b"small");
    }

    #[tokio::test]
    async fn a_read_waits_for_data_that_has_not_come_yet() {
        let (mut server, mut client) = pair().await;
        let writing = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            client.write_all(b"later").await.expect("write");
        });
        let mut received = [0u8; 5];
        server.read_exact(&mut received).await.expect("read");
        assert_eq!(&received, b"later");
        writing.await.expect("writer");
    }
}
