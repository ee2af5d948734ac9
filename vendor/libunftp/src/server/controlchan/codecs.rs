use super::{
    Reply,
    command::Command,
    error::{ControlChanError, ControlChanErrorKind},
    line_parser,
};

use bytes::BytesMut;
use std::io::Write;
use tokio_util::codec::{Decoder, Encoder};

// FTPCodec implements tokio's `Decoder` and `Encoder` traits for the control channel, that we'll
// use to decode FTP commands and encode their responses.
pub struct FtpCodec {
    // Stored index of the next index to examine for a '\n' character. This is used to optimize
    // searching. For example, if `decode` was called with `abc`, it would hold `3`, because that
    // is the next index to examine. The next time `decode` is called with `abcde\n`, we will only
    // look at `de\n` before returning.
    next_index: usize,
    // True while the rest of an over-long line (already answered) is being dropped.
    discarding: bool,
}

/// The longest command line accepted, line end included (vsftpd allows 4 KiB, pyftpdlib 2 KiB).
/// A longer one is answered `500` and dropped without being kept, however long it goes on.
pub const MAX_LINE: usize = 4096;

impl FtpCodec {
    pub fn new() -> Self {
        FtpCodec { next_index: 0, discarding: false }
    }
}

impl Decoder for FtpCodec {
    // A line that does not parse is an item too, not a stream error: after a decoder error
    // tokio-util's `Framed` ends the stream, which the control loop took for the client going
    // away, so any `501 Invalid Parameter` used to end the session.
    type Item = Result<Command, ControlChanError>;
    type Error = ControlChanError;

    // Here we decode the incoming bytes into a meaningful command. We'll split on newlines, and
    // parse the resulting line using `Command::parse()`. This method will be called by tokio.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        loop {
            match buf[self.next_index..].iter().position(|b| *b == b'\n') {
                Some(newline_offset) => {
                    let newline_index = newline_offset + self.next_index;
                    let line = buf.split_to(newline_index + 1);
                    self.next_index = 0;
                    if buf.is_empty() && buf.capacity() > MAX_LINE {
                        // Give back what a long line made the buffer grow to.
                        *buf = BytesMut::new();
                    }
                    if std::mem::take(&mut self.discarding) {
                        // The end of an over-long line that was answered already.
                        continue;
                    }
                    if line.len() > MAX_LINE {
                        return Ok(Some(Err(ControlChanErrorKind::LineTooLong.into())));
                    }
                    return Ok(Some(line_parser::parse(strip_telnet_commands(line)).map_err(ControlChanError::from)));
                }
                None if self.discarding => {
                    buf.clear();
                    self.next_index = 0;
                    return Ok(None);
                }
                None if buf.len() > MAX_LINE => {
                    // Answer now, and drop what came and what will come until the line ends.
                    buf.clear();
                    self.next_index = 0;
                    self.discarding = true;
                    return Ok(Some(Err(ControlChanErrorKind::LineTooLong.into())));
                }
                None => {
                    self.next_index = buf.len();
                    return Ok(None);
                }
            }
        }
    }
}

/// Drops Telnet commands (IAC, 0xFF, and what follows) from the start of a line: clients send
/// `IAC IP IAC DM` (Telnet "interrupt process" and "synch") before `ABOR`, as RFC 959 §4.1.3
/// asks; left in, they made the line invalid UTF-8. With the socket's urgent data read inline
/// (`SO_OOBINLINE`) the `DM` byte arrives too. `IAC IAC` (an escaped 0xFF) is data and stays.
fn strip_telnet_commands(mut line: BytesMut) -> BytesMut {
    use bytes::Buf;
    while line.len() >= 2 && line[0] == 0xFF && line[1] != 0xFF {
        // WILL, WONT, DO and DONT (0xFB..=0xFE) take an option byte; the others stand alone.
        let length = if (0xFB..=0xFE).contains(&line[1]) { 3 } else { 2 };
        line.advance(length.min(line.len()));
    }
    line
}

