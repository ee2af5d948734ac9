//! The console line of every completed download, `/<path>|<client ip>|<client port>|<count>`
//! ([`console_line`], with the path percent-encoded where it could mislead a reader:
//! [`escape`]), and the sink that prints such lines on standard output ([`console`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::telemetry::line_writer::{LineWriter, Report};

/// `path` with `%`, `|` and control characters percent-encoded (UTF-8 bytes), for the log line
/// (borrowed when there is nothing to encode, the usual case).
pub fn escape(path: &str) -> Cow<'_, str> {
    let needs = |character: char| character == '%' || character == '|' || character.is_control();
    if !path.chars().any(needs) {
        return Cow::Borrowed(path);
    }
    let mut escaped = String::with_capacity(path.len() + 8);
    for character in path.chars() {
        if needs(character) {
            let mut bytes = [0u8; 4];
            for byte in character.encode_utf8(&mut bytes).bytes() {
                let _ = write!(escaped, "%{byte:02X}");
            }
        } else {
            escaped.push(character);
        }
    }
    Cow::Owned(escaped)
}

/// The console line of one download: `/<path>|<client ip>|<client port>|<count>`, written
/// piece by piece (through `write!` it cost 2k instructions, 3% of a small download).
pub fn console_line(path: &str, peer: SocketAddr, count: u64) -> String {
    let path = escape(path);
    let mut line = String::with_capacity(path.len() + 64);
    line.push_str(&path);
    line.push('|');
    match peer.ip() {
        IpAddr::V4(address) => {
            for (index, octet) in address.octets().into_iter().enumerate() {
                if index > 0 {
                    line.push('.');
                }
                line.push_str(itoa::Buffer::new().format(octet));
            }
        }
        IpAddr::V6(address) => {
            let _ = write!(line, "{address}");
        }
    }
    line.push('|');
    line.push_str(itoa::Buffer::new().format(peer.port()));
    line.push('|');
    line.push_str(itoa::Buffer::new().format(count));
    line
}

/// A log sink that prints lines on standard output through a [`LineWriter`] (a thread of its
/// own, writing in batches): a slow reader of stdout (a pipe nobody drains) never blocks a
/// transfer. Lines that find its buffer full are dropped and counted; the count is logged (on
/// stderr). A closed stdout is ignored.
pub fn console() -> impl Fn(&str) + Send + Sync + 'static {
    let report = |report: Report| {
        if let Report::Dropped(lost) = report {
            tracing::warn!(lost, "console lines dropped: standard output was not read fast enough");
        }
    };
    let writer = LineWriter::spawn("ftpcalc-console", Box::new(std::io::stdout()), report).ok();
    move |line: &str| match &writer {
        Some(writer) => writer.write_text_line(line),
        None => {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unescape(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' {
                out.push(u8::from_str_radix(&text[index + 1..index + 3], 16).expect("hex"));
                index += 3;
            } else {
                out.push(bytes[index]);
                index += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    proptest! {
        #[test]
        fn console_lines_read_as_their_definition(
            path in "\\PC{0,30}",
            v4 in any::<[u8; 4]>(),
            v6 in any::<[u16; 8]>(),
            port in any::<u16>(),
            count in any::<u64>(),
        ) {
            let v4 = SocketAddr::new(IpAddr::from(v4), port);
            let v6 = SocketAddr::new(IpAddr::from(v6), port);
            for peer in [v4, v6] {
                let expected = format!("{}|{}|{}|{count}", escape(&path), peer.ip(), peer.port());
                prop_assert_eq!(console_line(&path, peer, count), expected);
            }
        }

        #[test]
        fn escaped_paths_have_no_separator_or_control_and_decode_back(path in "\\PC{0,60}|[\\x00-\\x7f|%]{0,40}") {
            let escaped = escape(&path);
            prop_assert!(!escaped.contains('|') && !escaped.chars().any(char::is_control));
            prop_assert_eq!(unescape(&escaped), path);
        }
    }
}
