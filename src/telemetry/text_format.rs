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
//! written directly; the fields are still formatted by the subscriber's own field formatter,
//! so they read exactly as before.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
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
        writer.write_str(timestamp(SystemTime::now(), &mut [0; 27]))?;
        writer.write_str(level(metadata.level()))?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_char('}')?;
                    }
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(metadata.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
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

    /// The line one event makes with `format` (the timestamp cut off).
    fn line_with(plain: bool) -> String {
        let kept = Kept::default();
        let sink = kept.clone();
        let builder = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false);
        let log = || {
            let span = tracing::info_span!("session", id = 7u64, server = "SV0", user = tracing::field::Empty);
            span.record("user", "ann");
            span.in_scope(|| {
                tracing::info!(direction = "download", path = %"/a b.txt", bytes = 4096u64, complete = true, "transfer")
            });
            tracing::warn!(error = ?std::io::ErrorKind::NotFound, "outside a span");
        };
        if plain {
            tracing::subscriber::with_default(builder.event_format(PlainText).finish(), log);
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
        assert!(plain.contains(" INFO session{id=7 server=\"SV0\" user=\"ann\"}: "), "{plain}");
    }
}
