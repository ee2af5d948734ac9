use super::error::{ParseErrorKind, Result};
use crate::server::{
    controlchan::{
        command::Command,
        commands::{AuthParam, ModeParam, Opt, ProtParam, StruParam},
    },
    password::Password,
};

use bytes::Bytes;
use std::borrow::Cow;
use std::str;

/// Parse the given bytes into a [`Command`].
///
/// [`Command`]: ./enum.Command.html
pub fn parse<T>(line: T) -> Result<Command>
where
    T: AsRef<[u8]> + Into<Bytes>,
{
    // Read in place (it used to be copied twice first: into `Bytes`, then into a `Vec`).
    let (cmd_token, cmd_params) = split_token_params(line.as_ref());
    let cmd_token = normalize(cmd_token)?;

    let cmd = match &*cmd_token {
        "USER" => {
            let username = parse_to_eol(cmd_params)?;
            Command::User { username }
        }
        "PASS" => {
            let password = parse_to_eol(cmd_params)?;
            Command::Pass {
                password: Password::new(password),
            }
        }
        "ACCT" => {
            let account = parse_to_eol(cmd_params)?;
            Command::Acct { account }
        }
        "SYST" => Command::Syst,
        "STAT" => {
            let params = parse_to_eol(cmd_params)?;
            // A path as text (see `text`), kept as bytes for the handler.
            str::from_utf8(&params)?;
            let path = if !params.trim_ascii().is_empty() { Some(params) } else { None };
            Command::Stat { path }
        }
        "TYPE" => {
            // Files are sent as they are stored (no text conversion), which is what `A` (`N`),
            // `I` and `L 8` ask for; EBCDIC, Telnet or ASA format effectors and other byte sizes
            // get `504` (they were answered `200`), no argument `501`.
            let params = parse_to_eol(cmd_params)?;
            let params = params.trim_ascii();
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            let supported = [&b"A"[..], b"A N", b"I", b"L 8"].iter().any(|served| params.eq_ignore_ascii_case(served));
            Command::Type { supported }
        }
        "STRU" => {
            let params = parse_to_eol(cmd_params)?;
            if params.len() > 1 {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            match params.first() {
                Some(b'F') => Command::Stru { structure: StruParam::File },
                Some(b'R') => Command::Stru { structure: StruParam::Record },
                Some(b'P') => Command::Stru { structure: StruParam::Page },
                _ => return Err(ParseErrorKind::InvalidCommand.into()),
            }
        }
        "MODE" => {
            let params = parse_to_eol(cmd_params)?;
            if params.len() > 1 {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            match params.first() {
                Some(b'S') => Command::Mode { mode: ModeParam::Stream },
                Some(b'B') => Command::Mode { mode: ModeParam::Block },
                Some(b'C') => Command::Mode { mode: ModeParam::Compressed },
                _ => return Err(ParseErrorKind::InvalidCommand.into()),
            }
        }
        "HELP" => Command::Help,
        "NOOP" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                // NOOP params are prohibited
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Noop
        }
        "PASV" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Pasv
        }
        "EPSV" => {
            // RFC 2428: `EPSV`, `EPSV <net-prt>` or `EPSV ALL` (the argument was ignored, so
            // `EPSV ALL` opened a port and `EPSV 2` answered for IPv4).
            let params = parse_to_eol(cmd_params)?;
            match params.trim_ascii() {
                b"" => Command::Epsv { protocol: None },
                all if all.eq_ignore_ascii_case(b"ALL") => Command::EpsvAll,
                number => match str::from_utf8(number).ok().and_then(|number| number.parse::<u32>().ok()) {
                    Some(protocol) => Command::Epsv { protocol: Some(protocol) },
                    None => return Err(ParseErrorKind::InvalidCommand.into()),
                },
            }
        }
        "PORT" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            let addr = String::from_utf8_lossy(&params);
            Command::Port { addr: addr.to_string() }
        }
        "EPRT" => {
            // RFC 2428: `EPRT |1|132.235.1.2|6275|` or `EPRT |2|1080::8:800:200C:417A|5282|`.
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Eprt {
                addr: String::from_utf8_lossy(&params).to_string(),
            }
        }
        "RETR" => {
            let path = parse_to_eol(cmd_params)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            let path = text(&path)?;
            // TODO: Can we do this without allocation?
            Command::Retr { path }
        }
        "STOR" => {
            let path = parse_to_eol(cmd_params)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            // TODO:: Can we do this without allocation?
            let path = text(&path)?;
            Command::Stor { path }
        }
        "APPE" => {
            let path = parse_to_eol(cmd_params)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            let path = text(&path)?;
            Command::Appe { path }
        }
        "LIST" => {
            let line = parse_to_eol(cmd_params)?;
            let line_str = text(&line)?;
            // RFC 3659 section 2.2: "Any additional spaces form part
            // of the pathname." split_token_params already consumed the
            // command separator. Consume only one separator per option too.
            // https://www.rfc-editor.org/rfc/rfc3659#section-2.2
            let mut remaining = line_str.as_str();
            while remaining.starts_with('-') {
                if remaining == "--" {
                    remaining = "";
                    break;
                }
                if let Some(rest) = remaining.strip_prefix("-- ") {
                    remaining = rest;
                    break;
                }
                if let Some(pos) = remaining.find(' ') {
                    remaining = &remaining[pos + 1..];
                } else {
                    remaining = "";
                }
            }
            let path = if remaining.is_empty() { None } else { Some(remaining.to_string()) };
            // Note that currently we just throw arguments away.
            Command::List { options: None, path }
        }
        "NLST" => {
            let path = parse_to_eol(cmd_params)?;
            let path = if path.is_empty() { None } else { Some(text(&path)?) };
            Command::Nlst { path }
        }
        "MLST" => {
            let path = parse_to_eol(cmd_params)?;
            let path = if path.is_empty() { None } else { Some(text(&path)?) };
            Command::Mlst { path }
        }
        "MLSD" => {
            let path = parse_to_eol(cmd_params)?;
            let path = if path.is_empty() { None } else { Some(text(&path)?) };
            Command::Mlsd { path }
        }
        "FEAT" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Feat
        }
        "PWD" | "XPWD" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Pwd
        }
        "CWD" | "XCWD" => {
            let path = parse_to_eol(cmd_params)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            let path = text(&path)?;
            let path = path.into();
            Command::Cwd { path }
        }
        "CDUP" | "XCUP" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Cdup
        }
        "OPTS" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            match &params[..] {
                b"UTF8 ON" | b"utf8 on" => Command::Opts {
                    option: Opt::Utf8 { on: true },
                },
                b"UTF8 OFF" | b"utf8 off" => Command::Opts {
                    option: Opt::Utf8 { on: false },
                },
                // `OPTS MLST` with its fact list, possibly empty (RFC 3659 §7.9).
                [m, l, s, t, rest @ ..] if [*m, *l, *s, *t].eq_ignore_ascii_case(b"MLST") && (rest.is_empty() || rest[0] == b' ') => {
                    let facts = String::from_utf8_lossy(rest).trim().to_string();
                    if facts.contains(' ') {
                        return Err(ParseErrorKind::InvalidCommand.into());
                    }
                    Command::Opts { option: Opt::Mlst { facts } }
                }
                _ => return Err(ParseErrorKind::InvalidCommand.into()),
            }
        }
        "DELE" => {
            let path = parse_to_eol(cmd_params)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let path = text(&path)?;
            Command::Dele { path }
        }
        "RMD" | "XRMD" => {
            let path = parse_to_eol(cmd_params)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let path = text(&path)?;
            Command::Rmd { path }
        }
        "QUIT" | "BYE" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            Command::Quit
        }
        "MKD" | "XMKD" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let path = text(&params)?;
            let path = path.into();
            Command::Mkd { path }
        }
        "ALLO" => Command::Allo {},
        "ABOR" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Abor
        }
        "STOU" => {
            // RFC 959 gives STOU no argument, but clients (tnftp's `sunique`) send the name they
            // would like: it becomes the start of the unique name.
            let params = parse_to_eol(cmd_params)?;
            let base = if params.is_empty() { None } else { Some(text(&params)?) };
            Command::Stou { base }
        }
        "RNFR" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let file = text(&params)?;
            let file = file.into();
            Command::Rnfr { file }
        }
        "RNTO" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let file = text(&params)?;
            let file = file.into();
            Command::Rnto { file }
        }
        "AUTH" => {
            let params = parse_to_eol(cmd_params)?;
            if params.len() > 3 {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            match str::from_utf8(&params)?.to_string().to_uppercase().as_str() {
                "TLS" => Command::Auth { protocol: AuthParam::Tls },
                "SSL" => Command::Auth { protocol: AuthParam::Ssl },
                _ => return Err(ParseErrorKind::InvalidCommand.into()),
            }
        }
        "PBSZ" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let size = String::from_utf8_lossy(&params).to_string();
            if size != "0" {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            Command::Pbsz {}
        }
        "PROT" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            if params.len() > 1 {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            match params.first() {
                Some(b'C') => Command::Prot { param: ProtParam::Clear },
                Some(b'S') => Command::Prot { param: ProtParam::Safe },
                Some(b'E') => Command::Prot {
                    param: ProtParam::Confidential,
                },
                Some(b'P') => Command::Prot { param: ProtParam::Private },
                _ => return Err(ParseErrorKind::InvalidCommand.into()),
            }
        }
        "CCC" => {
            let params = parse_to_eol(cmd_params)?;
            if !params.trim_ascii().is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Ccc
        }
        "SIZE" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            let file = text(&params)?.into();
            Command::Size { file }
        }
        "REST" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let offset = String::from_utf8_lossy(&params).to_string();
            if let Ok(val) = offset.parse::<u64>() {
                Command::Rest { offset: val }
            } else {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
        }
        "MDTM" => {
            let params = parse_to_eol(cmd_params)?;
            if params.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }

            let file = text(&params)?.into();
            Command::Mdtm { file }
        }
        "MFMT" => {
            // draft-somers-ftp-mfxx: `MFMT YYYYMMDDHHMMSS[.sss] path`.
            let params = parse_to_eol(cmd_params)?;
            let params = text(&params)?;
            let (time, path) = params.split_once(' ').ok_or(ParseErrorKind::InvalidCommand)?;
            if path.is_empty() {
                return Err(ParseErrorKind::InvalidCommand.into());
            }
            Command::Mfmt {
                time: time.to_string(),
                path: path.into(),
            }
        }
        "SITE" => {
            let (cmd_token, cmd_params) = split_token_params(cmd_params);
            let cmd_token = normalize(cmd_token)?;

            match &*cmd_token {
                "MD5" => {
                    let params = parse_to_eol(cmd_params)?;
                    if params.is_empty() {
                        return Err(ParseErrorKind::InvalidCommand.into());
                    }

                    let file = text(&params)?.into();
                    Command::Md5 { file }
                }
                _ => {
                    let params = parse_to_eol(cmd_params)?;
                    Command::Site {
                        command: cmd_token.into_owned(),
                        arguments: text(&params)?,
                    }
                }
            }
        }
        _ => {
            let params = parse_to_eol(cmd_params)?;
            Command::Other {
                command_name: cmd_token.into_owned(),
                arguments: String::from_utf8_lossy(&params).to_string(),
            }
        }
    };

    Ok(cmd)
}

