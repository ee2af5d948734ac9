//! Where downloads land on the local disk: a partial file next to the target while the data
//! comes (kept after a cut-off for `get -c`), then the target name, never replacing a file
//! that is there (`NAME_copy1.EXT`, … as the server's no-clobber does) unless forced.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::ftp_backend::upload::copy_name;

/// Most `_copyN` names tried before giving up.
const MAX_COPIES: u32 = 10_000;

/// The partial file of a download of `name` into `folder`: `.NAME.ftpcalc-part`.
pub fn partial_path(folder: &Path, name: &str) -> PathBuf {
    folder.join(format!(".{name}.ftpcalc-part"))
}

/// Moves the complete `partial` to `folder/name`, or with `force` replaces what is there;
/// without it takes the first free name of `name`, `NAME_copy1.EXT`, … (with `link`, which
/// fails if the name appeared meanwhile, so nothing is ever replaced). Returns the path used.
pub fn place(partial: &Path, folder: &Path, name: &str, force: bool) -> io::Result<PathBuf> {
    let target = folder.join(name);
    if force {
        fs::rename(partial, &target)?;
        return Ok(target);
    }
    for copy in 0..=MAX_COPIES {
        let candidate = if copy == 0 { target.clone() } else { folder.join(copy_name(name, copy)) };
        match fs::hard_link(partial, &candidate) {
            Ok(()) => {
                fs::remove_file(partial)?;
                return Ok(candidate);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} and {MAX_COPIES} copies of it exist")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_never_replaces_a_local_file_unless_forced() {
        let dir = tempfile::tempdir().expect("folder");
        let folder = dir.path();
        for (body, expected) in [("one", "a.txt"), ("two", "a_copy1.txt"), ("three", "a_copy2.txt")] {
            let partial = partial_path(folder, "a.txt");
            fs::write(&partial, body).expect("write");
            assert_eq!(place(&partial, folder, "a.txt", false).expect("place"), folder.join(expected));
            assert!(!partial.exists());
        }
        assert_eq!(fs::read_to_string(folder.join("a.txt")).expect("read"), "one");
        let partial = partial_path(folder, "a.txt");
        fs::write(&partial, "forced").expect("write");
        assert_eq!(place(&partial, folder, "a.txt", true).expect("place"), folder.join("a.txt"));
        assert_eq!(fs::read_to_string(folder.join("a.txt")).expect("read"), "forced");
    }
}
