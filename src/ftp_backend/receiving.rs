//! Receiving an upload into a file: each read of the data connection takes what has arrived,
//! up to [`CHUNK`] bytes, and is written to the file at once with one `write` in place.
//!
//! This is pure-ftpd's loop (it reads up to 512 KiB and writes what it got). tokio's file writer
//! (what this replaced) copied every socket read into a buffer of its own and wrote it on the
//! blocking pool: two thread hand-offs and a copy per read, about 1.7x the CPU of the peers per
//! GiB (BENCHMARKS.md). Waiting to fill a fixed-size buffer before writing was worse still: more
//! reads that find nothing, more waits. A write of a few hundred KiB into the page cache takes
//! a fraction of a millisecond, which the worker thread can afford; a disk that holds writes
//! back (the kernel throttling dirty pages) cannot be afforded: once one write has taken longer
//! than [`SLOW_WRITE`], the rest of that upload is written on the blocking pool, off the worker.

use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes one read takes (and one write writes), as pure-ftpd.
pub const CHUNK: usize = 512 << 10;

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
        let filled = input.read(&mut buffer).await?;
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
    }
    Ok((file, received))
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
