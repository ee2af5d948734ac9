//! [`PlainText`]: the text log line off a terminal, the same as tracing-subscriber's default
//! (`Full`) format without colours, written for less.
//!
//! ```text
//! 2026-12-03T23:38:41.969645Z  INFO session{id=2 server="SV0" peer=127.0.0.1:40786}: ftpcalc::ftp_backend::transfer: transfer direction="download" bytes=4096
//! ```
//!
//! The default format paints every piece of a line with a style, even an empty one when
//! colours are off (about 30 calls into the styling code per line), and formats the time
//! through the general formatting machinery: those were a third of the cost of a line, and one
//! info line is written per transfer and per routed request (callgrind: 11.6k instructions per
//! line, 17% of a routed `SITE ADD`). Here the time, the level, the spans and the target are
//! written directly. [`PlainFields`] writes the fields as the default field formatter does,
//! with numbers, booleans and plain strings written directly (the default paints every name and
//! `=` and formats every value through `Debug`: 6.1k instructions for a transfer's six fields).
//! Each line is gathered on the stack (`Gathered`) and goes into the subscriber's buffer in
//! three writes rather than one per piece (28 for a transfer's line; with the message written
//! without the default's character-by-character escaping when it has nothing to escape, a
//! transfer's line went from 4.6k to 3.7k instructions).

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The default text format without colours (see the module's documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainText;

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Gathered::new(writer.by_ref());
        line.write_str(timestamp(SystemTime::now(), &mut [0; 27]))?;
        line.write_str(level(metadata.level()))?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                line.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        line.write_char('{')?;
                        line.write_str(fields)?;
                        line.write_char('}')?;
                    }
                }
                line.write_char(':')?;
            }
            if seen {
                line.write_char(' ')?;
            }
        }
        line.write_str(metadata.target())?;
        line.write_str(": ")?;
        line.flush()?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The default field format without colours (`name=value`, strings quoted, the message
/// first without a name), with the common values written directly (see the module's
/// documentation). Messages, errors, floats and names the default treats specially are left to
/// the default's own visitor, so every line reads as before.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor { line: Gathered::new(writer), first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result.and_then(|()| visitor.line.flush())
    }
}

/// Writes one event's or span's fields for [`PlainFields`].
struct PlainVisitor<'a> {
    line: Gathered<'a>,
    /// No field written yet (the next needs no separating space).
    first: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// The separating space the next field needs.
    fn space(&self) -> &'static str {
        if self.first {
            ""
        } else {
            " "
        }
    }

    /// Writes the separator, `name=` and the value, returns true, unless the field is one the
    /// default visitor treats specially (the message, a raw `r#` name, a `log.` field), or an
    /// earlier write failed.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Gathered<'_>) -> fmt::Result) -> bool {
        let name = field.name();
        if self.result.is_err() || name == "message" || name.starts_with("r#") || name.starts_with("log.") {
            return false;
        }
        let space = self.space();
        self.first = false;
        self.result = self
            .line
            .write_str(space)
            .and_then(|()| self.line.write_str(name))
            .and_then(|()| self.line.write_char('='))
            .and_then(|()| value(&mut self.line));
        true
    }

    /// Writes an event's message as the default visitor does (after a space unless first,
    /// without a name, through `Debug`) and returns true, when it fits in what is gathered and
    /// has nothing the default would escape (it escapes terminal control characters: then, or
    /// after an earlier failed write, this writes nothing and returns false).
    fn message(&mut self, value: &dyn fmt::Debug) -> bool {
        if self.result.is_err() {
            return false;
        }
        let piece = &mut self.line.piece;
        let mark = piece.len;
        let written = piece.write_str(if self.first { "" } else { " " }).and_then(|()| write!(piece, "{value:?}"));
        let escaped = |byte: &u8| !byte.is_ascii() || matches!(byte, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f);
        if written.is_err()
            || (self.line.writer.sanitizes_ansi_escapes() && piece.bytes[mark..piece.len].iter().any(escaped))
        {
            piece.len = mark;
            return false;
        }
        self.first = false;
        true
    }

    /// Has the default visitor write the field, as the default format would.
    fn by_default(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        if let Err(error) = self.line.flush() {
            self.result = Err(error);
            return;
        }
        let mut default = DefaultVisitor::new(self.line.writer.by_ref(), self.first);
        record(&mut default);
        self.result = default.finish();
        // The default skips `log.` fields (metadata of records from the `log` crate).
        if !field.name().starts_with("log.") {
            self.first = false;
        }
    }
}

