//! [`TransferLog`]: one line per upload and download, complete or not, in the classic xferlog
//! format of wu-ftpd, ProFTPD and vsftpd, so the tools people already run on xferlogs read it:
//!
//! ```text
//! Wed Nov 25 18:54:48 2026 1 127.0.0.1 1048576 /docs/a_b.txt b _ o r alice ftp 0 * c
//! ```
//!
//! current time (local, `ctime` form), transfer time (whole seconds, rounded up), remote host
//! (the client's address), bytes, path (from the FTP folder's root; spaces and control
//! characters replaced by `_`, as ProFTPD does), transfer type (`b`: libunftp sends every file
//! as is), special action (`_`), direction (`o` out, `i` in), access mode (`a` anonymous,
//! `r` real), user name (spaces and control characters as `_`), service (`ftp`),
//! authentication method (`0`), authenticated user id (`*`), completion status (`c`
//! complete, `i` incomplete).
//!
//! A [`LineWriter`] (a thread of its own, writing in batches) appends the lines: a slow disk
//! never slows a transfer; lines that find its buffer full are dropped and counted in a warning.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accounts::user::Kind;
use crate::accounts::User;
use crate::telemetry::line_writer::{LineWriter, Report};
use crate::telemetry::metrics::Direction;

/// The transfer log: a file the lines are appended to.
#[derive(Debug)]
pub struct TransferLog {
    path: PathBuf,
    writer: LineWriter,
}

/// One transfer, as the log records it.
#[derive(Debug)]
pub struct Transfer<'a> {
    /// How long it took.
    pub duration: Duration,
    /// The client's address.
    pub remote: IpAddr,
    /// Bytes moved.
    pub bytes: u64,
    /// The file's path from the FTP folder's root.
    pub path: &'a str,
    /// Which way.
    pub direction: Direction,
    /// Who.
    pub user: &'a User,
    /// Whether it completed.
    pub complete: bool,
}

impl TransferLog {
    /// Opens (creating it with mode 0640 if missing) `path` for appending and starts the
    /// writer thread.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = open_append(path)?;
        let shown = path.display().to_string();
        let report = move |report: Report| match report {
            Report::Failed(error) => tracing::warn!(%error, path = %shown, "cannot write the transfer log"),
            Report::Dropped(lost) => tracing::warn!(lost, "transfer log lines dropped: the disk was not fast enough"),
        };
        let writer = LineWriter::spawn("ftpcalc-xferlog", Box::new(file), report)?;
        Ok(TransferLog { path: path.to_path_buf(), writer })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the line for `transfer` (through the writer's buffer).
    pub fn record(&self, transfer: &Transfer<'_>) {
        let line = format!("{} {}\n", chrono::Local::now().format("%a %b %e %H:%M:%S %Y"), fields(transfer));
        self.writer.write_line(line.as_bytes());
    }

    /// Opens the file again at its path (after logrotate moved it), on reload; lines already
    /// waiting still go to the old file.
    pub fn reopen(&self) {
        match open_append(&self.path) {
            Ok(reopened) => self.writer.replace_sink(Box::new(reopened)),
            Err(error) => tracing::warn!(%error, path = %self.path.display(), "cannot reopen the transfer log"),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

/// Everything after the time: the 13 fields of the line, space-separated.
fn fields(transfer: &Transfer<'_>) -> String {
    let seconds = transfer.duration.as_secs() + u64::from(transfer.duration.subsec_nanos() > 0);
    let direction = match transfer.direction {
        Direction::Download => 'o',
        Direction::Upload => 'i',
    };
    let access = if transfer.user.kind == Kind::Anonymous { 'a' } else { 'r' };
    let status = if transfer.complete { 'c' } else { 'i' };
    format!(
        "{seconds} {} {} {} b _ {direction} {access} {} ftp 0 * {status}",
        transfer.remote,
        transfer.bytes,
        one_field(transfer.path),
        one_field(&transfer.user.name),
    )
}

/// `text` with spaces and control characters as `_`, so that it stays one field.
fn one_field(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|character| if character.is_whitespace() || character.is_control() { '_' } else { character })
        .collect();
    if replaced.is_empty() {
        "_".to_string()
    } else {
        replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer<'a>(user: &'a User, path: &'a str, complete: bool) -> Transfer<'a> {
        Transfer {
            duration: Duration::from_millis(1500),
            remote: "192.0.2.7".parse().expect("literal"),
            bytes: 1234,
            path,
            direction: Direction::Upload,
            user,
            complete,
        }
    }

    #[test]
    fn the_fields_follow_xferlog_and_stay_one_field_each() {
        let user = User::open("carol smith");
        assert_eq!(
            fields(&transfer(&user, "/a dir/new\nline.txt", true)),
            "2 192.0.2.7 1234 /a_dir/new_line.txt b _ i r carol_smith ftp 0 * c"
        );
        let mut anonymous = User::open("anonymous");
        anonymous.kind = Kind::Anonymous;
        let mut cut = transfer(&anonymous, "/x", false);
        cut.direction = Direction::Download;
        cut.duration = Duration::ZERO;
        assert_eq!(fields(&cut), "0 192.0.2.7 1234 /x b _ o a anonymous ftp 0 * i");
    }

    #[test]
    fn lines_reach_the_file_with_the_ctime_date() {
        let folder = tempfile::tempdir().expect("folder");
        let path = folder.path().join("xferlog");
        let log = TransferLog::open(&path).expect("open");
        let user = User::open("u");
        log.record(&transfer(&user, "/f", true));
        drop(log);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.ends_with('\n') || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(words.len(), 18, "{text:?}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(&words[..5].join(" "), "%a %b %e %H:%M:%S %Y").is_ok(),
            "{text:?}"
        );
        assert_eq!(words[5..].join(" "), "2 192.0.2.7 1234 /f b _ i r u ftp 0 * c");
    }
}
