//! Reply texts that name paths and storage errors: paths quoted as RFC 959 wants them in `257`
//! replies and never carrying control characters into a reply, and storage errors said
//! clearly (exists, is a folder, not empty, no permission, with the back-end's own words when
//! it gave some).

use super::{Reply, ReplyCode};
use crate::storage::{Error, ErrorKind};
use std::path::Path;

/// `path` for a reply text: control characters (TAB, C0, C1), which could break the reply's
/// framing or fool the client's display, become `?`.
pub(crate) fn printable(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `"path"` as RFC 959 quotes it in `257` replies (appendix II): embedded quotes doubled.
pub(crate) fn quoted(path: &Path) -> String {
    format!("\"{}\"", printable(path).replace('"', "\"\""))
}

/// The reply for a storage error, naming `path` when given.
pub(crate) fn storage_error(error: &Error, path: Option<&Path>) -> Reply {
    let io = error.get_io_error();
    let io_kind = io.map(std::io::Error::kind);
    // A message the back-end wrote itself (not an OS error) is meant for the client.
    let own_words = io.filter(|io| io.raw_os_error().is_none() && io.get_ref().is_some()).map(|io| io.to_string());
    let (code, detail) = match error.kind() {
        ErrorKind::PermanentFileNotAvailable => (
            ReplyCode::FileError,
            match io_kind {
                Some(std::io::ErrorKind::AlreadyExists) => "exists already",
                Some(std::io::ErrorKind::IsADirectory) => "is a folder",
                Some(std::io::ErrorKind::NotADirectory) => "is not a folder",
                Some(std::io::ErrorKind::DirectoryNotEmpty) => "folder not empty",
                _ => "no such file or folder",
            },
        ),
        ErrorKind::PermanentDirectoryNotAvailable => (ReplyCode::FileError, "no such folder"),
        ErrorKind::PermanentDirectoryNotEmpty => (ReplyCode::FileError, "folder not empty"),
        ErrorKind::PermissionDenied => (ReplyCode::FileError, "permission denied"),
        ErrorKind::FileNameNotAllowedError => (ReplyCode::BadFileName, "file name not allowed"),
        ErrorKind::TransientFileNotAvailable => (ReplyCode::TransientFileError, "file busy, try again later"),
        ErrorKind::ExceededStorageAllocationError => (ReplyCode::ExceededStorageAllocation, "exceeded storage allocation"),
        ErrorKind::InsufficientStorageSpaceError => (ReplyCode::OutOfSpace, "insufficient storage space"),
        ErrorKind::LocalError => (ReplyCode::LocalError, "local error"),
        ErrorKind::PageTypeUnknown => (ReplyCode::PageTypeUnknown, "page type unknown"),
        ErrorKind::CommandNotImplemented => (ReplyCode::CommandNotImplemented, "command not implemented"),
        ErrorKind::ConnectionClosed => (ReplyCode::ConnectionClosed, "connection closed"),
    };
    let detail = match (&own_words, error.kind()) {
        (Some(words), ErrorKind::PermissionDenied | ErrorKind::FileNameNotAllowedError) => words.as_str(),
        _ => detail,
    };
    let text = match path {
        Some(path) => format!("{}: {}", printable(path), detail),
        None => {
            let mut text = detail.to_string();
            if let Some(first) = text.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            text
        }
    };
    Reply::new_with_string(code, text.chars().map(|c| if c.is_control() { '?' } else { c }).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::printable;
    use std::path::Path;

    #[test]
    fn control_characters_become_question_marks_and_the_rest_stays() {
        assert_eq!(printable(Path::new("/a b/été.txt")), "/a b/été.txt");
        assert_eq!(printable(Path::new("/a\r\nb\x1b[31m\tc")), "/a??b?[31m?c");
        assert_eq!(printable(Path::new("")), "");
    }
}