/// Text for a line gathered in a [`Piece`] and written into the line when the piece is full
/// or the text done (each write into the line is a call through `dyn fmt::Write`, whatever its
/// length: a transfer's line made 28 of them). Call [`Gathered::flush`] at the end.
struct Gathered<'a> {
    writer: Writer<'a>,
    piece: Piece,
}

impl<'a> Gathered<'a> {
    fn new(writer: Writer<'a>) -> Self {
        Gathered { writer, piece: Piece { bytes: [0; 256], len: 0 } }
    }

    /// Puts what is gathered into the line.
    fn flush(&mut self) -> fmt::Result {
        let written = self.writer.write_str(self.piece.as_str());
        self.piece.len = 0;
        written
    }
}

impl fmt::Write for Gathered<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.piece.write_str(text).is_ok() {
            return Ok(());
        }
        self.flush()?;
        if text.len() > self.piece.bytes.len() {
            self.writer.write_str(text)
        } else {
            self.piece.write_str(text)
        }
    }
}

/// Text on the stack: a `str` that does not fit is not written (nothing of it).
struct Piece {
    bytes: [u8; 256],
    len: usize,
}

impl Piece {
    /// What was written (whole `str`s only, so always text).
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for Piece {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let place = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        place.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.field(field, |out| out.write_str(itoa::Buffer::new().format(value))) {
            self.by_default(field, |default| default.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.field(field, |out| out.write_str(itoa::Buffer::new().format(value))) {
            self.by_default(field, |default| default.record_i64(field, value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.field(field, |out| out.write_str(if value { "true" } else { "false" })) {
            self.by_default(field, |default| default.record_bool(field, value));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // `Debug` of a string escapes quotes, backslashes and anything outside printable ASCII.
        let plain = value.bytes().all(|byte| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\');
        let quoted = |out: &mut Gathered<'_>| {
            out.write_char('"')?;
            out.write_str(value)?;
            out.write_char('"')
        };
        if !(plain && self.field(field, quoted)) {
            self.by_default(field, |default| default.record_str(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let done = if field.name() == "message" {
            self.message(value)
        } else {
            self.field(field, |out| write!(out, "{value:?}"))
        };
        if !done {
            self.by_default(field, |default| default.record_debug(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.by_default(field, |default| default.record_error(field, value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.by_default(field, |default| default.record_f64(field, value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.by_default(field, |default| default.record_i128(field, value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.by_default(field, |default| default.record_u128(field, value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.by_default(field, |default| default.record_bytes(field, value));
    }
}

/// The level as the default format writes it, with the spaces around it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => " TRACE ",
        Level::DEBUG => " DEBUG ",
        Level::INFO => "  INFO ",
        Level::WARN => "  WARN ",
        Level::ERROR => " ERROR ",
    }
}

/// `time` in RFC 3339 with microseconds, in UTC (`2026-12-03T23:38:41.969645Z`), written digit
/// by digit into `text` (27 bytes, on the stack).
fn timestamp(time: SystemTime, text: &mut [u8; 27]) -> &str {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    *text = *b"0000-00-00T00:00:00.000000Z";
    digits(&mut text[0..4], year.clamp(0, 9999) as u64);
    digits(&mut text[5..7], u64::from(month));
    digits(&mut text[8..10], u64::from(day));
    digits(&mut text[11..13], of_day / 3600);
    digits(&mut text[14..16], of_day / 60 % 60);
    digits(&mut text[17..19], of_day % 60);
    digits(&mut text[20..26], u64::from(since.subsec_micros()));
    std::str::from_utf8(text).unwrap_or("0000-00-00T00:00:00.000000Z")
}

/// Writes the last `place.len()` decimal digits of `value` into `place`, zero-padded.
fn digits(place: &mut [u8], mut value: u64) {
    for digit in place.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The date of the `days`-th day after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn timestamps_match_chrono_across_the_calendar() {
        for seconds in [0u64, 59, 86_399, 86_400, 951_782_400, 1_709_164_800, 4_107_542_399, 1_796_342_920] {
            for micros in [0u32, 1, 999_999] {
                let time = UNIX_EPOCH + Duration::new(seconds, micros * 1000);
                let expected = chrono::DateTime::<chrono::Utc>::from(time).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                assert_eq!(timestamp(time, &mut [0; 27]), expected);
            }
        }
    }

    /// A writer that keeps what the subscriber writes.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An error with a cause, as `record_error` sees it.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("outer \"failure\"")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// The lines the events below make with the plain format and fields, or the default ones
    /// (the timestamps cut off).
    fn line_with(plain: bool) -> String {
        let kept = Kept::default();
        let sink = kept.clone();
        let builder = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false);
        let log = || {
            let span = tracing::info_span!("session", id = 7u64, server = "SV0", user = tracing::field::Empty);
            span.record("user", "ann");
            span.record("user", "bob \"b\"");
            span.in_scope(|| {
                tracing::info!(direction = "download", path = %"/a b.txt", bytes = 4096u64, complete = true, "transfer")
            });
            let quoted = "say \"hi\"\\ \u{1b}[31m été\t\n";
            tracing::info!(
                zero = 0u64,
                max = u64::MAX,
                min = i64::MIN,
                minus = -12i64,
                no = false,
                text = quoted,
                empty = "",
                shown = %quoted,
                debugged = ?Some(quoted),
                r#type = "raw",
                ratio = 0.5f64,
                big = u128::MAX,
                small = i128::MIN,
                "message with {} and \u{1b}[31m",
                "args"
            );
            let error = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "inner"));
            tracing::warn!(error = &error as &(dyn std::error::Error + 'static), plain = %error, "outside a span");
            tracing::info!(only = 1u64);
            tracing::info!(message = "message as a field", after = 2i64);
            // Longer than a `Piece`, a C1 control character, a message after a field.
            let (long, huge) = ("x".repeat(200), "y".repeat(300));
            tracing::info!(long = long.as_str(), debugged = ?long, number = 5u64, "{long} long message");
            tracing::info!(huge = huge.as_str(), number = 6u64, "{huge} huge message");
            tracing::info_span!("wide", huge = huge.as_str()).in_scope(|| tracing::info!(n = 1u64, "in a wide span"));
            tracing::info!(ok = true, "c1 \u{85} control");
            tracing::info!(path = "a/b", "transfer");
        };
        if plain {
            tracing::subscriber::with_default(builder.event_format(PlainText).fmt_fields(PlainFields).finish(), log);
        } else {
            tracing::subscriber::with_default(builder.finish(), log);
        }
        let text = String::from_utf8(kept.0.lock().expect("lock").clone()).expect("UTF-8");
        text.lines().map(|line| line.split_once(' ').map(|(_, rest)| rest).unwrap_or(line).to_string() + "\n").collect()
    }

    #[test]
    fn lines_read_as_the_default_format_without_colours() {
        let plain = line_with(true);
        assert_eq!(plain, line_with(false));
        assert!(plain.contains(" INFO session{id=7 server=\"SV0\" user=\"ann\" user=\"bob \\\"b\\\"\"}: "), "{plain}");
        assert!(
            plain.contains(" zero=0 max=18446744073709551615 min=-9223372036854775808 minus=-12 no=false "),
            "{plain}"
        );
        assert!(plain.contains(" c1 \\u{85} control ok=true\n"), "{plain}");
        assert_eq!(plain.lines().count(), 11, "{plain}"); // `shown` (Display) keeps its newline
    }
}
