//! The PROXY protocol header (HAProxy's `send-proxy` v1 text line and `send-proxy-v2` binary
//! block) that a proxy sends before anything else on a connection it forwards, telling the
//! client's real address. With `--proxy-protocol` every control connection must start with one.
//!
//! The bytes are read exactly (the v1 line byte by byte up to its CRLF, the v2 block by its
//! length field), so nothing of the FTP conversation is consumed; [`ppp`] parses them. The
//! header must arrive within [`HEADER_TIMEOUT`] and is at most [`MAX_V1_BYTES`] or
//! [`MAX_V2_BYTES`] long.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a connection may take to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest v1 header, CRLF included (the specification's limit).
pub const MAX_V1_BYTES: usize = 107;
/// Longest v2 header accepted: the 16-byte preamble and up to 1 KiB of addresses and TLVs.
pub const MAX_V2_BYTES: usize = 16 + 1024;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection's header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Nothing, or not all of it, arrived in time.
    #[error("no PROXY protocol header within {}s", HEADER_TIMEOUT.as_secs())]
    Timeout,
    /// The connection does not start with a header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// It starts like one but is not valid.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// The socket failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header at the start of `stream` and returns the client address it gives; `None`
/// when the proxy speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`: its health checks, which the
/// listener answers with a greeting and closes).
pub async fn read_client_address(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    match tokio::time::timeout(HEADER_TIMEOUT, read_header(stream)).await {
        Ok(Err(ProxyHeaderError::Io(error))) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(
            ProxyHeaderError::Io(std::io::Error::new(error.kind(), "the connection closed before its PROXY header")),
        ),
        Ok(result) => result,
        Err(_) => Err(ProxyHeaderError::Timeout),
    }
}

async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = vec![0u8; 16];
    // The first 6 bytes tell v1 (`PROXY `) from v2 (the 12-byte signature) and from anything else.
    stream.read_exact(&mut header[..6]).await?;
    if &header[..6] == b"PROXY " {
        header.truncate(6);
        while !header.ends_with(b"\r\n") {
            if header.len() >= MAX_V1_BYTES {
                return Err(ProxyHeaderError::Invalid(format!("a v1 line over {MAX_V1_BYTES} bytes")));
            }
            header.push(stream.read_u8().await?);
        }
        return parse_v1(&header);
    }
    if header[..6] != V2_SIGNATURE[..6] {
        return Err(ProxyHeaderError::Missing);
    }
    stream.read_exact(&mut header[6..12]).await?;
    if header[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    stream.read_exact(&mut header[12..16]).await?;
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if 16 + length > MAX_V2_BYTES {
        return Err(ProxyHeaderError::Invalid(format!(
            "a v2 header of {} bytes (at most {MAX_V2_BYTES})",
            16 + length
        )));
    }
    header.resize(16 + length, 0);
    stream.read_exact(&mut header[16..]).await?;
    parse_v2(&header)
}

/// The client address in a whole v1 line (`PROXY TCP4 SRC DST SPORT DPORT\r\n`).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let header = ppp::v1::Header::try_from(line).map_err(|error| ProxyHeaderError::Invalid(error.to_string()))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(addresses) => {
            Some(SocketAddr::from((addresses.source_address, addresses.source_port)))
        }
        ppp::v1::Addresses::Tcp6(addresses) => {
            Some(SocketAddr::from((addresses.source_address, addresses.source_port)))
        }
        ppp::v1::Addresses::Unknown => None,
    })
}

