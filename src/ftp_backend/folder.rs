//! The folders sessions are rooted at: [`SharedFolder`] (one opened folder with what every
//! session in it shares) and [`Folders`] (the FTP folder and each user's home inside it, opened
//! once at start-up, so that sessions cost no descriptor of their own).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::fs::Dir;
use unftp_sbe_fs::Filesystem;

use crate::ftp_backend::downloads::{normalize, normalize_joined, Downloads};
use crate::ftp_backend::upload;

/// One opened folder: its cap-std handle, a `Filesystem` over it, where it sits in the FTP
/// folder, the download counters and the upload policy.
#[derive(Debug)]
pub struct SharedFolder {
    /// One `Filesystem` for every session rooted here: it holds one open directory handle.
    pub(crate) filesystem: Filesystem,
    pub(crate) dir: Arc<Dir>,
    /// Where this folder is inside the FTP folder (empty for the FTP folder itself).
    pub prefix: PathBuf,
    /// Counts completed downloads (shared by all folders of a cluster).
    pub downloads: Arc<Downloads>,
    /// Whether every upload starts with no-clobber on (the operator's `--no-clobber`).
    pub no_clobber: bool,
}

impl SharedFolder {
    /// Opens the folder at `path` (which must exist), found at `prefix` inside the FTP folder.
    pub fn open(path: &Path, prefix: PathBuf, downloads: Arc<Downloads>, no_clobber: bool) -> io::Result<Self> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let filesystem = Filesystem::new(path)?;
        Ok(SharedFolder { filesystem, dir: Arc::new(dir), prefix, downloads, no_clobber })
    }

    /// A session path (`/a.txt`) as a path from the FTP folder's root (`/alice/a.txt`).
    pub fn full_path(&self, path: &Path) -> String {
        normalize_joined(&self.prefix, path)
    }

    /// A path from the FTP folder's root as this folder's sessions see it, if it is inside.
    pub fn session_path<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.prefix.as_os_str().is_empty() {
            return Some(full);
        }
        let prefix = normalize(&self.prefix);
        let rest = full.strip_prefix(&prefix)?;
        rest.starts_with('/').then_some(rest)
    }

    /// Removes temporary upload files a crashed server left behind (on the blocking pool);
    /// returns how many.
    pub async fn remove_stale_uploads(&self) -> io::Result<usize> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || upload::remove_stale(&dir, 1_000_000)).await.map_err(io::Error::other)?
    }
}

/// The FTP folder and the homes inside it.
#[derive(Debug)]
pub struct Folders {
    /// The FTP folder itself.
    pub root: Arc<SharedFolder>,
    homes: HashMap<PathBuf, Arc<SharedFolder>>,
}

/// Why a folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The folder cannot be created or opened.
    #[error("cannot use {path:?}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A home that leads outside the FTP folder (through a symbolic link).
    #[error("home {0:?} leads outside the FTP folder")]
    Outside(PathBuf),
}

impl Folders {
    /// Creates (if missing) and opens the FTP folder at `root` and each of `homes` (relative
    /// paths inside it, created if missing). Blocking: call it on the blocking pool.
    pub fn open(
        root: &Path,
        homes: &[PathBuf],
        downloads: Arc<Downloads>,
        no_clobber: bool,
    ) -> Result<Self, FolderError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FolderError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io_error(root))?;
        let canonical_root = root.canonicalize().map_err(io_error(root))?;
        let folder = SharedFolder::open(&canonical_root, PathBuf::new(), downloads.clone(), no_clobber)
            .map_err(io_error(root))?;
        let mut opened = HashMap::new();
        for home in homes {
            let path = canonical_root.join(home);
            // Created through the root's cap-std handle, which refuses anything outside it.
            folder.dir.create_dir_all(home).map_err(io_error(&path))?;
            let canonical = path.canonicalize().map_err(io_error(&path))?;
            if !canonical.starts_with(&canonical_root) {
                return Err(FolderError::Outside(home.clone()));
            }
            let shared =
                SharedFolder::open(&canonical, home.clone(), downloads.clone(), no_clobber).map_err(io_error(&path))?;
            opened.insert(home.clone(), Arc::new(shared));
        }
        Ok(Folders { root: Arc::new(folder), homes: opened })
    }

    /// The folder a session of a user with `home` is rooted at.
    pub fn home(&self, home: Option<&Path>) -> Option<Arc<SharedFolder>> {
        match home {
            None => Some(self.root.clone()),
            Some(home) => self.homes.get(home).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_are_created_inside_the_folder_and_paths_are_mapped() {
        let temp = tempfile::tempdir().expect("folder");
        let downloads = Arc::new(Downloads::new(|_| {}));
        let folders = Folders::open(temp.path(), &[PathBuf::from("alice")], downloads.clone(), false).expect("open");
        assert!(temp.path().join("alice").is_dir());
        let alice = folders.home(Some(Path::new("alice"))).expect("a home");
        assert_eq!(alice.full_path(Path::new("/docs/a.txt")), "/alice/docs/a.txt");
        assert_eq!(alice.session_path("/alice/docs/a.txt"), Some("/docs/a.txt"));
        assert_eq!(alice.session_path("/alicex/a.txt"), None);
        assert_eq!(folders.root.session_path("/bob/b.txt"), Some("/bob/b.txt"));
        assert!(folders.home(Some(Path::new("bob"))).is_none());
        let outside = tempfile::tempdir().expect("folder");
        std::os::unix::fs::symlink(outside.path(), temp.path().join("escape")).expect("symlink");
        assert!(Folders::open(temp.path(), &[PathBuf::from("escape")], downloads, false).is_err());
    }
}
