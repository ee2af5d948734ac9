//! Sending files over a data connection in large chunks with one chunk in flight: while one
//! chunk goes over the socket, the next one is read from the disk on tokio's blocking pool
//! (two buffers, recycled). Small files are read in place (see [`INLINE_LIMIT`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use cap_std::fs::Dir;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};

use super::refusals::{self, visible};
use super::upload::relative;

/// The largest chunk moved at once.
pub const CHUNK: usize = 1 << 20;

/// Runs `work` on the blocking pool; a panicked or cancelled task is an I/O error.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io::Error::other)?
}

/// Buffer size of [`open_buffered`]: large buffers mean few trips to tokio's blocking pool.
const TRANSFER_BUFFER: usize = 1 << 20;

/// Opens the file at `path` (from the FTP folder's root, `dir`) for reading from `start_pos`,
/// with a large buffer (libunftp's generic `get`; downloads go through [`send_file`]).
pub async fn open_buffered(
    dir: &Arc<Dir>,
    path: &Path,
    start_pos: u64,
) -> unftp_core::storage::Result<BufReader<tokio::fs::File>> {
    visible(path)?;
    let dir = dir.clone();
    let target = relative(path);
    let file = refusals::blocking(move || {
        let file = dir.open(&target)?.into_std();
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "a directory"));
        }
        Ok(file)
    })
    .await?;
    let mut file = tokio::fs::File::from_std(file);
    if start_pos > 0 {
        tokio::io::AsyncSeekExt::seek(&mut file, io::SeekFrom::Start(start_pos)).await?;
    }
    Ok(BufReader::with_capacity(TRANSFER_BUFFER, file))
}

/// Reads from `file` into `buffer` (cleared, with room for `capacity` bytes) until `capacity`
/// bytes are in or the file ends.
fn fill_from_file(file: &mut File, buffer: &mut Vec<u8>, capacity: usize) -> io::Result<()> {
    buffer.clear();
    buffer.reserve_exact(capacity);
    Read::by_ref(file).take(capacity as u64).read_to_end(buffer)?;
    Ok(())
}

/// Files up to this size are opened and read on the async worker thread itself.
///
/// A trip to the blocking pool costs two thread wake-ups, which on this kind of machine is
/// more than opening and reading a small file that is in the page cache (measured: 2,000 x
/// 4 KiB RETR over one session went from ~2,500 to ~4,500 files/s). The price: on a cold disk
/// such a read can hold one worker thread for one disk access.
pub const INLINE_LIMIT: u64 = 64 * 1024;

/// Sends the file `open` returns (with its size), from `start_pos`, to `output`; returns the
/// bytes sent. `open` runs on the async thread (it should only open and stat); the reads of
/// a file over [`INLINE_LIMIT`] run on the blocking pool. What is sent is the file as long as
/// it was when opened (the size `150` announced): it stops there, or earlier if the file
/// shrank, and needs no read that finds the end.
pub async fn send_file<W>(
    open: impl FnOnce() -> io::Result<(File, u64)> + Send,
    start_pos: u64,
    output: &mut W,
) -> io::Result<u64>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let (mut file, size) = open()?;
    let left = size.saturating_sub(start_pos);
    let capacity = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
    let first = move || {
        if start_pos > 0 {
            file.seek(SeekFrom::Start(start_pos))?;
        }
        let mut chunk = Vec::with_capacity(capacity);
        fill_from_file(&mut file, &mut chunk, capacity)?;
        Ok((file, chunk))
    };
    let (mut file, mut chunk) = if left <= INLINE_LIMIT { first()? } else { blocking(first).await? };
    // The second buffer is only needed by a file of more than one chunk (made on first use).
    let mut spare = Vec::new();
    let mut sent = 0u64;
    loop {
        let after = left.saturating_sub(sent + chunk.len() as u64);
        let more = chunk.len() == capacity && after > 0;
        let next = more.then(|| {
            let mut buffer = std::mem::take(&mut spare);
            let want = usize::try_from(after).unwrap_or(capacity).min(capacity);
            tokio::task::spawn_blocking(move || fill_from_file(&mut file, &mut buffer, want).map(|()| (file, buffer)))
        });
        output.write_all(&chunk).await?;
        sent += chunk.len() as u64;
        let Some(next) = next else { break };
        let (returned, filled) = next.await.map_err(io::Error::other)??;
        file = returned;
        spare = std::mem::replace(&mut chunk, filled);
        if chunk.is_empty() {
            break;
        }
    }
    output.flush().await?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn contents(size: usize) -> Vec<u8> {
        (0..size).map(|at| (at * 31 % 251) as u8).collect()
    }

    /// Sends a file of `size` bytes from `start_pos` and returns what arrived.
    async fn sent(size: usize, start_pos: u64) -> Vec<u8> {
        let folder = tempfile::tempdir().expect("folder");
        let path = folder.path().join("f");
        std::fs::write(&path, contents(size)).expect("write");
        let open = move || {
            let file = File::open(&path)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        };
        let mut output = Vec::new();
        let count = send_file(open, start_pos, &mut output).await.expect("send");
        assert_eq!(count, output.len() as u64);
        output
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_size_and_offset_arrives_whole() {
        let inline = INLINE_LIMIT as usize;
        for size in [0, 1, 4096, inline - 1, inline, inline + 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            for start_pos in [0, 1, size as u64 / 2, size as u64, size as u64 + 10] {
                let expected = contents(size).get(start_pos as usize..).map(<[u8]>::to_vec).unwrap_or_default();
                assert!(sent(size, start_pos).await == expected, "size {size} from {start_pos}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_is_sent_as_long_as_it_was_when_opened() {
        let folder = tempfile::tempdir().expect("folder");
        let path = folder.path().join("growing");
        std::fs::write(&path, contents(3 * CHUNK)).expect("write");
        let grow = path.clone();
        let open = move || {
            let file = File::open(&path)?;
            let size = file.metadata()?.len();
            // The file grows between the open and the reads.
            std::fs::OpenOptions::new().append(true).open(&grow)?.write_all(&[1u8; 1000])?;
            Ok((file, size))
        };
        let mut output = Vec::new();
        send_file(open, 0, &mut output).await.expect("send");
        assert!(output == contents(3 * CHUNK), "{} bytes sent", output.len());
    }
}
