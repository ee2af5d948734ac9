//! The RFC 959 Passive (`PASV`) command
//
// This command requests the server-DTP to "listen" on a data
// port (which is not its default data port) and to wait for a
// connection rather than initiate one upon receipt of a
// transfer command.  The response to this command includes the
// host and port address this server is listening on.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::SwitchboardSender,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
        ftpserver::options::PassiveHost,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::net::Ipv4Addr;

use super::passive_common::{self, LegacyReplyProducer};
use crate::server::controlchan::reply_text::push_decimal;

#[derive(Debug)]
pub struct Pasv {}

impl Pasv {
    pub fn new() -> Self {
        Pasv {}
    }
}

#[async_trait]
impl<Storage, User> LegacyReplyProducer<Storage, User> for Pasv
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
{
    async fn build_reply(&self, args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError> {
        // PASV can only name an IPv4 address; over IPv6 the client is told to use EPSV (this
        // used to be an error that closed the session without a reply).
        let conn_addr = match args.local_addr.ip().to_canonical() {
            std::net::IpAddr::V4(address) => address,
            std::net::IpAddr::V6(_) => {
                return Ok(Reply::new(ReplyCode::NetworkProtocolNotSupported, "PASV is for IPv4; use EPSV"));
            }
        };
        Ok(make_pasv_reply(&args.logger, args.passive_host.clone(), &conn_addr, port).await)
    }

    fn refused_after_epsv_all(&self) -> bool {
        true
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Pasv
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let sender: Option<SwitchboardSender<Storage, User>> = args.tx_prebound_loop.clone();
        match sender {
            Some(_) if args.session.lock().await.epsv_all => Ok(passive_common::refused_after_epsv_all()),
            Some(tx) => passive_common::handle_delegated_mode(args, tx).await,
            None => passive_common::handle_legacy_mode(self, args).await,
        }
    }
}

pub async fn make_pasv_reply(logger: &slog::Logger, passive_host: PassiveHost, conn_ip: &Ipv4Addr, port: u16) -> Reply {
    let p1 = port >> 8;
    let p2 = port - (p1 * 256);
    let octets = match passive_host {
        PassiveHost::Ip(ip) => ip.octets(),
        PassiveHost::FromConnection => conn_ip.octets(),
        PassiveHost::Dns(ref dns_name) => {
            let x = dns_name.split(':').take(1).map(|s| format!("{}:2121", s)).next().unwrap();
            match tokio::net::lookup_host(x).await {
                Err(e) => {
                    slog::warn!(logger, "make_pasv_reply: Could not look up host for pasv reply: {}", e);

                    return Reply::new_with_string(ReplyCode::CantOpenDataConnection, format!("Could not resolve DNS address '{}'", dns_name));
                }
                Ok(mut ip_iter) => loop {
                    match ip_iter.next() {
                        None => return Reply::new_with_string(ReplyCode::CantOpenDataConnection, format!("Could not resolve DNS address '{}'", dns_name)),
                        Some(std::net::SocketAddr::V4(ip)) => break ip.ip().octets(),
                        Some(std::net::SocketAddr::V6(_)) => continue,
                    }
                },
            }
        }
    };
    slog::info!(logger, "Listening on passive port {}:{}", conn_ip, port);
    Reply::new_with_string(ReplyCode::EnteringPassiveMode, entering_passive_mode(octets, p1, p2))
}

/// `Entering Passive Mode (h1,h2,h3,h4,p1,p2)`, written number by number (a `format!` of six
/// numbers cost more than the rest of the reply).
fn entering_passive_mode(octets: [u8; 4], p1: u16, p2: u16) -> String {
    let mut text = String::with_capacity(48);
    text.push_str("Entering Passive Mode (");
    for (index, number) in [u16::from(octets[0]), u16::from(octets[1]), u16::from(octets[2]), u16::from(octets[3]), p1, p2].into_iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        push_decimal(&mut text, u64::from(number));
    }
    text.push(')');
    text
}

#[cfg(test)]
mod tests {
    use super::entering_passive_mode;

    #[test]
    fn the_pasv_text_names_the_address_and_the_port_in_two_bytes() {
        assert_eq!(entering_passive_mode([127, 0, 0, 1], 195, 80), "Entering Passive Mode (127,0,0,1,195,80)");
        assert_eq!(entering_passive_mode([0, 10, 255, 9], 0, 255), "Entering Passive Mode (0,10,255,9,0,255)");
        for port in [0u16, 1, 255, 256, 1024, 50_000, 65_535] {
            let (p1, p2) = (port >> 8, port & 0xff);
            assert_eq!(
                entering_passive_mode([192, 168, 1, 200], p1, p2),
                format!("Entering Passive Mode (192,168,1,200,{},{})", p1, p2)
            );
        }
    }
}
