//! Atomic uploads into the FTP folder: data goes to a hidden temporary file next to the target
//! and is renamed into place only when the transfer completed, so an upload cut off half-way
//! leaves the old file intact and no half file under the target name. With no-clobber on, the
//! temporary file is hard-linked to the first free name of `NAME`, `NAME_copy1.EXT`,
//! `NAME_copy2.EXT`, …; `link()` fails atomically when a name exists, so racing uploads never
//! share a name.
//!
//! All functions here block (they are small filesystem calls); the storage back-end runs them
//! on tokio's blocking pool. Every path is relative to the FTP folder's `Dir`, which refuses
//! anything that escapes it.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptions};

/// Temporary upload files start with this; they are never listed nor reachable by clients.
pub const TEMP_PREFIX: &str = ".ftpcalc-upload.";
/// Most `_copyN` names tried before a no-clobber upload gives up.
pub const MAX_COPIES: u32 = 10_000;

/// True when `path` names (or passes through) a temporary upload file.
pub fn is_internal(path: &Path) -> bool {
    // Most paths do not hold the prefix anywhere: one substring search, no component walk.
    let bytes = path.as_os_str().as_encoded_bytes();
    if !bytes.windows(TEMP_PREFIX.len()).any(|window| window == TEMP_PREFIX.as_bytes()) {
        return false;
    }
    path.components().any(
        |component| matches!(component, Component::Normal(part) if part.to_string_lossy().starts_with(TEMP_PREFIX)),
    )
}

/// A client path made relative to the FTP folder (`/a/b` → `a/b`).
pub fn relative(path: &Path) -> PathBuf {
    // The usual path needs no walk through its components.
    if let Some(plain) = super::downloads::plain_parts(path) {
        return PathBuf::from(plain);
    }
    // Room for all of it at once: collecting grew the buffer component by component.
    let mut relative = PathBuf::with_capacity(path.as_os_str().len());
    for component in path.components() {
        if !matches!(component, Component::RootDir | Component::Prefix(_)) {
            relative.push(component);
        }
    }
    relative
}

/// `meme.png` → `meme_copy1.png` for `copy` 1; names without an extension get the suffix at the end.
pub fn copy_name(name: &str, copy: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => format!("{stem}_copy{copy}.{extension}"),
        _ => format!("{name}_copy{copy}"),
    }
}

/// An upload in progress: its temporary file, removed on drop unless committed.
#[derive(Debug)]
pub struct Upload {
    dir: Arc<Dir>,
    temp: PathBuf,
    target: PathBuf,
    /// Began with a prefix of the existing target (REST + STOR, APPE).
    resumed: bool,
    /// The target existed when the upload began.
    target_exists: bool,
    /// The size of the target when the upload began (0 if there was none).
    replaced_len: u64,
}

/// Largest file a commit replaces in place: removing a bigger one frees its pages in the
/// `rename`, which belongs on the blocking pool.
const REPLACED_IN_PLACE: u64 = 1 << 20;

impl Upload {
    /// Creates the temporary file for an upload to `target` (relative to the folder); when
    /// `start_pos` > 0 (REST + STOR, APPE) it starts with the first `start_pos` bytes of the
    /// existing target. Returns the upload and the file to write the data to.
    pub fn begin(dir: Arc<Dir>, target: &Path, start_pos: u64) -> io::Result<(Upload, std::fs::File)> {
        target.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let temp = target.with_file_name(format!("{TEMP_PREFIX}{}", unique_suffix()));
        let existing = dir.symlink_metadata(target).ok();
        let (target_exists, replaced_len) = (existing.is_some(), existing.map_or(0, |metadata| metadata.len()));
        let file = dir.open_with(&temp, OpenOptions::new().write(true).create_new(true))?;
        let mut upload =
            Upload { dir, temp, target: target.to_path_buf(), resumed: start_pos > 0, target_exists, replaced_len };
        let mut file = file.into_std();
        if start_pos > 0 {
            upload.copy_prefix(&mut file, start_pos)?;
        }
        Ok((upload, file))
    }

    /// True when the target existed when the upload began.
    pub fn target_exists(&self) -> bool {
        self.target_exists
    }

    /// True when [`commit`](Self::commit) costs about one system call: a link under a free
    /// name, or a rename over nothing or over a file of at most 1 MiB.
    pub fn commits_quickly(&self, no_clobber: bool) -> bool {
        (no_clobber && !self.resumed) || self.replaced_len <= REPLACED_IN_PLACE
    }