impl Encoder<Reply> for FtpCodec {
    type Error = ControlChanError;

    // Here we encode the outgoing response
    fn encode(&mut self, reply: Reply, buf: &mut BytesMut) -> Result<(), Self::Error> {
        let mut buffer = vec![];
        match reply {
            Reply::None => {
                return Ok(());
            }
            // The common case, written straight into the buffer (no formatting machinery, no
            // second buffer): a three-digit code, a space and the text.
            Reply::CodeAndMsg { code, msg } if (100..1000).contains(&(code as u32)) => {
                let code = code as u32;
                buf.reserve(msg.len() + 6);
                buf.extend_from_slice(&[b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]);
                if !msg.is_empty() {
                    buf.extend_from_slice(b" ");
                    buf.extend_from_slice(msg.as_bytes());
                }
                buf.extend_from_slice(b"\r\n");
                return Ok(());
            }
            Reply::CodeAndMsg { code, msg } => {
                if msg.is_empty() {
                    writeln!(buffer, "{}\r", code as u32)?;
                } else {
                    writeln!(buffer, "{} {}\r", code as u32, msg)?;
                }
            }
            Reply::MultiLine { code, mut lines } => {
                // Get the last line since it needs to be preceded by the response code.
                let last_line = lines.pop().unwrap_or_default();

                // Lines starting with a digit should be indented
                for it in lines.iter_mut() {
                    if it.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                        it.insert(0, ' ');
                    }
                }
                if lines.is_empty() {
                    writeln!(buffer, "{} {}\r", code as u32, last_line)?;
                } else {
                    write!(buffer, "{}-{}\r\n{} {}\r\n", code as u32, lines.join("\r\n"), code as u32, last_line)?;
                }
            }
        }
        buf.extend(&buffer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReplyCode;
    use super::*;

    #[test]
    fn telnet_interrupt_and_synch_before_abor_are_dropped() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::from(&b"\xff\xf4\xff\xf2ABOR\r\n"[..]);
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Ok(Command::Abor)))));
        let mut buf = BytesMut::from(&b"\xff\xfb\x01\xff\xf4NOOP\r\n"[..]);
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Ok(Command::Noop)))));
    }

    #[test]
    fn an_over_long_line_is_answered_once_and_dropped_without_being_kept() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&vec![b'x'; MAX_LINE + 1]);
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Err(_)))));
        assert!(buf.is_empty(), "nothing kept");
        for _ in 0..100 {
            buf.extend_from_slice(&[b'y'; 65536]);
            assert!(matches!(codec.decode(&mut buf), Ok(None)));
            assert!(buf.is_empty(), "the rest of the line is dropped as it comes");
        }
        buf.extend_from_slice(b"yyy\r\nNOOP\r\n");
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Ok(Command::Noop)))), "the next line is read");
        buf.extend_from_slice(&vec![b'z'; MAX_LINE + 10]);
        buf.extend_from_slice(b"\r\n");
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Err(_)))), "a long line that came whole");
    }

    #[test]
    fn a_one_line_reply_is_its_code_a_space_its_text_and_crlf() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        codec.encode(Reply::new(ReplyCode::CommandOkay, "fine"), &mut buf).unwrap();
        codec.encode(Reply::new(ReplyCode::ClosingDataConnection, ""), &mut buf).unwrap();
        assert_eq!(buf, "200 fine\r\n226\r\n".as_bytes());
    }

    #[test]
    fn encode_multiline_reply_with_blank_line_does_not_panic() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        let reply = Reply::new_multiline(ReplyCode::HelpMessage, vec!["Usage: foo", "", "Options:"]);

        codec.encode(reply, &mut buf).unwrap();

        assert_eq!(buf, "214-Usage: foo\r\n\r\n214 Options:\r\n".as_bytes());
    }
}
