//! The SITE commands of the file service (RFC 959 §4.1.3), answered by every server:
//! `STATS [FILE]` (download counts), `NOCLOBBER [ON|OFF]` (this session's upload policy) and
//! `STORED` (the name this session's last upload was stored under).

use std::path::Path;

use libunftp::options::{Reply, ReplyCode};

use crate::ftp_backend::downloads::{normalize, MAX_LISTED};
use crate::ftp_backend::FtpBackend;
use crate::services::{ServiceError, MAX_WORD_CHARS};
use crate::site_cmds::{one_line, SiteError};

fn usage(usage: &str, message: &str) -> SiteError {
    SiteError::Service(ServiceError::Usage { message: message.to_string(), usage: usage.to_string() })
}

/// `STATS` → multi-line `200`, one `PATH COUNT` line per downloaded file (at most
/// [`MAX_LISTED`], the rest summed up in the last line); `STATS FILE` → `200 /FILE COUNT`
/// (paths from the FTP root).
pub async fn stats(storage: &FtpBackend, arguments: &str) -> Result<Reply, SiteError> {
    let path = arguments.trim();
    let folder = storage.folder();
    if path.is_empty() {
        // A user rooted at a home sees the files below it, by the paths they use.
        let (listed, total) =
            storage.downloads().first_under_everywhere(&folder.full_path(Path::new("/")), MAX_LISTED).await;
        let mut lines = vec!["Downloads since start (path count):".to_string()];
        for (full, count) in &listed {
            let path = folder.session_path(full).unwrap_or(full);
            lines.push(format!(" {} {count}", one_line(path)));
        }
        if total > listed.len() {
            lines.push(format!(
                "{total} files downloaded; the first {} are listed, ask with SITE STATS FILE for the others",
                listed.len()
            ));
        } else {
            lines.push(format!("{total} files downloaded"));
        }
        return Ok(Reply::new_multiline(ReplyCode::CommandOkay, lines));
    }
    if path.chars().count() > MAX_WORD_CHARS {
        return Err(usage("STATS [FILE]", "the path is too long"));
    }
    let count = storage.downloads().count_everywhere(Path::new(&folder.full_path(Path::new(path)))).await;
    if count == 0 && !storage.is_file(Path::new(path)).await {
        return Err(SiteError::NoSuchFile(normalize(Path::new(path))));
    }
    Ok(Reply::new_with_string(ReplyCode::CommandOkay, one_line(&format!("{} {count}", normalize(Path::new(path))))))
}

/// `NOCLOBBER ON|OFF` sets, and `NOCLOBBER` tells, this session's upload policy.
pub fn no_clobber(storage: &FtpBackend, arguments: &str) -> Result<Reply, SiteError> {
    match arguments.trim().to_ascii_uppercase().as_str() {
        "ON" => storage.set_no_clobber(true),
        "OFF" => storage.set_no_clobber(false),
        "" => {}
        _ => return Err(usage("NOCLOBBER [ON|OFF]", "NOCLOBBER takes ON or OFF")),
    }
    let state = if storage.no_clobber() { "on" } else { "off" };
    Ok(Reply::new_with_string(ReplyCode::CommandOkay, format!("no-clobber uploads {state}")))
}

/// `STORED` → `200 /PATH`, the name this session's last upload was stored under.
pub fn stored(storage: &FtpBackend) -> Result<Reply, SiteError> {
    match storage.last_stored() {
        Some(path) => Ok(Reply::new_with_string(ReplyCode::CommandOkay, one_line(&path))),
        None => Err(SiteError::NothingStored),
    }
}