    fn copy_prefix(&mut self, file: &mut std::fs::File, start_pos: u64) -> io::Result<()> {
        let existing = self.dir.open(&self.target)?.into_std();
        let len = existing.metadata()?.len();
        if len < start_pos {
            let what = format!("restart offset {start_pos} is beyond the end of the file ({len} bytes)");
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, what));
        }
        let copied = io::copy(&mut existing.take(start_pos), file)?;
        debug_assert_eq!(copied, start_pos);
        file.flush()
    }

    /// Puts the finished file in place and returns the path (relative to the folder) it was
    /// stored under: the target itself (replacing any file there), or with `no_clobber` the
    /// first free name among the target and its `_copyN` variants. A resumed upload (it began
    /// with a prefix of the target) always replaces the target: it continues that file, so
    /// no-clobber does not apply.
    pub fn commit(mut self, no_clobber: bool) -> io::Result<PathBuf> {
        let linked = no_clobber && !self.resumed;
        let stored = if linked { self.link_first_free()? } else { self.replace()? };
        // The temporary name is gone (renamed) or a second name of the stored file (linked):
        // removing it frees nothing, so it goes here, not on the blocking pool from `drop`.
        let temp = std::mem::take(&mut self.temp);
        if linked {
            let _ = self.dir.remove_file(&temp);
        }
        Ok(stored)
    }

    fn replace(&self) -> io::Result<PathBuf> {
        self.dir.rename(&self.temp, &self.dir, &self.target)?;
        Ok(self.target.clone())
    }

    fn link_first_free(&self) -> io::Result<PathBuf> {
        let name = self.target.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        for copy in 0..=MAX_COPIES {
            let candidate =
                if copy == 0 { self.target.clone() } else { self.target.with_file_name(copy_name(&name, copy)) };
            match self.dir.hard_link(&self.temp, &self.dir, &candidate) {
                Ok(()) => {
                    // The data is now under its final name; the temporary name goes on drop.
                    return Ok(candidate);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{MAX_COPIES} copies of {name} exist")))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A committed upload has no temporary name left (`commit` took it); otherwise (failed
        // or cut off) the partial file must go. Dropped on an async worker thread (a transfer
        // cut off), the unlink, which frees the file's pages, runs on the blocking pool.
        if self.temp.as_os_str().is_empty() {
            return;
        }
        let (dir, temp) = (self.dir.clone(), std::mem::take(&mut self.temp));
        let remove = move || {
            let _ = dir.remove_file(&temp);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("{}.{nanos:x}.{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Removes temporary upload files left by a crashed server anywhere below `dir` (at most
/// `limit` directory entries are visited); returns how many it removed.
pub fn remove_stale(dir: &Dir, limit: usize) -> io::Result<usize> {
    let mut pending = vec![PathBuf::from(".")];
    let (mut visited, mut removed) = (0, 0);
    while let Some(folder) = pending.pop() {
        for entry in dir.read_dir(&folder)? {
            visited += 1;
            if visited > limit {
                return Ok(removed);
            }
            let entry = entry?;
            let path = folder.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) && dir.remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, Arc<Dir>) {
        let temp = tempfile::tempdir().expect("temporary folder");
        let dir = Dir::open_ambient_dir(temp.path(), cap_std::ambient_authority()).expect("open");
        (temp, Arc::new(dir))
    }

    fn upload(dir: &Arc<Dir>, target: &str, start_pos: u64, data: &[u8], no_clobber: bool) -> io::Result<PathBuf> {
        let (upload, mut file) = Upload::begin(dir.clone(), Path::new(target), start_pos)?;
        file.write_all(data)?;
        upload.commit(no_clobber)
    }

    fn names(dir: &Dir) -> Vec<String> {
        let mut names: Vec<String> = dir
            .entries()
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn copy_names() {
        assert_eq!(copy_name("meme.png", 1), "meme_copy1.png");
        assert_eq!(copy_name("a.tar.gz", 2), "a.tar_copy2.gz");
        assert_eq!(copy_name("README", 3), "README_copy3");
        assert_eq!(copy_name(".profile", 1), ".profile_copy1");
    }

    #[test]
    fn replace_and_no_clobber() {
        let (_temp, dir) = folder();
        assert_eq!(upload(&dir, "a.txt", 0, b"one", false).expect("upload"), Path::new("a.txt"));
        assert_eq!(upload(&dir, "a.txt", 0, b"two", false).expect("upload"), Path::new("a.txt"));
        assert_eq!(dir.read_to_string("a.txt").expect("read"), "two");
        assert_eq!(upload(&dir, "a.txt", 0, b"three", true).expect("upload"), Path::new("a_copy1.txt"));
        assert_eq!(upload(&dir, "a.txt", 0, b"four", true).expect("upload"), Path::new("a_copy2.txt"));
        assert_eq!(names(&dir), ["a.txt", "a_copy1.txt", "a_copy2.txt"]);
        assert_eq!(dir.read_to_string("a_copy2.txt").expect("read"), "four");
    }

    #[test]
    fn only_a_commit_over_a_big_file_is_slow() {
        let (_temp, dir) = folder();
        dir.write("small.txt", b"x").expect("write");
        dir.create("big.bin").and_then(|file| file.set_len(2 << 20)).expect("sparse file");
        let quickly = |target: &str, start_pos: u64, no_clobber: bool| {
            Upload::begin(dir.clone(), Path::new(target), start_pos).expect("begin").0.commits_quickly(no_clobber)
        };
        assert!(quickly("new.txt", 0, false), "a new name");
        assert!(quickly("small.txt", 0, false), "over a small file");
        assert!(!quickly("big.bin", 0, false), "over 2 MiB: their pages are freed in the rename");
        assert!(quickly("big.bin", 0, true), "no-clobber links under a free name");
        assert!(!quickly("big.bin", 1, true), "a resume replaces the file even under no-clobber");
        assert_eq!(names(&dir), ["big.bin", "small.txt"], "the abandoned uploads left nothing");
    }

    #[test]
    fn an_abandoned_upload_leaves_nothing() {
        let (_temp, dir) = folder();
        upload(&dir, "keep.txt", 0, b"original", false).expect("upload");
        let (upload, mut file) = Upload::begin(dir.clone(), Path::new("keep.txt"), 0).expect("begin");
        file.write_all(b"half").expect("write");
        drop(upload);
        assert_eq!(names(&dir), ["keep.txt"]);
        assert_eq!(dir.read_to_string("keep.txt").expect("read"), "original");
    }

    #[test]
    fn resume_keeps_the_prefix() {
        let (_temp, dir) = folder();
        upload(&dir, "r.bin", 0, b"abcdef", false).expect("upload");
        upload(&dir, "r.bin", 3, b"XYZ123", false).expect("resume");
        assert_eq!(dir.read_to_string("r.bin").expect("read"), "abcXYZ123");
        assert!(upload(&dir, "r.bin", 100, b"x", false).is_err(), "offset beyond the end");
        assert!(upload(&dir, "missing.bin", 1, b"x", false).is_err(), "nothing to resume");
        assert_eq!(names(&dir), ["r.bin"]);
    }

    #[test]
    fn a_resume_continues_the_file_even_under_no_clobber() {
        // Issue 9: REST + STOR and APPE under no-clobber stored NAME_copy1 and left the
        // original unchanged.
        let (_temp, dir) = folder();
        upload(&dir, "r.bin", 0, b"abc", true).expect("upload");
        assert_eq!(upload(&dir, "r.bin", 3, b"def", true).expect("resume"), Path::new("r.bin"));
        assert_eq!(dir.read_to_string("r.bin").expect("read"), "abcdef");
        assert_eq!(names(&dir), ["r.bin"]);
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let (_temp, dir) = folder();
        dir.create_dir("sub").expect("mkdir");
        dir.write(format!("sub/{TEMP_PREFIX}1"), b"x").expect("write");
        dir.write(format!("{TEMP_PREFIX}2"), b"x").expect("write");
        dir.write("real.txt", b"x").expect("write");
        assert_eq!(remove_stale(&dir, 1000).expect("walk"), 2);
        assert_eq!(names(&dir), ["real.txt", "sub"]);
        assert!(is_internal(Path::new("/sub/.ftpcalc-upload.1")));
        assert!(!is_internal(Path::new("/sub/file")));
        assert!(is_internal(Path::new("/.ftpcalc-upload.x/inside")), "a folder of that name too");
        assert!(!is_internal(Path::new("/sub/not.ftpcalc-upload.1")), "the prefix inside a name is not it");
        assert!(!is_internal(Path::new("/.ftpcalc-upload")), "nor a shorter name");
        assert_eq!(relative(Path::new("/a/b")), Path::new("a/b"));
        assert_eq!(relative(Path::new("//a/./b/../c/")), Path::new("a/b/../c"));
        assert_eq!(relative(Path::new("/")), Path::new(""));
        assert_eq!(relative(Path::new("a")), Path::new("a"));
    }

    /// [`relative`] by its definition: every component but the root, pushed in turn.
    fn relative_by_components(path: &Path) -> PathBuf {
        path.components().filter(|component| !matches!(component, Component::RootDir | Component::Prefix(_))).collect()
    }

    proptest::proptest! {
        #[test]
        fn relative_paths_agree_with_their_components(path in "/{0,2}(a|é|\\.|\\.\\.|x y|)(/{1,2}(a|é|\\.|\\.\\.|x y|)){0,4}/?") {
            let path = Path::new(&path);
            proptest::prop_assert_eq!(relative(path).into_os_string(), relative_by_components(path).into_os_string());
        }
    }
}
