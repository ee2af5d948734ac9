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
    let mut text = String::new();
    push_printable(&mut text, path);
    text
}

/// Appends [`printable`] of `path` to `text`.
fn push_printable(text: &mut String, path: &Path) {
    let lossy = path.to_string_lossy();
    // Printable ASCII, the usual path, is taken whole without decoding it character by character.
    if lossy.bytes().all(|byte| (b' '..=b'~').contains(&byte)) || !lossy.chars().any(char::is_control) {
        text.push_str(&lossy);
    } else {
        text.extend(lossy.chars().map(|c| if c.is_control() { '?' } else { c }));
    }
}

/// The `150` text of a download: `Opening data connection for PATH (SIZE bytes)`, built in one
/// allocation (a `format!` of [`printable`] made two and went through the formatting machinery;
/// this text is written for every download).
pub(crate) fn opening_download(path: &Path, size: u64) -> String {
    const START: &str = "Opening data connection for ";
    let mut text = String::with_capacity(START.len() + path.as_os_str().len() + 30);
    text.push_str(START);
    push_printable(&mut text, path);
    text.push_str(" (");
    push_decimal(&mut text, size);
    text.push_str(" bytes)");
    text
}

/// Appends `number` in decimal to `text`, without the formatting machinery (which cost more
/// than the rest of the replies written for every download and every `PASV`).
pub(crate) fn push_decimal(text: &mut String, number: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    text.extend(digits[start..].iter().map(|&digit| char::from(digit)));
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
    use super::{opening_download, printable};
    use std::path::Path;

    #[test]
    fn control_characters_become_question_marks_and_the_rest_stays() {
        assert_eq!(printable(Path::new("/a b/été.txt")), "/a b/été.txt");
        assert_eq!(printable(Path::new("/a\r\nb\x1b[31m\tc")), "/a??b?[31m?c");
        assert_eq!(printable(Path::new("")), "");
    }

    #[test]
    fn a_download_s_opening_text_names_the_printable_path_and_the_size() {
        for path in ["/small/f0001.bin", "/a b/été.txt", "/a\r\nb\x1b[31m\tc", "", "/x\u{7f}y\u{85}z"] {
            for size in [0u64, 7, 10, 4096, 1 << 40, u64::MAX] {
                assert_eq!(
                    opening_download(Path::new(path), size),
                    format!("Opening data connection for {} ({} bytes)", printable(Path::new(path)), size)
                );
            }
        }
        assert_eq!(printable(Path::new("/x\u{7f}y\u{85}z")), "/x?y?z");
    }
}
