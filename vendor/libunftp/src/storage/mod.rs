//! Re-exports storage traits/types from unftp-core.

pub(crate) use unftp_core::storage::{Error, ErrorKind, FEATURE_MFMT, FEATURE_RESTART, FEATURE_SITEMD5, FEATURE_UNIQUE, Metadata, StorageBackend};
