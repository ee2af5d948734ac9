//! The client's downloads and uploads: `get` through the whole-file cache ([`FileCache`]),
//! into a partial file kept after a cut-off, placed without replacing a local file
//! ([`super::local::place`]); `get -c` and `put -c` continue with `REST` and `APPE`, checked by size;
//! `put` never replaces a remote file (the server's no-clobber).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use suppaftp::Status;

use crate::client::cache::{FileCache, Hashing};
use crate::client::error::ClientError;
use crate::client::local::{partial_path, place};
use crate::client::progress::Progress;
use crate::client::session::Session;
use crate::protocol::{NOCLOBBER, STORED};

/// Chunk size for transfers.
const CHUNK: usize = 256 * 1024;

/// How `get` treats local files.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetOptions {
    /// Continue a download that was cut off.
    pub resume: bool,
    /// Replace a local file of the same name.
    pub force: bool,
}

/// Where a `get` put the file, and how it got it.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// Downloaded.
    Downloaded(PathBuf),
    /// Copied from the cache: the server said the file is unchanged (or it was checked within
    /// the freshness window); no data connection was opened.
    Cached(PathBuf),
    /// `get -c` found the local file complete already.
    Complete(PathBuf),
}

fn local_error(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Local { path: path.to_path_buf(), source }
}

impl Session {
    /// `SIZE` of `remote`, a `550` said as "no such remote file".
    fn remote_size(&mut self, remote: &str, what: &str) -> Result<u64, ClientError> {
        match self.ftp.size(remote) {
            Ok(size) => Ok(size as u64),
            Err(error) => Err(match self.failure(what, error) {
                ClientError::Refused { code: 550, .. } => ClientError::Refused {
                    what: what.to_string(),
                    code: 550,
                    text: format!("no such remote file: {remote}"),
                },
                other => other,
            }),
        }
    }

    /// The server's `MDTM` answer for `remote`, as it said it.
    fn remote_mdtm(&mut self, remote: &str, what: &str) -> Result<String, ClientError> {
        let response = self
            .ftp
            .custom_command(format!("MDTM {remote}"), &[Status::File])
            .map_err(|error| self.failure(what, error))?;
        let line = crate::client::session::reply_line(&response.body);
        Ok(crate::protocol::strip_code(&line).trim().to_string())
    }

