//! [`FileMeta`]: a file's metadata as the FTP commands need it, with RFC 3659's `unique` fact
//! (the device and inode in hex, `803.1c2a`: the same for two names of one file, different for
//! two files, as sync clients expect), read with one `lstat` (and a `readlink` for links).
//!
//! [`FileMeta::read`] and [`read_folder`] are blocking; the back-end calls them where it has
//! decided a blocking call may run (a single stat in place, a whole listing in one trip to the
//! blocking pool) instead of one blocking-pool hop per file, which dominated small transfers
//! and long listings (BENCHMARKS.md).

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cap_std::fs::{Dir, MetadataExt, PermissionsExt};
use unftp_core::storage::{Fileinfo, Metadata, Permissions, Result};

/// A file's metadata and its link target (the `unique` fact is made from the metadata when a
/// command asks for it).
#[derive(Debug)]
pub struct FileMeta {
    inner: cap_std::fs::Metadata,
    target: Option<PathBuf>,
}

impl FileMeta {
    /// Reads `path` (relative to `dir`; empty for `dir` itself) without following a final
    /// symbolic link.
    pub fn read(dir: &Dir, path: &Path) -> io::Result<FileMeta> {
        let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
        let inner = dir.symlink_metadata(path)?;
        let target = if inner.is_symlink() { dir.read_link_contents(path).ok() } else { None };
        Ok(FileMeta::new(inner, target))
    }

    /// The metadata of an open file (what a final symbolic link pointed to).
    pub fn of_open_file(inner: cap_std::fs::Metadata) -> FileMeta {
        FileMeta::new(inner, None)
    }

    fn new(inner: cap_std::fs::Metadata, target: Option<PathBuf>) -> FileMeta {
        FileMeta { inner, target }
    }
}

/// The entries of the folder `path` (relative to `dir`) with their metadata, in one pass
/// (blocking). An entry that vanishes while it is read is left out.
pub fn read_folder(dir: &Dir, path: &Path) -> io::Result<Vec<Fileinfo<PathBuf, FileMeta>>> {
    let folder = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    let mut entries = Vec::new();
    for entry in dir.read_dir(folder)? {
        let entry = entry?;
        let name: PathBuf = entry.file_name().into();
        match FileMeta::read(dir, &folder.join(&name)) {
            Ok(metadata) => entries.push(Fileinfo { path: name, metadata }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(entries)
}

impl Metadata for FileMeta {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn is_dir(&self) -> bool {
        self.inner.is_dir()
    }

    fn is_file(&self) -> bool {
        self.inner.is_file()
    }

    fn is_symlink(&self) -> bool {
        self.inner.file_type().is_symlink()
    }

    fn modified(&self) -> Result<SystemTime> {
        self.inner.modified().map(cap_std::time::SystemTime::into_std).map_err(Into::into)
    }

    fn gid(&self) -> u32 {
        self.inner.gid()
    }

    fn uid(&self) -> u32 {
        self.inner.uid()
    }

    fn links(&self) -> u64 {
        self.inner.nlink()
    }

    fn permissions(&self) -> Permissions {
        Permissions(self.inner.permissions().mode())
    }

    fn readlink(&self) -> Option<&Path> {
        self.target.as_deref()
    }

    fn unique(&self) -> Option<String> {
        Some(format!("{:x}.{:x}", self.inner.dev(), self.inner.ino()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_links_and_unique_facts_come_from_one_read() {
        let folder = tempfile::tempdir().expect("temporary folder");
        std::fs::write(folder.path().join("a.txt"), b"12345").expect("write");
        std::fs::hard_link(folder.path().join("a.txt"), folder.path().join("b.txt")).expect("link");
        std::fs::write(folder.path().join("c.txt"), b"").expect("write");
        std::fs::create_dir(folder.path().join("sub")).expect("mkdir");
        std::os::unix::fs::symlink("a.txt", folder.path().join("l")).expect("symlink");
        let dir = Dir::open_ambient_dir(folder.path(), cap_std::ambient_authority()).expect("open");
        let a = FileMeta::read(&dir, Path::new("a.txt")).expect("a");
        assert!(a.is_file() && a.len() == 5 && a.links() == 2);
        let b = FileMeta::read(&dir, Path::new("b.txt")).expect("b");
        assert_eq!(a.unique(), b.unique(), "two names of one file");
        assert_ne!(a.unique(), FileMeta::read(&dir, Path::new("c.txt")).expect("c").unique());
        let link = FileMeta::read(&dir, Path::new("l")).expect("link");
        assert!(link.is_symlink() && link.readlink() == Some(Path::new("a.txt")));
        assert!(FileMeta::read(&dir, Path::new("")).expect("the folder").is_dir());
        assert!(FileMeta::read(&dir, Path::new("missing")).is_err());
        assert!(FileMeta::read(&dir, Path::new("../outside")).is_err(), "never outside the folder");
        let mut names: Vec<String> = read_folder(&dir, Path::new(""))
            .expect("listing")
            .into_iter()
            .map(|entry| entry.path.to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.txt", "b.txt", "c.txt", "l", "sub"]);
        assert!(read_folder(&dir, Path::new("a.txt")).is_err(), "a file is not a folder");
    }
}
