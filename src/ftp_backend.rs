//! [`FtpBackend`], the storage back-end every server of the cluster uses: it wraps
//! `unftp_sbe_fs::Filesystem` and forwards each operation to it.
//!
//! `unftp-sbe-fs` confines every path to the FTP folder through cap-std (no `..`, absolute path
//! or symlink escapes it), so this module never joins client paths onto host paths itself. It is
//! the place where file-service behaviour (atomic uploads, download counters) will be added.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use unftp_core::auth::DefaultUser;
use unftp_core::storage::{Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

/// The storage back-end of one FTP session, rooted at the FTP folder.
#[derive(Debug)]
pub struct FtpBackend {
    inner: Filesystem,
}

impl FtpBackend {
    /// Opens the FTP folder `root` for one session.
    pub fn open(root: &Path) -> io::Result<Self> {
        Ok(FtpBackend {
            inner: Filesystem::new(root)?,
        })
    }
}

#[async_trait]
impl StorageBackend<DefaultUser> for FtpBackend {
    type Metadata = Meta;

    fn enter(&mut self, user: &DefaultUser) -> io::Result<()> {
        StorageBackend::<DefaultUser>::enter(&mut self.inner, user)
    }

    fn name(&self) -> &str {
        "ftpcalc"
    }

    fn supported_features(&self) -> u32 {
        StorageBackend::<DefaultUser>::supported_features(&self.inner)
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> Result<Meta> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
        self.inner.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        self.inner.get(user, path, start_pos).await
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &DefaultUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        self.inner.put(user, input, path, start_pos).await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        self.inner.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        self.inner.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        from: P,
        to: P,
    ) -> Result<()> {
        self.inner.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        self.inner.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &DefaultUser, path: P) -> Result<()> {
        self.inner.cwd(user, path).await
    }
}