/// A parameter that is, or becomes, a path or a name, as text. Bytes that are not UTF-8 are
/// refused (`500 Invalid UTF8 in command`): mapped to U+FFFD, as they were, two different names
/// became one, and a `STOR` of `caf\xe9.txt` replaced the file a `STOR` of `caf\xe8.txt` had
/// made.
/// A NUL byte, which no file name can hold, gets `501` (it was handed to the file system, whose
/// refusal was answered `451 local error`).
fn text(bytes: &[u8]) -> Result<String> {
    if bytes.contains(&0) {
        return Err(ParseErrorKind::InvalidCommand.into());
    }
    Ok(str::from_utf8(bytes)?.to_owned())
}

fn split_token_params(vec: &[u8]) -> (&[u8], &[u8]) {
    let mut iter = vec.splitn(2, |&b| b == b' ' || b == b'\r' || b == b'\n');
    let token = iter.next().unwrap_or(&[]);
    let params = iter.next().unwrap_or(&[]);
    (token, params)
}

/// The parameter up to the line's end: a copy of it, without its `CRLF` (or `LF`), and with
/// the `NUL` of a `CR NUL` (Telnet's bare carriage return) dropped.
fn parse_to_eol(line: &[u8]) -> Result<Bytes> {
    // The common line: no `CR` or `LF` but its end, so nothing to drop. Copied at once, in a
    // buffer of its size (the loop below copies byte by byte; its buffer used to grow as it
    // went: two allocations for a file name, one of them a reallocation).
    if let Some(text) = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n"))
        && !text.iter().any(|&byte| byte == b'\r' || byte == b'\n')
    {
        return Ok(Bytes::copy_from_slice(text));
    }
    parse_to_eol_escaped(line)
}

