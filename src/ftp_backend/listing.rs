//! `LIST` lines as people and clients expect them from a Unix FTP server: `ls -l` columns with
//! `ftp` as owner and group (not the wide numeric uid and gid columns of libunftp's default,
//! which also tell strangers the server's account numbers), entries sorted by name.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Datelike, Utc};
use unftp_core::storage::{Fileinfo, Metadata};

/// One `ls -l` line (without the line end): type and permissions, links, owner, group, size,
/// modification time (`Nov 25 18:49` this year, `Nov 25  2025` before), name, and for a
/// symbolic link ` -> target`.
pub fn long_line<M: Metadata>(entry: &Fileinfo<std::path::PathBuf, M>) -> String {
    let metadata = &entry.metadata;
    let kind = if metadata.is_dir() {
        'd'
    } else if metadata.is_symlink() {
        'l'
    } else {
        '-'
    };
    let modified = metadata
        .modified()
        .map(|modified| {
            let modified = DateTime::<Utc>::from(modified);
            if modified.year() == Utc::now().year() {
                modified.format("%b %d %H:%M").to_string()
            } else {
                modified.format("%b %d  %Y").to_string()
            }
        })
        .unwrap_or_else(|_| "Jan 01  1970".to_string());
    let name = name_of(&entry.path);
    let mut line = format!(
        "{kind}{} {:>3} ftp      ftp      {:>12} {modified} {name}",
        metadata.permissions(),
        metadata.links(),
        metadata.len()
    );
    if let Some(target) = metadata.is_symlink().then(|| metadata.readlink()).flatten() {
        let _ = write!(line, " -> {}", target.display());
    }
    line
}

/// The last component of `path` with control characters replaced, for a listing line.
fn name_of(path: &Path) -> String {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    name.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Sorts a listing by name (byte order, as `LC_ALL=C ls` does).
pub fn sort<M: Metadata>(entries: &mut [Fileinfo<std::path::PathBuf, M>]) {
    entries.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
}
