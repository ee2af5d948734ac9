//! [`FileMeta`]: unftp-sbe-fs's metadata with RFC 3659's `unique` fact, which it does not give:
//! the device and inode in hex (`unique=803g1c2a`-style, here `803.1c2a`), the same for two
//! names of one file and different for two files, as sync clients expect.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cap_std::fs::Dir;
use unftp_core::storage::{Metadata, Permissions, Result};
use unftp_sbe_fs::Meta;

/// A file's metadata and its `unique` fact.
#[derive(Debug)]
pub struct FileMeta {
    meta: Meta,
    unique: Option<String>,
}

impl FileMeta {
    /// `meta` with the `unique` fact `unique`.
    pub fn new(meta: Meta, unique: Option<String>) -> Self {
        FileMeta { meta, unique }
    }
}

impl Metadata for FileMeta {
    fn len(&self) -> u64 {
        self.meta.len()
    }

    fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }

    fn is_file(&self) -> bool {
        self.meta.is_file()
    }

    fn is_symlink(&self) -> bool {
        self.meta.is_symlink()
    }

    fn modified(&self) -> Result<SystemTime> {
        self.meta.modified()
    }

    fn gid(&self) -> u32 {
        self.meta.gid()
    }

    fn uid(&self) -> u32 {
        self.meta.uid()
    }

    fn links(&self) -> u64 {
        self.meta.links()
    }

    fn permissions(&self) -> Permissions {
        self.meta.permissions()
    }

    fn readlink(&self) -> Option<&Path> {
        self.meta.readlink()
    }

    fn unique(&self) -> Option<String> {
        self.unique.clone()
    }
}

/// The `unique` facts of `paths` (relative to `dir`), read on the blocking pool; `None` for a
/// path that cannot be read.
pub async fn uniques(dir: Arc<Dir>, paths: Vec<PathBuf>) -> Vec<Option<String>> {
    let count = paths.len();
    tokio::task::spawn_blocking(move || {
        use cap_std::fs::MetadataExt;
        paths
            .iter()
            .map(|path| {
                let metadata =
                    if path.as_os_str().is_empty() { dir.dir_metadata() } else { dir.symlink_metadata(path) };
                metadata.ok().map(|metadata| format!("{:x}.{:x}", metadata.dev(), metadata.ino()))
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![None; count])
}
