//! [`Prepared`]: the file of a download, opened when libunftp asks for its metadata before a
//! `RETR` (to answer `550` or `150` with the size), and kept for the `get_into` that follows at
//! once: one open and one stat per download instead of two each (three system calls and a
//! second walk of the path fewer per small file).
//!
//! Only regular files are kept, one per session, and only from the metadata asked for a
//! download (`metadata_for_download`); `get_into` takes whatever is kept, so nothing stays open
//! past the download it was opened for, unless the data connection failed in between (then it
//! goes with the next download or the session).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

/// The file kept for the next download of a session (see the module's documentation).
#[derive(Debug, Default)]
pub struct Prepared(Mutex<Option<Box<Opened>>>);

/// A regular file opened for reading, for the download of `path` (the FTP path as libunftp
/// gave it).
#[derive(Debug)]
struct Opened {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Prepared {
    /// Opens `target` (relative to `dir`) for reading, without waiting for a writer if it is a
    /// FIFO, and keeps it for the download of `path` when it is a regular file; its metadata
    /// (of what a final symbolic link points to, as the download itself would read) either way.
    pub fn open(&self, dir: &Dir, path: &Path, target: &Path) -> io::Result<cap_std::fs::Metadata> {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK);
        let file = dir.open_with(target, &options)?;
        let metadata = file.metadata()?;
        let kept = metadata
            .is_file()
            .then(|| Box::new(Opened { path: path.to_path_buf(), file: file.into_std(), len: metadata.len() }));
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = kept;
        Ok(metadata)
    }

    /// The file kept for `path` and its length, if the last one prepared was for `path`;
    /// whatever was kept is let go.
    pub fn take(&self, path: &Path) -> Option<(File, u64)> {
        let kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()?;
        (kept.path == path).then_some((kept.file, kept.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn folder() -> (tempfile::TempDir, Dir) {
        let temp = tempfile::tempdir().expect("folder");
        let dir = Dir::open_ambient_dir(temp.path(), cap_std::ambient_authority()).expect("open");
        (temp, dir)
    }

    #[test]
    fn a_regular_file_is_kept_for_its_own_path_once() {
        let (_temp, dir) = folder();
        dir.write("f.txt", b"contents").expect("write");
        let prepared = Prepared::default();
        let metadata = prepared.open(&dir, Path::new("/f.txt"), Path::new("f.txt")).expect("open");
        assert_eq!(metadata.len(), 8);
        assert!(prepared.take(Path::new("/other.txt")).is_none(), "another path gets nothing");
        assert!(prepared.take(Path::new("/f.txt")).is_none(), "and what was kept is gone");
        prepared.open(&dir, Path::new("/f.txt"), Path::new("f.txt")).expect("open");
        let (mut file, len) = prepared.take(Path::new("/f.txt")).expect("kept");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read");
        assert_eq!((text.as_str(), len), ("contents", 8));
        assert!(prepared.take(Path::new("/f.txt")).is_none(), "taken once");
    }

    #[test]
    fn folders_fifos_and_missing_files_are_not_kept() {
        let (temp, dir) = folder();
        dir.create_dir("sub").expect("mkdir");
        let prepared = Prepared::default();
        assert!(prepared.open(&dir, Path::new("/sub"), Path::new("sub")).expect("open").is_dir());
        assert!(prepared.take(Path::new("/sub")).is_none());
        let made = std::process::Command::new("mkfifo").arg(temp.path().join("fifo")).status().expect("mkfifo runs");
        assert!(made.success(), "mkfifo");
        let metadata = prepared.open(&dir, Path::new("/fifo"), Path::new("fifo")).expect("opened without a writer");
        assert!(!metadata.is_file());
        assert!(prepared.take(Path::new("/fifo")).is_none());
        assert_eq!(
            prepared.open(&dir, Path::new("/gone"), Path::new("gone")).expect_err("missing").kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_link_out_of_the_folder_is_refused() {
        let (temp, dir) = folder();
        let outside = tempfile::tempdir().expect("folder");
        std::fs::write(outside.path().join("secret"), b"secret").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), temp.path().join("link")).expect("symlink");
        let prepared = Prepared::default();
        assert!(prepared.open(&dir, Path::new("/link"), Path::new("link")).is_err());
        assert!(prepared.take(Path::new("/link")).is_none());
    }
}
