//! How the back-end refuses: permissions, hidden temporary files, and io errors mapped to the
//! storage errors libunftp turns into replies (one place, so every command answers alike).

use std::io;
use std::path::Path;

use unftp_core::storage::{Error, ErrorKind, Result};

use crate::accounts::{Permission, User};
use crate::ftp_backend::upload::is_internal;

/// Refuses what `user` may not do (`550`; uploads `553`, as RFC 959 has it for STOR names).
pub fn allowed(user: &User, permission: Permission) -> Result<()> {
    if user.may(permission) {
        return Ok(());
    }
    let kind = match permission {
        Permission::Upload | Permission::Overwrite => ErrorKind::FileNameNotAllowedError,
        _ => ErrorKind::PermissionDenied,
    };
    Err(Error::new(
        kind,
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} has no {} permission", user.name, permission.word()),
        ),
    ))
}

/// Refuses paths of temporary upload files as if they did not exist.
pub fn visible(path: &Path) -> Result<()> {
    if is_internal(path) {
        return Err(Error::from(ErrorKind::PermanentFileNotAvailable));
    }
    Ok(())
}

/// Runs `work` on the blocking pool; its io errors are mapped as an upload's.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(upload_error),
        Err(_) => Err(Error::from(ErrorKind::LocalError)),
    }
}

/// Runs `work` in place (path operations that cost less than a trip to the blocking pool);
/// its io errors are mapped as an upload's, as [`blocking`] maps them.
pub fn in_place<T>(work: impl FnOnce() -> io::Result<T>) -> Result<T> {
    work().map_err(upload_error)
}

/// A file that cannot be opened is "not found" (550); anything later is a local error.
pub fn download_error(error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => not_available(error),
        _ => Error::from(error),
    }
}

/// A refused upload name is `553`; a missing path `550`, and a `REST` offset past the end of
/// the file `550` saying so; anything else a local error.
fn upload_error(error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput => not_available(error),
        io::ErrorKind::UnexpectedEof => Error::new(ErrorKind::PermissionDenied, error),
        io::ErrorKind::AlreadyExists => Error::new(ErrorKind::FileNameNotAllowedError, error),
        _ => Error::from(error),
    }
}

/// A path that cannot be read or listed: `550`, with what the io error says.
pub fn not_available(error: io::Error) -> Error {
    Error::new(ErrorKind::PermanentFileNotAvailable, error)
}