/// The client address in a whole v2 block.
pub fn parse_v2(block: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let header = ppp::v2::Header::try_from(block).map_err(|error| ProxyHeaderError::Invalid(error.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    match header.addresses {
        ppp::v2::Addresses::IPv4(addresses) => {
            Ok(Some(SocketAddr::from((addresses.source_address, addresses.source_port))))
        }
        ppp::v2::Addresses::IPv6(addresses) => {
            Ok(Some(SocketAddr::from((addresses.source_address, addresses.source_port))))
        }
        ppp::v2::Addresses::Unspecified => Ok(None),
        ppp::v2::Addresses::Unix(_) => {
            Err(ProxyHeaderError::Invalid("a Unix socket address is not a client address".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut block = V2_SIGNATURE.to_vec();
        block.push(0x20 | command);
        block.push(family);
        block.extend_from_slice(&u16::try_from(addresses.len()).expect("short").to_be_bytes());
        block.extend_from_slice(addresses);
        block
    }

    /// What the server reads from a connection that sends `bytes` first, and the bytes left.
    async fn served(bytes: Vec<u8>, close: bool) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client = tokio::spawn(async move {
            let mut socket = TcpStream::connect(address).await.expect("connect");
            socket.write_all(&bytes).await.expect("write");
            if close {
                let _ = socket.shutdown().await;
            }
            tokio::time::sleep(Duration::from_secs(7)).await;
        });
        let (mut stream, _) = listener.accept().await.expect("accept");
        let result = read_client_address(&mut stream).await.map_err(|error| error.to_string());
        let mut rest = vec![0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut rest)).await.unwrap_or(Ok(0));
        rest.truncate(read.unwrap_or(0));
        client.abort();
        (result, rest)
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_and_leave_the_rest() {
        let (address, rest) = served(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 2121\r\nUSER x\r\n".to_vec(), false).await;
        assert_eq!(address, Ok(Some("192.0.2.7:40001".parse().expect("literal"))));
        assert_eq!(rest, b"USER x\r\n", "nothing of the FTP conversation is consumed");
        let (address, _) = served(b"PROXY TCP6 2001:db8::1 ::1 40002 2121\r\n".to_vec(), false).await;
        assert_eq!(address, Ok(Some("[2001:db8::1]:40002".parse().expect("literal"))));
        let (address, _) = served(b"PROXY UNKNOWN\r\n".to_vec(), false).await;
        assert_eq!(address, Ok(None));

        let mut ipv4 = vec![198, 51, 100, 9, 127, 0, 0, 1];
        ipv4.extend_from_slice(&40003u16.to_be_bytes());
        ipv4.extend_from_slice(&2121u16.to_be_bytes());
        ipv4.extend_from_slice(&[0x04, 0x00, 0x00]); // a NOOP TLV, as HAProxy may add
        let mut bytes = v2(1, 0x11, &ipv4);
        bytes.extend_from_slice(b"QUIT\r\n");
        let (address, rest) = served(bytes, false).await;
        assert_eq!(address, Ok(Some("198.51.100.9:40003".parse().expect("literal"))));
        assert_eq!(rest, b"QUIT\r\n");
        let (address, _) = served(v2(0, 0x00, &[]), false).await;
        assert_eq!(address, Ok(None), "LOCAL: the proxy's own health check");
    }

    #[tokio::test]
    async fn connections_without_a_valid_header_are_refused() {
        let cases: Vec<(Vec<u8>, bool, &str)> = vec![
            (b"USER anonymous\r\n".to_vec(), false, "does not start with a PROXY"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), true, "closed before its PROXY header"),
            (b"PROXY TCP4 not-an-address 5.6.7.8 1 2\r\n".to_vec(), false, "invalid PROXY"),
            ([b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(), false, "over 107 bytes"),
            (b"PROXY TCP".to_vec(), false, "no PROXY protocol header within 5s"),
            (b"\r\n\r\n\0\r\nQUIX\n".to_vec(), false, "does not start with a PROXY"),
            (v2(1, 0x11, &[1, 2, 3]), false, "invalid PROXY"),
            (
                {
                    let mut block = v2(1, 0x11, &[]);
                    block[14..16].copy_from_slice(&60000u16.to_be_bytes());
                    block
                },
                false,
                "at most 1040",
            ),
            (Vec::new(), true, "closed before its PROXY header"),
        ];
        for (bytes, close, expected) in cases {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).to_string();
            let (result, _) = served(bytes, close).await;
            let error = result.expect_err(&shown);
            assert!(error.contains(expected), "{shown:?}: {error}");
        }
    }

    proptest! {
        #[test]
        fn any_v1_line_or_v2_block_parses_or_is_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_v1(&bytes);
            let mut block = V2_SIGNATURE.to_vec();
            block.extend_from_slice(&bytes);
            let _ = parse_v2(&block);
        }
    }
}
