//! The RFC 959 Data Port (`PORT`) command, and RFC 2428's Extended Port (`EPRT`)
//
// The argument is a HOST-PORT specification for the data port
// to be used in data connection.  There are defaults for both
// the user and server data ports, and under normal
// circumstances this command and its reply are not needed.  If
// this command is used, the argument is the concatenation of a
// 32-bit internet host address and a 16-bit TCP port address.
// This address information is broken into 8-bit fields and the
// value of each field is transmitted as a decimal number (in
// character string representation).  The fields are separated
// by commas.  A port command would be:
//
// PORT h1,h2,h3,h4,p1,p2
//
// where h1 is the high order 8 bits of the internet host
// address.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::TransferCmd,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
        datachan,
        session::SharedSession,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender, channel};

#[derive(Debug)]
pub struct Port {
    addr: String,
    /// `EPRT` (RFC 2428) rather than `PORT`.
    extended: bool,
}

/// Why an active-mode address is refused.
enum Refusal {
    Malformed,
    Family,
}

/// `h1,h2,h3,h4,p1,p2` (every field a number 0-255).
fn parse_port(text: &str) -> Result<SocketAddr, Refusal> {
    let fields: Result<Vec<u8>, _> = text.split(',').map(|field| field.trim().parse::<u8>()).collect();
    match fields.as_deref() {
        Ok([h1, h2, h3, h4, p1, p2]) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(*h1, *h2, *h3, *h4)), u16::from(*p1) << 8 | u16::from(*p2))),
        _ => Err(Refusal::Malformed),
    }
}

/// RFC 2428's `<d>af<d>address<d>port<d>` (any printable delimiter; families 1 and 2).
fn parse_eprt(text: &str) -> Result<SocketAddr, Refusal> {
    let delimiter = text.chars().next().filter(|delimiter| delimiter.is_ascii_graphic()).ok_or(Refusal::Malformed)?;
    let fields: Vec<&str> = text.split(delimiter).collect();
    let [_, family, host, port, rest] = fields.as_slice() else {
        return Err(Refusal::Malformed);
    };
    if !rest.is_empty() {
        return Err(Refusal::Malformed);
    }
    let port: u16 = port.parse().map_err(|_| Refusal::Malformed)?;
    let ip: IpAddr = match *family {
        "1" => IpAddr::V4(host.parse().map_err(|_| Refusal::Malformed)?),
        "2" => IpAddr::V6(host.parse().map_err(|_| Refusal::Malformed)?),
        _ => return Err(Refusal::Family),
    };
    Ok(SocketAddr::new(ip, port))
}

impl Port {
    pub fn new(addr: String) -> Self {
        Port { addr, extended: false }
    }

    pub fn extended(addr: String) -> Self {
        Port { addr, extended: true }
    }

    // modifies the session by adding channels that are used to communicate with the data connection
    // processing loop (which answers on the session's own `control_msg_tx`).
    #[tracing_attributes::instrument]
    async fn setup_inter_loop_comms<S, U>(&self, session: SharedSession<S, U>)
    where
        U: UserDetail + 'static,
        S: StorageBackend<U> + 'static,
        S::Metadata: Metadata,
    {
        let (cmd_tx, cmd_rx): (Sender<TransferCmd>, Receiver<TransferCmd>) = channel(1);
        let (data_abort_tx, data_abort_rx): (Sender<()>, Receiver<()>) = channel(1);

        let mut session = session.lock().await;
        session.data_cmd_tx = Some(cmd_tx);
        session.data_cmd_rx = Some(cmd_rx);
        session.data_abort_tx = Some(data_abort_tx);
        session.data_abort_rx = Some(data_abort_rx);
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Port
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let CommandContext { logger, session, .. } = args;
        // RFC 2577 §3: connect only to the client's own address (below).
        let (client, epsv_all) = {
            let session = session.lock().await;
            (session.source.ip().to_canonical(), session.epsv_all)
        };
        if epsv_all {
            return Ok(super::passive_common::refused_after_epsv_all());
        }

        let parsed = if self.extended { parse_eprt(&self.addr) } else { parse_port(&self.addr) };
        let addr = match parsed {
            Ok(addr) => addr,
            Err(Refusal::Malformed) => return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "Invalid address format")),
            Err(Refusal::Family) => return Ok(Reply::new(ReplyCode::NetworkProtocolNotSupported, "Network protocol not supported, use (1,2)")),
        };
        // RFC 2577 §3: connect only to the client's own address, and never to a privileged port
        // (a server that connects wherever it is told is a port scanner and a bounce relay).
        if addr.ip().to_canonical() != client {
            slog::warn!(logger, "Refused an active-mode connection to {}: not the client's address {}", addr, client);
            return Ok(Reply::new_with_string(
                ReplyCode::CommandNotImplementedForParameter,
                format!("Refused: the data connection must go to your own address ({})", client),
            ));
        }
        if addr.port() < 1024 {
            return Ok(Reply::new(
                ReplyCode::CommandNotImplementedForParameter,
                "Refused: the data connection must go to a port of 1024 or above",
            ));
        }

        // A passive listener of this session (an earlier PASV or EPSV) is not needed any more:
        // its place (if data connections are limited) goes to this connection.
        let (timeout, place) = {
            let mut session = session.lock().await;
            if let Some(accepting) = session.passive_accept.take() {
                accepting.abort();
            }
            (session.data_connection_timeout, session.data_connection_place())
        };
        let Ok(place) = place else {
            return Ok(Reply::new(ReplyCode::CantOpenDataConnection, crate::server::session::NO_PLACE_LEFT));
        };
        let stream: io::Result<TcpStream> = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(connected) => connected,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connecting to the client timed out")),
        };

        let stream = match stream {
            Err(e) => {
                slog::error!(logger, "Could not connect to client for active mode: {}", e);
                return Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Could not establish data connection"));
            }
            Ok(s) => s,
        };

        self.setup_inter_loop_comms(session.clone()).await;
        datachan::spawn_processing(logger, session.clone(), stream).await;
        // The unused connection's place is the session's, as a passive listener's: a newer
        // `PASV`, `EPSV` or `PORT` takes it over, the transfer command takes it for its transfer.
        session.lock().await.passive_place = place;

        Ok(Reply::new(ReplyCode::CommandOkay, if self.extended { "EPRT command successful" } else { "PORT command successful" }))
    }
}
