//! [`FtpBackend`], the storage back-end of every session: it wraps `unftp_sbe_fs::Filesystem`,
//! forwards most operations to it, and adds what the file service promises: atomic and
//! optionally no-clobber uploads ([`upload`]), large-chunk sending ([`sending`]), download
//! counters ([`downloads`]), and hidden temporary files. [`SharedFolder`] is what all sessions
//! share.
//!
//! `unftp-sbe-fs` and cap-std confine every path to the FTP folder (no `..`, absolute path or
//! symlink escapes it), so this module never joins client paths onto host paths itself.

pub mod downloads;
pub mod sending;
pub mod upload;

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cap_std::fs::Dir;
use tokio::io::BufReader;
use unftp_core::auth::DefaultUser;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

use downloads::{normalize, Downloads};
use upload::{is_internal, relative, Upload};

/// Buffer size for file transfers: large buffers mean few trips to tokio's blocking pool.
const TRANSFER_BUFFER: usize = 1 << 20;

/// The FTP folder as every session shares it: its path, an open handle, the download counters
/// and the upload policy.
#[derive(Debug)]
pub struct SharedFolder {
    /// One `Filesystem` for every session: it holds one open directory handle, so sessions
    /// cost no file descriptor of their own for it.
    filesystem: Filesystem,
    dir: Arc<Dir>,
    /// Counts completed downloads.
    pub downloads: Arc<Downloads>,
    /// Whether every upload starts with no-clobber on (the operator's `--no-clobber`).
    pub no_clobber: bool,
}

impl SharedFolder {
    /// Opens the folder at `path` (which must exist).
    pub fn open(path: &Path, downloads: Arc<Downloads>, no_clobber: bool) -> io::Result<Self> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let filesystem = Filesystem::new(path)?;
        Ok(SharedFolder { filesystem, dir: Arc::new(dir), downloads, no_clobber })
    }

    /// Removes temporary upload files a crashed server left behind (on the blocking pool);
    /// returns how many.
    pub async fn remove_stale_uploads(&self) -> io::Result<usize> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || upload::remove_stale(&dir, 1_000_000)).await.map_err(io::Error::other)?
    }
}

/// The storage back-end of one FTP session, rooted at the FTP folder.
#[derive(Debug)]
pub struct FtpBackend {
    folder: Arc<SharedFolder>,
    peer: SocketAddr,
    no_clobber: AtomicBool,
    last_stored: Mutex<Option<String>>,
    challenge: Mutex<Option<String>>,
}

impl FtpBackend {
    /// Opens the shared folder for the session of the client at `peer`.
    pub fn open(folder: Arc<SharedFolder>, peer: SocketAddr) -> Self {
        let no_clobber = AtomicBool::new(folder.no_clobber);
        FtpBackend { folder, peer, no_clobber, last_stored: Mutex::default(), challenge: Mutex::default() }
    }

    fn inner(&self) -> &Filesystem {
        &self.folder.filesystem
    }

    /// Turns no-clobber uploads on or off for this session.
    pub fn set_no_clobber(&self, on: bool) {
        self.no_clobber.store(on, Ordering::SeqCst);
    }

    /// Whether this session's uploads are no-clobber.
    pub fn no_clobber(&self) -> bool {
        self.no_clobber.load(Ordering::SeqCst)
    }

