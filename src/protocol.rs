//! What both ends of our FTP hops share: the SITE verb names, the reply codes a SITE command
//! can get, the request lines workers sign, and the one parser of reply text. The server, the
//! main-to-worker hop, the worker's join, the CLI client, the bench and the tests all use these,
//! so a change of wording is made once.
//!
//! Pure: no I/O.

use std::net::SocketAddr;

use suppaftp::Status;

/// `SITE HELP`: lists this server's SITE commands.
pub const HELP: &str = "HELP";
/// `SITE INFO`: name, role, process id, version, services of this server.
pub const INFO: &str = "INFO";
/// `SITE LOOKUP SERVICE`: which servers offer a service (main server only).
pub const LOOKUP: &str = "LOOKUP";
/// `SITE SERVERS`: every server in the registry (main server only).
pub const SERVERS: &str = "SERVERS";
/// `SITE CHALLENGE`: a single-use challenge for the next registry change of this session.
pub const CHALLENGE: &str = "CHALLENGE";
/// `SITE REGISTER NAME ADDRESS SERVICES PROOF`: add or renew a worker.
pub const REGISTER: &str = "REGISTER";
/// `SITE DEREGISTER NAME PROOF`: remove a worker.
pub const DEREGISTER: &str = "DEREGISTER";
/// `SITE STATS [FILE]`: download counts since the server started.
pub const STATS: &str = "STATS";
/// `SITE NOCLOBBER [ON|OFF]`: no-clobber uploads for this session.
pub const NOCLOBBER: &str = "NOCLOBBER";
/// `SITE STORED`: where this session's last upload was stored.
pub const STORED: &str = "STORED";

/// The user name the cluster's servers log in to each other with; the password is a proof of
/// the cluster secret over the nonce in the server's greeting (see [`greeting_nonce`]).
pub const CLUSTER_USER: &str = "ftpcalc-cluster";

/// The first greeting line of every ftpcalc server: `220-nonce=<hex>`, a fresh single-use value
/// per connection that the cluster's logins sign, so that nothing on the wire can be replayed.
pub fn nonce_line(nonce: &str) -> String {
    format!("220-nonce={nonce} (ftpcalc)\r\n")
}

/// The nonce in a greeting's text lines, if any.
pub fn greeting_nonce<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    lines.into_iter().find_map(|line| field(line, "nonce"))
}

/// SITE verbs that services may not use: the cluster's own, and libunftp's built-in `MD5`.
pub const RESERVED: [&str; 11] =
    [HELP, INFO, LOOKUP, SERVERS, STATS, NOCLOBBER, STORED, CHALLENGE, REGISTER, DEREGISTER, "MD5"];

/// Every reply code an ftpcalc server may send to a SITE command (success, help, and each
/// refusal `SiteError::to_reply` or libunftp can produce). FTP clients in this crate pass it to
/// suppaftp's `custom_command`, so that a refusal is a reply to look at, not an error; any
/// other code means the exchange went wrong.
pub const SITE_REPLY_CODES: [Status; 12] = [
    Status::CommandOk,
    Status::Help,
    Status::NotAvailable,
    Status::RequestFileActionIgnored,
    Status::ActionAborted,
    Status::BadCommand,
    Status::BadArguments,
    Status::NotImplemented,
    Status::BadSequence,
    Status::NotImplementedParameter,
    Status::NotLoggedIn,
    Status::FileUnavailable,
];

/// The request line a worker signs to register: `REGISTER NAME ADDRESS SERVICES`.
pub fn register_request(name: &str, address: SocketAddr, services: &[String]) -> String {
    format!("{REGISTER} {name} {address} {}", services.join(","))
}

/// The request line a worker signs to deregister: `DEREGISTER NAME`.
pub fn deregister_request(name: &str) -> String {
    format!("{DEREGISTER} {name}")
}

/// `VERB WORD WORD ...`: the request line for a service, rebuilt from parsed words.
pub fn service_line(verb: &str, words: &[String]) -> String {
    let mut line = String::with_capacity(verb.len() + words.iter().map(|word| word.len() + 1).sum::<usize>());
    line.push_str(verb);
    for word in words {
        line.push(' ');
        line.push_str(word);
    }
    line
}

/// `5 (computed by SV1)`: a service's answer with the server that computed it.
pub fn computed_by(answer: &str, server: &str) -> String {
    const SUFFIX: &str = " (computed by ";
    let mut text = String::with_capacity(answer.len() + SUFFIX.len() + server.len() + 1);
    text.push_str(answer);
    text.push_str(SUFFIX);
    text.push_str(server);
    text.push(')');
    text
}

