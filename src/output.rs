//! The one output channel of the command line: what skulk tells people on
//! standard error (progress, notes, warnings, errors, each with one fixed
//! prefix), how much of it (`--quiet`, `--verbose`), colour (a terminal and
//! no `NO_COLOR`), timestamps (a rank's log), and writing results to
//! standard output, where a reader that went away (`skulk plan -o json |
//! head -1`) is a normal end, not an error.
//!
//! The level and the timestamp switch are set once, by the command line,
//! before any command runs; library code only calls the functions here.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How much skulk says on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors and warnings only (`--quiet`).
    Quiet = 0,
    /// Also progress and notes (the default).
    Normal = 1,
    /// Also every command run on a host and other details (`--verbose`).
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);
static TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// Sets the level for the rest of the process.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        1 => Level::Normal,
        _ => Level::Verbose,
    }
}

/// Starts every line written here with a UTC timestamp (a rank's log, which
/// outlives the terminal that started it).
pub fn set_timestamps(on: bool) {
    TIMESTAMPS.store(on, Ordering::Relaxed);
}

/// `2025-01-31T12:34:56.789Z ` when timestamps are on, else empty: the
/// prefix of a line of the rank log (also used for llama.cpp's own lines).
pub fn line_prefix() -> String {
    if TIMESTAMPS.load(Ordering::Relaxed) {
        format!("{} ", utc_timestamp(SystemTime::now()))
    } else {
        String::new()
    }
}

/// What is happening (`h1: started rank 0`): hidden by `--quiet`.
pub fn progress(message: impl Display) {
    if level() >= Level::Normal {
        line(&message.to_string());
    }
}

/// Something the user may not expect: hidden by `--quiet`.
pub fn note(message: impl Display) {
    if level() >= Level::Normal {
        line(&format!("note: {message}"));
    }
}

/// The next step after a failure or an unhealthy state: hidden by `--quiet`.
pub fn hint(message: impl Display) {
    if level() >= Level::Normal {
        line(&format!("hint: {message}"));
    }
}

/// Text shown as it is, at every level (what `SKULK_LOG_COMMANDS` asks for).
pub fn raw(message: impl Display) {
    line(&message.to_string());
}

/// A piece of another program's log line, as it came (llama.cpp writes a
/// line in several pieces), at every level: the line prefix goes before a
/// piece that starts a line.
pub fn fragment(text: &str, starts_line: bool) {
    let prefix = if starts_line {
        line_prefix()
    } else {
        String::new()
    };
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{prefix}{text}").as_bytes());
}

/// Always shown.
pub fn warn(message: impl Display) {
    line(&format!("warning: {message}"));
}

/// Always shown: the failure that ends the command.
pub fn error(message: impl Display) {
    line(&format!("error: {message}"));
}

/// Writes `text` and a newline to standard error, after the timestamp when
/// timestamps are on (once per message: the lines of a multi-line error
/// belong to its first). Errors writing standard error are ignored: there
/// is nowhere left to report them.
fn line(text: &str) {
    let out = format!("{}{text}\n", line_prefix());
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// Whether standard output gets colour: only a terminal, and never with
/// `NO_COLOR` set to anything non-empty (no-color.org).
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && !crate::settings::env::no_color()
}

/// Writes a result to standard output and flushes it. The error is the
/// writer's; callers turn `BrokenPipe` into a quiet end (see
/// [`is_closed_pipe`]).
pub fn stdout(text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_ref())?;
    out.flush()
}

/// Whether an I/O error means the reader of our output went away: the
/// normal end of `skulk ... | head`, not a failure.
pub fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC).
pub fn utc_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, public domain): `(year, month, day)`. The one
/// calendar of skulk (timestamps here, the API's dates and templates'
/// `strftime_now`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 13:14:15.5 UTC.
        let t = UNIX_EPOCH + Duration::from_millis(1_709_212_455_500);
        assert_eq!(utc_timestamp(t), "2024-02-29T13:14:15.500Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(utc_timestamp(t), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn a_closed_pipe_is_recognised() {
        let e = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_closed_pipe(&e));
        assert!(!is_closed_pipe(&std::io::Error::other("x")));
    }
}
