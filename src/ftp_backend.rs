//! [`FtpBackend`], the storage back-end of every session: it wraps `unftp_sbe_fs::Filesystem`,
//! forwards most operations to it, and adds what the file service promises: atomic and
//! optionally no-clobber uploads ([`upload`]) received in large chunks ([`receiving`]),
//! large-chunk sending ([`sending`]), download counters ([`downloads`]), and hidden temporary
//! files. [`SharedFolder`] is what all sessions
//! share.
//!
//! `unftp-sbe-fs` and cap-std confine every path to the FTP folder (no `..`, absolute path or
//! symlink escapes it), so this module never joins client paths onto host paths itself.

pub mod console;
pub mod downloads;
pub mod folder;
pub mod listing;
pub mod meta;
pub mod prepared;
pub mod receiving;
pub mod refusals;
pub mod sending;
pub mod transfer;
pub mod upload;

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use meta::FileMeta;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::Filesystem;

use crate::accounts::{Permission, User};
use crate::telemetry::metrics::Direction;
use crate::telemetry::{SessionTag, Telemetry};
use downloads::{normalize, Downloads};
pub use folder::{FolderError, Folders, SharedFolder};
use prepared::Prepared;
use refusals::{allowed, blocking, download_error, in_place, not_available, visible};
use transfer::{Counted, Watch};
use upload::{is_internal, relative, Upload};

/// The storage back-end of one FTP session: rooted at the FTP folder, then (at login) at the
/// user's home, and checking the user's permissions on every operation.
#[derive(Debug)]
pub struct FtpBackend {
    folders: Arc<Folders>,
    folder: Arc<SharedFolder>,
    peer: SocketAddr,
    no_clobber: AtomicBool,
    last_stored: Mutex<Option<String>>,
    challenge: Mutex<Option<String>>,
    telemetry: Option<Arc<Telemetry>>,
    tag: SessionTag,
    /// The file of the download about to start (`metadata_for_download` to `get_into`).
    prepared: Prepared,
}

impl FtpBackend {
    /// The back-end of the session of the client at `peer`, rooted at the FTP folder until
    /// the user logs in.
    pub fn open(folders: Arc<Folders>, peer: SocketAddr) -> Self {
        let folder = folders.root.clone();
        let no_clobber = AtomicBool::new(folder.no_clobber);
        FtpBackend {
            folders,
            folder,
            peer,
            no_clobber,
            last_stored: Mutex::default(),
            challenge: Mutex::default(),
            telemetry: None,
            tag: SessionTag::none(),
            prepared: Prepared::default(),
        }
    }

    /// Reports this session's transfers to `telemetry` and logs them in the session's span.
    pub fn observed(mut self, telemetry: Arc<Telemetry>, tag: SessionTag) -> Self {
        self.telemetry = Some(telemetry);
        self.tag = tag;
        self
    }

    /// The session's tag (its span for log lines).
    pub fn tag(&self) -> &SessionTag {
        &self.tag
    }