/// [`parse_to_eol`] byte by byte (any line).
fn parse_to_eol_escaped(line: &[u8]) -> Result<Bytes> {
    let mut dest: Vec<u8> = Vec::with_capacity(line.len());

    if line.is_empty() || line[0] == b'\n' {
        return Ok(Bytes::from(dest));
    } else if line.len() == 1 {
        return Err(ParseErrorKind::InvalidEol.into());
    } else if line.len() == 2 {
        return match (line[0], line[1]) {
            (b'\r', b'\n') => Ok(dest.into()),
            (b'\n', _) => Ok(dest.into()),
            (_, b'\n') => {
                dest.push(line[0]);
                Ok(dest.into())
            }
            (_, _) => Err(ParseErrorKind::InvalidEol.into()),
        };
    }
    dest.push(line[0]);

    let mut i = 1;
    while i < line.len() - 1 {
        match (line[i - 1], line[i], line[i + 1]) {
            (_, b'\r', b'\0') => dest.push(line[i]),
            (b'\r', b'\0', _) => {} // skip the NUL byte
            (_, b'\r', b'\n') => {
                return Ok(dest.into());
            }
            (_, _, b'\n') => {
                dest.push(line[i]);
                return Ok(dest.into());
            }
            (_, b'\r', _) => {
                return Err(ParseErrorKind::InvalidEol.into());
            }
            (_, _, _) => {
                dest.push(line[i]);
            }
        }
        i += 1;
    }
    Err(ParseErrorKind::InvalidEol.into())
}

