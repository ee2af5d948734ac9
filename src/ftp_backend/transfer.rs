//! One upload or download as the operator sees it: [`Watch`] counts its bytes through
//! [`Counted`] and, when it ends, complete or not, updates the metrics, appends the xferlog
//! line and logs it. A transfer that libunftp drops half-way (`ABOR`, the client gone) is
//! recorded as incomplete by `Watch`'s `Drop`.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::accounts::User;
use crate::telemetry::metrics::Direction;
use crate::telemetry::xferlog::Transfer;
use crate::telemetry::{SessionTag, Telemetry};

/// A transfer under way; record its end with [`Watch::finish`], or let it drop (incomplete).
/// It borrows what its session's back-end owns (cloning the user, the session's span and the
/// path cost about 500 instructions per small download).
pub struct Watch<'a> {
    telemetry: Option<&'a Telemetry>,
    tag: &'a SessionTag,
    direction: Direction,
    path: Cow<'a, str>,
    user: &'a User,
    peer: SocketAddr,
    started: Instant,
    bytes: &'a AtomicU64,
    finished: bool,
}

impl<'a> Watch<'a> {
    /// Starts watching a transfer of `path` (from the FTP folder's root) by `user`, whose
    /// [`Counted`] stream adds its bytes to `bytes`.
    pub fn start(
        telemetry: Option<&'a Telemetry>,
        tag: &'a SessionTag,
        direction: Direction,
        path: impl Into<Cow<'a, str>>,
        user: &'a User,
        peer: SocketAddr,
        bytes: &'a AtomicU64,
    ) -> Self {
        Watch {
            telemetry,
            tag,
            direction,
            path: path.into(),
            user,
            peer,
            started: Instant::now(),
            bytes,
            finished: false,
        }
    }

    /// The file's path changed (a no-clobber upload stored it under another name).
    pub fn rename(&mut self, path: String) {
        self.path = Cow::Owned(path);
    }

    /// Not a transfer after all (the file could not be opened): nothing is recorded.
    pub fn forget(mut self) {
        self.finished = true;
    }

    /// The transfer ended: `complete` or not.
    pub fn finish(mut self, complete: bool) {
        self.finished = true;
        self.record(complete);
    }

    fn record(&self, complete: bool) {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let took = self.started.elapsed();
        // The session's span as the parent, without entering it (the same line, less work).
        tracing::info!(
            parent: &self.tag.span,
            direction = self.direction.label(),
            // As a string: quoted, control characters escaped (a client names its files).
            path = &*self.path,
            bytes,
            millis = took.as_millis() as u64,
            complete,
            "transfer"
        );
        let Some(telemetry) = self.telemetry else { return };
        telemetry.metrics.transfer(self.direction, bytes, took, complete);
        if let Some(log) = &telemetry.transfer_log {
            log.record(&Transfer {
                duration: took,
                remote: self.peer.ip(),
                bytes,
                path: &self.path,
                direction: self.direction,
                user: self.user,
                complete,
            });
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.record(false);
        }
    }
}

/// A stream that adds every byte read or written to a counter.
pub struct Counted<'a, S> {
    inner: S,
    count: &'a AtomicU64,
}

impl<'a, S> Counted<'a, S> {
    /// `inner`, counted into `count`.
    pub fn new(inner: S, count: &'a AtomicU64) -> Self {
        Counted { inner, count }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buffer.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(context, buffer);
        let read = buffer.filled().len().saturating_sub(before);
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(context, data);
        if let Poll::Ready(Ok(written)) = &polled {
            self.count.fetch_add(*written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}
