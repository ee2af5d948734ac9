//! Receiving an upload into a file: the data connection is read into one buffer of [`CHUNK`]
//! bytes until it is full (or the upload ends), and the buffer is written to the file with one
//! `write` in place.
//!
//! This is what vsftpd and pure-ftpd do, one read-write loop per session. tokio's file writer
//! (what this replaced) copied every socket read, often 64 KiB, into a buffer of its own and
//! wrote it on the blocking pool: two thread hand-offs and a copy per read, about 1.7x the CPU
//! of the peers per GiB (BENCHMARKS.md). A write of 1 MiB into the page cache takes a fraction
//! of a millisecond, which the worker thread can afford; a disk that holds writes back (the
//! kernel throttling dirty pages) cannot be afforded: once one write has taken longer than
//! [`SLOW_WRITE`], the rest of that upload is written on the blocking pool, off the worker.

use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The bytes gathered before each write: 64 KiB, as the peers do. Larger chunks cost more: a
/// 1 MiB buffer no longer fits the CPU cache, and copying it into the page cache took 77% of
/// the server's CPU in a profile (curl -T of 1 GiB: 490-760 MB/s against 1,140-1,430 with
/// 64 KiB).
pub const CHUNK: usize = 64 << 10;

/// A write in place slower than this sends the rest of the upload to the blocking pool.
pub const SLOW_WRITE: Duration = Duration::from_millis(10);

/// Reads `input` to its end into `file` (from its current position); returns the file and the
/// bytes received.
pub async fn receive_file<R>(input: &mut R, mut file: File) -> io::Result<(File, u64)>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut buffer = vec![0u8; CHUNK];
    let mut received = 0u64;
    let mut in_place = true;
    loop {
        let filled = fill(input, &mut buffer).await?;
        if filled == 0 {
            break;
        }
        received += filled as u64;
        if in_place {
            let started = Instant::now();
            file.write_all(&buffer[..filled])?;
            if started.elapsed() > SLOW_WRITE {
                tracing::debug!(
                    millis = started.elapsed().as_millis() as u64,
                    "slow disk: the rest of the upload is written off the worker"
                );
                in_place = false;
            }
        } else {
            (file, buffer) = tokio::task::spawn_blocking(move || {
                file.write_all(&buffer[..filled])?;
                Ok::<_, io::Error>((file, buffer))
            })
            .await
            .map_err(io::Error::other)??;
        }
        if filled < buffer.len() {
            break;
        }
    }
    Ok((file, received))
}

/// Reads into `buffer` until it is full or `input` ends; returns how much was read.
async fn fill<R>(input: &mut R, buffer: &mut [u8]) -> io::Result<usize>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]).await? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `data` in pieces of at most `piece` bytes.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        piece: usize,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let end = (self.at + self.piece).min(self.data.len()).min(self.at + buf.remaining());
            buf.put_slice(&self.data[self.at..end]);
            self.at = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn every_size_arrives_whole_whatever_the_pieces() {
        let folder = tempfile::tempdir().expect("folder");
        for size in [0, 1, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            for piece in [1000, 65536, CHUNK] {
                let data: Vec<u8> = (0..size).map(|at| (at * 7 % 253) as u8).collect();
                let path = folder.path().join("f");
                let file = File::create(&path).expect("create");
                let mut input = Pieces { data: data.clone(), at: 0, piece };
                let (_, received) = receive_file(&mut input, file).await.expect("receive");
                assert_eq!(received, size as u64);
                assert!(std::fs::read(&path).expect("read") == data, "size {size} in pieces of {piece}");
            }
        }
    }
}