    /// The client's address (of its control connection).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The folder this session is rooted at.
    pub fn folder(&self) -> &SharedFolder {
        &self.folder
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

    /// The download counters (of the whole cluster; paths from the FTP folder's root).
    pub fn downloads(&self) -> &Downloads {
        &self.folder.downloads
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

#[async_trait]
impl StorageBackend<User> for FtpBackend {
    type Metadata = FileMeta;

    /// Roots the session at the user's home (opened at start-up).
    fn enter(&mut self, user: &User) -> io::Result<()> {
        self.folder = self
            .folders
            .home(user.home.as_deref())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("the home of {} is not open", user.name)))?;
        Ok(())
    }

    fn name(&self) -> &str {
        "ftpcalc"
    }

    fn supported_features(&self) -> u32 {
        StorageBackend::<User>::supported_features(self.inner())
            | unftp_core::storage::FEATURE_MFMT
            | unftp_core::storage::FEATURE_UNIQUE
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, _user: &User, path: P) -> Result<FileMeta> {
        visible(path.as_ref())?;
        // One lstat, in place: libunftp asks for `SIZE`, `MDTM`, `MLST`, `RNFR`, `STAT` and
        // `APPE` (a `RETR` asks `metadata_for_download`), and a trip to the blocking pool cost
        // more than the call (see the invariants in ARCHITECTURE.md and BENCHMARKS.md).
        FileMeta::read(&self.folder.dir, &relative(path.as_ref())).map_err(not_available)
    }

    /// Opens the file, keeps it for the `get_into` that follows (one open per download), and
    /// answers from it; anything it cannot open is answered as `metadata` would.
    async fn metadata_for_download<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<FileMeta> {
        let path = path.as_ref();
        visible(path)?;
        match self.prepared.open(&self.folder.dir, path, &relative(path)) {
            Ok(metadata) => Ok(FileMeta::of_open_file(metadata)),
            Err(_) => self.metadata(user, path).await,
        }
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, FileMeta>>> {
        listing::entries(&self.folder.dir, user, path.as_ref()).await
    }

    /// `LIST`: a folder's entries, or a file's own line (RFC 959: "If the pathname specifies a
    /// file then the server should send current information on the file"; it was `550 is not a
    /// folder`, and lftp's `ls FILE` failed), named by its last part as vsftpd does.
    async fn list_fmt<P>(&self, user: &User, path: P) -> Result<std::io::Cursor<Vec<u8>>>
    where
        P: AsRef<Path> + Send + Debug,
        FileMeta: 'static,
    {
        let path = path.as_ref();
        let entries = match listing::entries(&self.folder.dir, user, path).await {
            Err(error) if error.get_io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotADirectory) => {
                let metadata = self.metadata(user, path).await?;
                let name = path.file_name().map(PathBuf::from).unwrap_or_default();
                vec![Fileinfo { path: name, metadata }]
            }
            listed => listed?,
        };
        Ok(std::io::Cursor::new(listing::long_text(&entries)))
    }

    /// `NLST`: the names, one per line. A name that is not UTF-8 (a file made on the disk by
    /// other means) reads with U+FFFD, as in `LIST` and `MLSD` (the default wrote an empty line).
    async fn nlst<P>(&self, user: &User, path: P) -> std::result::Result<std::io::Cursor<Vec<u8>>, io::Error>
    where
        P: AsRef<Path> + Send + Debug,
        FileMeta: 'static,
    {
        let entries = listing::entries(&self.folder.dir, user, path.as_ref())
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::Other))?;
        Ok(std::io::Cursor::new(listing::names_text(&entries)))
    }

    async fn list_vec<P>(&self, user: &User, path: P) -> Result<Vec<String>>
    where
        P: AsRef<Path> + Send + Debug,
        FileMeta: 'static,
    {
        Ok(listing::entries(&self.folder.dir, user, path.as_ref()).await?.iter().map(listing::long_line).collect())
    }

    async fn get_into<'a, P, W: ?Sized>(&self, user: &User, path: P, start_pos: u64, output: &'a mut W) -> Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let path = path.as_ref();
        // Usually opened already, for the metadata before `150` (`metadata_for_download`);
        // taken first, so that a refusal below does not leave it open.
        let prepared = self.prepared.take(path);
        visible(path)?;
        allowed(user, Permission::Download)?;
        let dir = &self.folder.dir;
        let full = self.folder.full_path(path);
        let bytes = AtomicU64::new(0);
        let watch =
            Watch::start(self.telemetry.as_deref(), &self.tag, Direction::Download, &*full, user, self.peer, &bytes);
        let mut opened = false;
        let opened_here = &mut opened;
        // Opening and one fstat are cheap path operations; `send_file` runs them in place.
        let open = move || {
            let (file, len) = match prepared {
                Some(kept) => kept,
                // (The path relative to the folder only here: most downloads have their file.)
                None => {
                    let file = dir.open(relative(path))?.into_std();
                    let metadata = file.metadata()?;
                    if metadata.is_dir() {
                        return Err(io::Error::new(io::ErrorKind::NotFound, "a directory"));
                    }
                    (file, metadata.len())
                }
            };
            *opened_here = true;
            Ok((file, len))
        };
        let mut counted = Counted::new(output, &bytes);
        let sent = sending::send_file(open, start_pos, &mut counted).await;
        match (&sent, opened) {
            (_, false) => watch.forget(),
            (outcome, true) => watch.finish(outcome.is_ok()),
        }
        let sent = sent.map_err(download_error)?;
        let count = self.folder.downloads.record_download(&full, self.peer).await;
        tracing::debug!(path = full.as_str(), peer = %self.peer, count, "download completed");
        Ok(sent)
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        allowed(user, Permission::Download)?;
        Ok(Box::new(sending::open_buffered(&self.folder.dir, path.as_ref(), start_pos).await?))
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &User,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        visible(path.as_ref())?;
        allowed(user, Permission::Upload)
            .or_else(|refused| allowed(user, Permission::Overwrite).map_err(|_| refused))?;
        let dir = self.folder.dir.clone();
        let target = relative(path.as_ref());
        // A new upload is a stat and a create, run in place; a resumed one copies the start of
        // the existing file first, on the blocking pool.
        let (upload, file) = if start_pos == 0 {
            in_place(|| Upload::begin(dir, &target, 0))?
        } else {
            blocking(move || Upload::begin(dir, &target, start_pos)).await?
        };
        let no_clobber = self.no_clobber();
        // Replacing or continuing an existing file needs `overwrite`; a new name (or a
        // no-clobber copy) needs `upload`.
        let replaces = upload.target_exists() && (start_pos > 0 || !no_clobber);
        allowed(user, if replaces { Permission::Overwrite } else { Permission::Upload })?;
        let full = self.folder.full_path(path.as_ref());
        let bytes = AtomicU64::new(0);
        let mut watch =
            Watch::start(self.telemetry.as_deref(), &self.tag, Direction::Upload, full, user, self.peer, &bytes);
        let mut input = Counted::new(input, &bytes);
        // If this future is dropped or fails before the commit, `upload` removes the temporary
        // file, and `watch` records an incomplete upload.
        let (file, written) = receiving::receive_file(&mut input, file).await?;
        drop(file);
        let stored = if upload.commits_quickly(no_clobber) {
            in_place(|| upload.commit(no_clobber))?
        } else {
            blocking(move || upload.commit(no_clobber)).await?
        };
        let stored = normalize(&stored);
        watch.rename(self.folder.full_path(Path::new(&stored)));
        watch.finish(true);
        *self.last_stored.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(stored);
        Ok(written)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        visible(path.as_ref())?;
        allowed(user, Permission::Delete)?;
        self.inner().del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        visible(path.as_ref())?;
        allowed(user, Permission::Mkdir)?;
        self.inner().mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(&self, user: &User, from: P, to: P) -> Result<()> {
        visible(from.as_ref())?;
        visible(to.as_ref())?;
        allowed(user, Permission::Rename)?;
        self.inner().rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        visible(path.as_ref())?;
        allowed(user, Permission::Delete)?;
        // The folder's root is not a folder in it (its removal failed as `451 local error`).
        if relative(path.as_ref()).as_os_str().is_empty() {
            return Err(Error::new(ErrorKind::PermissionDenied, io::Error::other("the top folder cannot be removed")));
        }
        self.inner().rmd(user, path).await
    }

    /// The `perm` fact of `MLST`/`MLSD` ([`listing::perm_fact`]).
    fn perm_fact(&self, user: &User, is_dir: bool) -> Option<String> {
        Some(listing::perm_fact(user, is_dir))
    }

    /// `MFMT`: sets the file's modification time (needs the `chtimes` permission).
    async fn set_modified<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        modified: SystemTime,
    ) -> Result<()> {
        visible(path.as_ref())?;
        allowed(user, Permission::Chtimes)?;
        let (dir, target) = (self.folder.dir.clone(), relative(path.as_ref()));
        blocking(move || dir.open(&target)?.into_std().set_modified(modified)).await.map_err(|error| {
            match error.kind() {
                ErrorKind::FileNameNotAllowedError => Error::from(ErrorKind::PermanentFileNotAvailable),
                _ => error,
            }
        })
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, _user: &User, path: P) -> Result<()> {
        visible(path.as_ref())?;
        // Opening the folder (one openat, in place) says whether it exists, is a folder and may
        // be read; unftp-sbe-fs listed the whole folder, one blocking-pool trip per entry.
        let folder = relative(path.as_ref());
        let folder = if folder.as_os_str().is_empty() { PathBuf::from(".") } else { folder };
        self.folder.dir.open_dir(&folder).map(drop).map_err(not_available)
    }
}