    /// The FTP path (`/dir/name_copy1.txt`) of the last file this session stored.
    pub fn last_stored(&self) -> Option<String> {
        self.last_stored.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// A new single-use registration challenge for this session (replacing any earlier one).
    pub fn issue_challenge(&self) -> String {
        let challenge = crate::cluster::secret::random_hex(16);
        *self.challenge.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(challenge.clone());
        challenge
    }

    /// Takes this session's challenge: each one answers one request.
    pub fn take_challenge(&self) -> Option<String> {
        self.challenge.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    /// The download counters.
    pub fn downloads(&self) -> &Downloads {
        &self.folder.downloads
    }

    /// Opens the file at `path` for reading from `start_pos`, with a large buffer.
    async fn open_for_download(&self, path: &Path, start_pos: u64) -> Result<BufReader<tokio::fs::File>> {
        visible(path)?;
        let dir = self.folder.dir.clone();
        let target = relative(path);
        let file = blocking(move || {
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

    /// True when `path` (from the folder's root) is a regular file (checked on the blocking
    /// pool).
    pub async fn is_file(&self, path: &Path) -> bool {
        if is_internal(path) {
            return false;
        }
        let (dir, target) = (self.folder.dir.clone(), relative(path));
        blocking(move || dir.metadata(target)).await.is_ok_and(|metadata| metadata.is_file())
    }
}

/// Refuses paths of temporary upload files as if they did not exist.
fn visible(path: &Path) -> Result<()> {
    if is_internal(path) {
        return Err(Error::from(ErrorKind::PermanentFileNotAvailable));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(upload_error),
        Err(_) => Err(Error::from(ErrorKind::LocalError)),
    }
}

/// A file that cannot be opened is "not found" (550); anything later is a local error.
fn download_error(error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => {
            Error::new(ErrorKind::PermanentFileNotAvailable, error)
        }
        _ => Error::from(error),
    }
}

fn upload_error(error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput => {
            Error::new(ErrorKind::PermanentFileNotAvailable, error)
        }
        io::ErrorKind::AlreadyExists => Error::new(ErrorKind::FileNameNotAllowedError, error),
        _ => Error::from(error),
    }
}

#[async_trait]
impl StorageBackend<DefaultUser> for FtpBackend {
    type Metadata = Meta;

    fn enter(&mut self, _user: &DefaultUser) -> io::Result<()> {
        // `DefaultUser` has no home folder: every session is rooted at the FTP folder.
        Ok(())
    }

    fn name(&self) -> &str {
        "ftpcalc"
    }

    fn supported_features(&self) -> u32 {
        StorageBackend::<DefaultUser>::supported_features(self.inner())
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<Meta> {
        visible(path.as_ref())?;
        self.inner().metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
        visible(path.as_ref())?;
        let mut entries = self.inner().list(user, path).await?;
        entries.retain(|entry| !is_internal(&entry.path));
        Ok(entries)
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        _user: &DefaultUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let path = path.as_ref().to_path_buf();
        visible(&path)?;
        let dir = self.folder.dir.clone();
        let target = relative(&path);
        // Opening and one fstat are cheap path operations; `send_file` runs them in place.
        let open = move || {
            let file = dir.open(&target)?.into_std();
            let metadata = file.metadata()?;
            if metadata.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "a directory"));
            }
            Ok((file, metadata.len()))
        };
        let sent = sending::send_file(open, start_pos, output).await.map_err(download_error)?;
        let count = self.folder.downloads.record(&path, self.peer);
        tracing::debug!(path = %normalize(&path), peer = %self.peer, count, "download completed");
        Ok(sent)
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        Ok(Box::new(self.open_for_download(path.as_ref(), start_pos).await?))
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        _user: &DefaultUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        visible(path.as_ref())?;
        let dir = self.folder.dir.clone();
        let target = relative(path.as_ref());
        let (upload, file) = blocking(move || Upload::begin(dir, &target, start_pos)).await?;
        // Uploads keep tokio's file writer: a double-buffered writer (1 MiB chunks written on the
        // blocking pool while the next one arrives) was steadier per GiB but had runs at a
        // third of the speed with curl -T (bench/compare.sh, 2026-11-25), so it was dropped.
        let mut file = tokio::fs::File::from_std(file);
        // If this future is dropped or fails before the commit, `upload` removes the temporary file.
        let written = tokio::io::copy_buf(&mut BufReader::with_capacity(TRANSFER_BUFFER, input), &mut file).await?;
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        drop(file);
        let no_clobber = self.no_clobber();
        let stored = blocking(move || upload.commit(no_clobber)).await?;
        *self.last_stored.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(normalize(&stored));
        Ok(written)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        visible(path.as_ref())?;
        self.inner().del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        visible(path.as_ref())?;
        self.inner().mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, from: P, to: P) -> Result<()> {
        visible(from.as_ref())?;
        visible(to.as_ref())?;
        self.inner().rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        visible(path.as_ref())?;
        self.inner().rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        visible(path.as_ref())?;
        self.inner().cwd(user, path).await
    }
}
