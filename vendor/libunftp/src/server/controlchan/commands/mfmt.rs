//! The `MFMT` command (draft-somers-ftp-mfxx "The 'MFMT', 'MFCT', and 'MFF' Command Extensions
//! for FTP"): set a file's last modification time.
//
// MFMT YYYYMMDDHHMMSS[.sss] path
// 213 Modify=YYYYMMDDHHMMSS; path

use crate::{
    auth::UserDetail,
    server::{
        chancomms::ControlChanMsg,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
            reply_text::{printable, storage_error},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use chrono::{NaiveDateTime, TimeZone, Utc};
use std::{path::PathBuf, sync::Arc, time::SystemTime};

#[derive(Debug)]
pub struct Mfmt {
    pub time: String,
    pub path: PathBuf,
}

/// `YYYYMMDDHHMMSS` with optional `.sss` fractions, in UTC.
fn parse_time(text: &str) -> Option<SystemTime> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    let mut time: SystemTime = Utc.from_utc_datetime(&naive).into();
    if let Some(fraction) = fraction {
        if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let nanos: u64 = format!("{:0<9}", fraction).parse().ok()?;
        time += std::time::Duration::from_nanos(nanos);
    }
    Some(time)
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Mfmt
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let Some(time) = parse_time(&self.time) else {
            return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "MFMT needs YYYYMMDDHHMMSS[.sss] (UTC) and a path"));
        };
        let session = args.session.lock().await;
        let user = session.user.clone();
        let storage = Arc::clone(&session.storage);
        let path = session.cwd.join(&self.path);
        let tx = args.tx_control_chan.clone();
        let stamp = self.time.clone();
        let shown = printable(&self.path);
        tokio::spawn(async move {
            let reply = match storage.set_modified((*user).as_ref().unwrap(), &path, time).await {
                Ok(()) => Reply::new_with_string(ReplyCode::FileStatus, format!("Modify={}; {}", stamp, shown)),
                Err(err) => storage_error(&err, Some(&path)),
            };
            let _ = tx.send(ControlChanMsg::CommandChannelReply(reply)).await;
        });
        Ok(Reply::none())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("19700101000001"), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(parse_time("20261125120000.5"), Some(UNIX_EPOCH + Duration::from_secs(1_795_608_000) + Duration::from_millis(500)));
        for bad in ["", "2026", "20261325120000", "2026112512000x", "20261125120000.", "20261125120000.x"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