/// `5 (computed by SV1)` → (`5`, Some(`SV1`)); text without the suffix → (text, None).
pub fn split_answer(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once(" (computed by ") {
        Some((answer, server)) => (answer, server.strip_suffix(')')),
        None => (text, None),
    }
}

/// The code of `line` when it is the last line of a reply (`ddd text` or `ddd`), else `None`
/// (a `ddd-` line that opens a multi-line reply, or a continuation line).
pub fn final_code(line: &str) -> Option<u32> {
    let line = line.trim_end_matches(['\r', '\n']);
    let bytes = line.as_bytes();
    let coded = bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit);
    match bytes.get(3) {
        _ if !coded => None,
        None | Some(b' ') => line[..3].parse().ok(),
        Some(_) => None,
    }
}

/// One reply line without its code: `200 text` and `200-text` → `text`; a continuation line
/// loses its leading white space.
pub fn strip_code(line: &str) -> &str {
    let line = line.trim_end();
    let bytes = line.as_bytes();
    let coded = bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit);
    match bytes.get(3) {
        _ if !coded => line.trim_start(),
        None => "",
        Some(b' ' | b'-') => &line[4..],
        Some(_) => line,
    }
}

/// The text lines of a whole reply (as suppaftp returns its body), codes removed, empty lines
/// dropped.
pub fn reply_lines(body: &str) -> Vec<&str> {
    body.lines().map(strip_code).filter(|line| !line.is_empty()).collect()
}

/// The text of a whole reply on one line: its lines without codes, joined by spaces.
pub fn reply_text(body: &str) -> String {
    reply_lines(body).join(" ")
}

/// The value of `key` in a `key=value key=value` text such as `SITE INFO`'s answer.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace().find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// `ADD SV1=127.0.0.1:2122 SV5=10.0.0.2:2200` (a `SITE LOOKUP` answer) → the service and each
/// server's name and address text.
pub fn parse_lookup(text: &str) -> (&str, Vec<(&str, &str)>) {
    let mut words = text.split_whitespace();
    let service = words.next().unwrap_or_default();
    (service, words.filter_map(|pair| pair.split_once('=')).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reply_text_strips_codes_and_joins_lines() {
        assert_eq!(reply_text("200 5 (computed by SV1)\r\n"), "5 (computed by SV1)");
        assert_eq!(reply_text("200-first\r\n second\r\n200 last\r\n"), "first second last");
        assert_eq!(reply_text("200\r\n"), "");
        assert_eq!(reply_lines("214-a\r\n b\r\n214 c\r\n"), ["a", "b", "c"]);
    }

    #[test]
    fn final_lines_are_recognised() {
        assert_eq!(final_code("200 ok\r\n"), Some(200));
        assert_eq!(final_code("226"), Some(226));
        assert_eq!(final_code("200-more"), None);
        assert_eq!(final_code(" 200 inside"), None);
        assert_eq!(final_code("20"), None);
    }

    #[test]
    fn answers_and_lookups_round_trip() {
        let text = computed_by("5", "SV1");
        assert_eq!(split_answer(&text), ("5", Some("SV1")));
        assert_eq!(split_answer("a (computed by b) (computed by W-2)"), ("a (computed by b)", Some("W-2")));
        assert_eq!(split_answer("plain"), ("plain", None));
        assert_eq!(
            parse_lookup("ADD SV1=127.0.0.1:2122 SV5=[::1]:21"),
            ("ADD", vec![("SV1", "127.0.0.1:2122"), ("SV5", "[::1]:21")])
        );
        assert_eq!(field("name=SV0 role=main pid=7", "role"), Some("main"));
        assert_eq!(field("name=SV0", "nam"), None);
        assert_eq!(service_line("ADD", &["7".into(), "1".into()]), "ADD 7 1");
    }

    proptest! {
        #[test]
        fn reply_parsing_never_panics(body in "\\PC{0,200}|([0-9]{3}[ -][^\\r\\n]{0,20}\\r\\n){0,5}") {
            let _ = reply_text(&body);
            for line in body.lines() {
                let _ = (final_code(line), strip_code(line));
            }
            let _ = (parse_lookup(&body), split_answer(&body), field(&body, "name"));
        }

        #[test]
        fn answers_round_trip(answer in "[^()]{0,40}", server in "[A-Za-z0-9_-]{1,32}") {
            let text = computed_by(&answer, &server);
            prop_assert_eq!(split_answer(&text), (answer.as_str(), Some(server.as_str())));
        }
    }
}
