//! The RFC 959 Status (`STAT`) command
//
// This command shall cause a status response to be sent over
// the control connection in the form of a reply.  The command
// may be sent during a file transfer (along with the Telnet IP
// and Synch signals--see the Section on FTP Commands) in which
// case the server will respond with the status of the
// operation in progress, or it may be sent between file
// transfers.  In the latter case, the command may have an
// argument field.  If the argument is a pathname, the command
// is analogous to the "list" command except that data shall be
// transferred over the control connection.  If a partial
// pathname is given, the server may respond with a list of
// file names or attributes associated with that specification.
// If no argument is given, the server should return general
// status information about the server FTP process.  This
// should include current values of all transfer parameters and
// the status of connections.

use crate::server::ControlChanSender;
use crate::{
    auth::UserDetail,
    server::{
        chancomms::ControlChanMsg,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Error, ErrorKind, Metadata, StorageBackend},
};
use crate::server::controlchan::reply_text::{printable, storage_error};
use unftp_core::storage::Fileinfo;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// Most entries `STAT folder` lists over the control connection.
const MAX_STAT_LINES: usize = 10_000;

#[derive(Debug)]
pub struct Stat {
    path: Option<Bytes>,
}

impl Stat {
    pub fn new(path: Option<Bytes>) -> Self {
        Stat { path }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Stat
where
    User: UserDetail,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: 'static + Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        match self.path.clone() {
            None => {
                let session = args.session.lock().await;
                let protection = |tls: bool| if tls { "TLS" } else { "plain text" };
                let data_connection = if session.data_busy {
                    "open"
                } else if session.data_cmd_tx.is_some() {
                    "set up (PASV, EPSV or PORT), waiting for a transfer command"
                } else {
                    "none (send PASV, EPSV, PORT or EPRT first)"
                };
                let mut text: Vec<String> = vec![
                    "Status of this session:".to_string(),
                    format!(" Server: libunftp {} (storage: {})", env!("CARGO_PKG_VERSION"), session.storage.name()),
                    format!(" Connected from: {}", session.source),
                    format!(" Logged in as: {}", session.username.as_deref().unwrap_or("(nobody yet)")),
                    format!(" Control connection: {}", protection(session.cmd_tls)),
                    format!(" Data connections: {}", protection(session.data_tls)),
                    " Transfer type: binary (TYPE A is accepted and treated as binary)".to_string(),
                    format!(" Data connection: {}", data_connection),
                    format!(" Working folder: {}", printable(&session.cwd)),
                ];
                if session.start_pos > 0 {
                    text.push(format!(" Restart offset (REST): {}", session.start_pos));
                }
                if let Some(from) = &session.rename_from {
                    text.push(format!(" Renaming from (RNFR): {}", printable(from)));
                }
                text.push("End of status".to_string());
                Ok(Reply::new_multiline(ReplyCode::SystemStatus, text))
            }
            Some(path) => {
                // RFC 959: like LIST, over the control connection: 213 for a file, 212 for a folder.
                let session = args.session.lock().await;
                let path = session.cwd.join(String::from_utf8_lossy(&path).as_ref());
                let user = session.user.clone();
                let storage = Arc::clone(&session.storage);
                let tx: ControlChanSender = args.tx_control_chan.clone();
                let logger = args.logger;

                tokio::spawn(async move {
                    let user = (*user).as_ref().unwrap();
                    let reply = match storage.metadata(user, &path).await {
                        Err(err) => storage_error(&err, Some(&path)),
                        Ok(metadata) if !metadata.is_dir() => {
                            let line = Fileinfo { path: path.clone(), metadata }.to_string();
                            Reply::new_multiline(ReplyCode::FileStatus, vec![format!("Status of {}:", printable(&path)), line, "End of status".to_string()])
                        }
                        Ok(_) => match storage.list_vec(user, &path).await {
                            Ok(mut lines) => {
                                let total = lines.len();
                                lines.truncate(MAX_STAT_LINES);
                                let mut text = vec![format!("Status of {}:", printable(&path))];
                                text.extend(lines.into_iter().map(|line| line.chars().map(|c| if c.is_control() { '?' } else { c }).collect()));
                                if total > MAX_STAT_LINES {
                                    text.push(format!("{} more entries; use LIST", total - MAX_STAT_LINES));
                                }
                                text.push("End of status".to_string());
                                Reply::new_multiline(ReplyCode::DirectoryStatus, text)
                            }
                            Err(err) => storage_error(&Error::new(ErrorKind::LocalError, err), Some(&path)),
                        },
                    };
                    if let Err(err) = tx.send(ControlChanMsg::CommandChannelReply(reply)).await {
                        slog::warn!(logger, "STAT: Could not send internal message: {}", err);
                    }
                });
                Ok(Reply::none())
            }
        }
    }
}