    /// `MDTM` of `remote`, or `None` if the server refuses it (no caching then).
    fn optional_mdtm(&mut self, remote: &str, what: &str) -> Result<Option<String>, ClientError> {
        match self.remote_mdtm(remote, what) {
            Ok(mdtm) => Ok(Some(mdtm)),
            Err(ClientError::Refused { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Downloads `remote` into `folder` under its base name.
    pub fn get(
        &mut self,
        remote: &str,
        folder: &Path,
        options: GetOptions,
        cache: Option<&FileCache>,
    ) -> Result<Got, ClientError> {
        let what = format!("get {remote}");
        let name = Path::new(remote)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| ClientError::Usage(format!("{remote:?} names no file")))?;
        if options.resume {
            return self.resume_get(remote, folder, &name, options.force, &what);
        }
        let partial = partial_path(folder, &name);
        // The cache is best effort: a server without PWD or MDTM just gets no caching.
        let key = match cache {
            Some(_) => self.absolute(remote).ok().map(|path| FileCache::key(&self.server, &self.user, &path)),
            None => None,
        };
        let mut known = None;
        if let (Some(cache), Some(key)) = (cache, &key) {
            if let Some(entry) = cache.entry(key) {
                let validated = if cache.is_fresh(&entry) {
                    Some(false)
                } else {
                    let size = self.remote_size(remote, &what)?;
                    let mdtm = self.optional_mdtm(remote, &what)?;
                    let same = size == entry.size && mdtm.as_ref() == Some(&entry.mdtm);
                    known = Some((size, mdtm));
                    same.then_some(true)
                };
                if let Some(validated) = validated {
                    if cache.copy_out(key, &entry, &partial).map_err(local_error(&partial))? {
                        cache.touch(key, &entry, validated);
                        let placed = place(&partial, folder, &name, options.force).map_err(local_error(&partial))?;
                        return Ok(Got::Cached(placed));
                    }
                    let _ = std::fs::remove_file(&partial);
                }
            }
        }
        let (size, mdtm) = match known {
            Some(known) => known,
            None => {
                let size = self.remote_size(remote, &what)?;
                let mdtm = if key.is_some() { self.optional_mdtm(remote, &what)? } else { None };
                (size, mdtm)
            }
        };
        let file = File::create(&partial).map_err(local_error(&partial))?;
        let sha256 = self.receive(remote, file, &partial, 0, size, &what)?;
        let placed = place(&partial, folder, &name, options.force).map_err(local_error(&partial))?;
        if let (Some(cache), Some(key), Some(mdtm)) = (cache, &key, &mdtm) {
            if let Err(error) = cache.store(key, &placed, size, mdtm, &sha256) {
                eprintln!("warning: {remote} not cached: {error}");
            }
        }
        Ok(Got::Downloaded(placed))
    }

    /// `get -c`: continues the partial file a cut-off download left, or the local file of the
    /// same name if it is shorter than the remote one.
    fn resume_get(
        &mut self,
        remote: &str,
        folder: &Path,
        name: &str,
        force: bool,
        what: &str,
    ) -> Result<Got, ClientError> {
        let size = self.remote_size(remote, what)?;
        let partial = partial_path(folder, name);
        let target = folder.join(name);
        let (continued, placed_after) =
            if partial.exists() || !target.exists() { (partial, true) } else { (target.clone(), false) };
        let have = std::fs::metadata(&continued).map(|metadata| metadata.len()).unwrap_or(0);
        if have > size {
            return Err(ClientError::Usage(format!(
                "cannot continue {remote}: {} has {have} bytes, the remote file {size}",
                continued.display()
            )));
        }
        if have < size {
            let file =
                OpenOptions::new().create(true).append(true).open(&continued).map_err(local_error(&continued))?;
            self.receive(remote, file, &continued, have, size, what)?;
        }
        if !placed_after {
            return Ok(if have == size { Got::Complete(target) } else { Got::Downloaded(target) });
        }
        let placed = place(&continued, folder, name, force).map_err(local_error(&continued))?;
        Ok(Got::Downloaded(placed))
    }

    /// Receives `remote` from byte `offset` (with `REST` if not 0) into `file` (at `path`),
    /// expecting it to end at `size`; returns the SHA-256 of the bytes received. On failure the
    /// partial file stays for `get -c`.
    fn receive(
        &mut self,
        remote: &str,
        file: File,
        path: &Path,
        offset: u64,
        size: u64,
        what: &str,
    ) -> Result<String, ClientError> {
        let local = local_error(path);
        let resume_hint = |reason: String| format!("{reason} ({} kept; get -c {remote} continues it)", path.display());
        if offset > 0 {
            let offset = usize::try_from(offset).map_err(|_| ClientError::Usage("offset too large".into()))?;
            self.ftp.resume_transfer(offset).map_err(|error| self.failure(what, error))?;
        }
        let mut stream = self.ftp.retr_as_stream(remote).map_err(|error| self.failure(what, error))?;
        let _ = stream.get_ref().get_ref().set_read_timeout(Some(Duration::from_secs(30)));
        let mut progress = Progress::start(remote, size);
        progress.advance(offset);
        let mut out = Hashing::new(file);
        let mut buffer = vec![0; CHUNK];
        let mut received = offset;
        loop {
            let read = match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) => {
                    progress.abandon();
                    return Err(self.broken(resume_hint(format!("download of {remote} broke off: {error}"))));
                }
            };
            out.write_all(&buffer[..read]).map_err(&local)?;
            received += read as u64;
            progress.advance(read as u64);
        }
        if let Err(error) = stream.finish() {
            progress.abandon();
            return Err(self.transfer_failure(what, &resume_hint(format!("download of {remote}")), error));
        }
        if received != size {
            progress.abandon();
            return Err(
                self.broken(resume_hint(format!("download of {remote} ended after {received} of {size} bytes")))
            );
        }
        let (file, sha256) = out.finish();
        file.sync_all().map_err(&local)?;
        progress.finish();
        Ok(sha256)
    }

    /// Uploads `local` under its base name without ever replacing a remote file; returns the
    /// remote path it was stored under (`/meme_copy1.png` when `/meme.png` existed). With
    /// `resume`, appends to the remote file of that name what it lacks of `local` instead.
    pub fn put(&mut self, local: &Path, resume: bool) -> Result<String, ClientError> {
        let name = local
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| ClientError::Usage(format!("{local:?} names no file")))?;
        let what = format!("put {name}");
        let local_error = local_error(local);
        let mut file = File::open(local).map_err(&local_error)?;
        let size = file.metadata().map_err(&local_error)?.len();
        if resume {
            return self.resume_put(&name, file, size, &what);
        }
        if !self.no_clobber {
            self.site(&format!("{NOCLOBBER} ON"), "turning no-clobber on")?;
            self.no_clobber = true;
        }
        let stream = self.ftp.put_with_stream(&name).map_err(|error| self.failure(&what, error))?;
        self.send(&name, &mut file, stream, 0, size, &what, local)?;
        self.site(STORED, &what)
    }

    /// `put -c`: appends (`APPE`) what the remote file lacks, then checks its size.
    fn resume_put(&mut self, name: &str, mut file: File, size: u64, what: &str) -> Result<String, ClientError> {
        let remote_size = match self.remote_size(name, what) {
            Ok(remote_size) => remote_size,
            Err(ClientError::Refused { code: 550, .. }) => 0,
            Err(error) => return Err(error),
        };
        if remote_size > size {
            return Err(ClientError::Usage(format!(
                "cannot continue {name}: the remote file has {remote_size} bytes, the local one {size}"
            )));
        }
        if remote_size < size {
            file.seek(SeekFrom::Start(remote_size))
                .map_err(|source| ClientError::Local { path: name.into(), source })?;
            let stream = self.ftp.append_with_stream(name).map_err(|error| self.failure(what, error))?;
            self.send(name, &mut file, stream, remote_size, size, what, Path::new(name))?;
        }
        let now = self.remote_size(name, what)?;
        if now != size {
            return Err(self.broken(format!("the remote {name} has {now} bytes after the upload, not {size}")));
        }
        self.absolute(name)
    }

    #[allow(clippy::too_many_arguments)]
    fn send<T: suppaftp::TlsStream>(
        &mut self,
        name: &str,
        file: &mut File,
        mut stream: suppaftp::TransferStream<T>,
        offset: u64,
        size: u64,
        what: &str,
        local: &Path,
    ) -> Result<(), ClientError> {
        let mut progress = Progress::start(name, size);
        progress.advance(offset);
        let mut buffer = vec![0; CHUNK];
        loop {
            let read = file.read(&mut buffer).map_err(local_error(local))?;
            if read == 0 {
                break;
            }
            if let Err(error) = stream.write_all(&buffer[..read]) {
                progress.abandon();
                return Err(self.broken(format!("upload of {name} broke off: {error} (put -c {name} continues it)")));
            }
            progress.advance(read as u64);
        }
        if let Err(error) = stream.finish() {
            progress.abandon();
            return Err(self.transfer_failure(what, &format!("upload of {name}"), error));
        }
        progress.finish();
        Ok(())
    }
}