/// The command (or SITE subcommand) name in upper case: borrowed when it is already (`PASV`,
/// `RETR`: what clients send), instead of a new `String` for every command line.
fn normalize(token: &[u8]) -> Result<Cow<'_, str>> {
    let token = str::from_utf8(token)?;
    Ok(match token.bytes().any(|byte| byte.is_ascii_lowercase() || !byte.is_ascii()) {
        false => Cow::Borrowed(token),
        true => Cow::Owned(token.to_uppercase()),
    })
}

#[cfg(test)]
mod eol_tests {
    use super::*;

    #[test]
    fn a_command_name_is_upper_case_whatever_the_client_wrote() {
        for (token, upper) in [("RETR", "RETR"), ("retr", "RETR"), ("ReTr", "RETR"), ("", ""), ("süß", "SÜSS"), ("X-Y1", "X-Y1")] {
            let normal = normalize(token.as_bytes()).unwrap();
            assert_eq!(normal, token.to_uppercase(), "{token:?}");
            assert_eq!(normal, upper);
            // Borrowed when it is ASCII in upper case already.
            assert_eq!(matches!(normal, Cow::Borrowed(_)), token.is_ascii() && token == upper, "{token:?}");
        }
        assert!(normalize(b"\xff").is_err());
    }

    /// Every line of up to six bytes over `a`, `CR`, `LF` and `NUL`.
    fn lines() -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..6 {
            last = last
                .iter()
                .flat_map(|line: &Vec<u8>| [b'a', b'\r', b'\n', 0].map(|byte| [line.as_slice(), &[byte]].concat()))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_fast_path_agrees_with_the_byte_by_byte_parse() {
        for line in lines() {
            let fast = parse_to_eol(&line).map_err(|error| format!("{error:?}"));
            let slow = parse_to_eol_escaped(&line).map_err(|error| format!("{error:?}"));
            assert_eq!(fast, slow, "{line:?}");
        }
        assert_eq!(parse_to_eol(b"small/f0001.bin\r\n").ok(), Some(Bytes::from_static(b"small/f0001.bin")));
        assert_eq!(parse_to_eol(b"a b\r\0c\r\n").ok(), Some(Bytes::from_static(b"a b\rc")));
    }
}
