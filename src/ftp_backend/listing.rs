//! Listings: which entries a folder shows ([`entries`]: sorted by name, temporary upload files
//! left out), `LIST` lines as people and clients expect them from a Unix FTP server (`ls -l`
//! columns with `ftp` as owner and group, not the wide numeric uid and gid columns of
//! libunftp's default, which also tell strangers the server's account numbers), `NLST` names,
//! and the `perm` fact of `MLST`/`MLSD`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::fs::Dir;
use chrono::{DateTime, Datelike, Utc};
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result};

use super::meta::{self, FileMeta};
use super::refusals::{allowed, not_available, visible};
use super::upload::{is_internal, relative};
use crate::accounts::{Permission, User};

/// The visible entries of the folder at `path` (from the FTP folder's root, `dir`) that `user`
/// may list, sorted by name, read in one trip to the blocking pool.
pub async fn entries(dir: &Arc<Dir>, user: &User, path: &Path) -> Result<Vec<Fileinfo<PathBuf, FileMeta>>> {
    visible(path)?;
    allowed(user, Permission::List)?;
    let (dir, folder) = (dir.clone(), relative(path));
    let mut entries = match tokio::task::spawn_blocking(move || meta::read_folder(&dir, &folder)).await {
        Ok(read) => read.map_err(not_available)?,
        Err(_) => return Err(Error::from(ErrorKind::LocalError)),
    };
    entries.retain(|entry| !is_internal(&entry.path));
    sort(&mut entries);
    Ok(entries)
}

/// A `LIST` listing: one [`long_line`] per entry, each ended by CRLF.
pub fn long_text<M: Metadata>(entries: &[Fileinfo<PathBuf, M>]) -> Vec<u8> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&long_line(entry));
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// An `NLST` listing: the names, each ended by CRLF, written as in `LIST` (`name_of`: a name
/// that is not UTF-8 reads with U+FFFD, control characters as `?`, so a file named
/// `a\nb` cannot add a line naming another file).
pub fn names_text<M: Metadata>(entries: &[Fileinfo<PathBuf, M>]) -> Vec<u8> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&name_of(&entry.path));
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// The `perm` fact of `MLST`/`MLSD`: what `user` may do with a folder or a file (RFC 3659
/// §7.5.5).
pub fn perm_fact(user: &User, is_dir: bool) -> String {
    let letters: &[(char, Permission)] = if is_dir {
        &[
            ('c', Permission::Upload),
            ('d', Permission::Delete),
            ('e', Permission::List),
            ('f', Permission::Rename),
            ('l', Permission::List),
            ('m', Permission::Mkdir),
            ('p', Permission::Delete),
        ]
    } else {
        &[
            ('a', Permission::Overwrite),
            ('d', Permission::Delete),
            ('f', Permission::Rename),
            ('r', Permission::Download),
            ('w', Permission::Overwrite),
        ]
    };
    letters.iter().filter(|(_, permission)| user.may(*permission)).map(|(letter, _)| *letter).collect()
}

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
