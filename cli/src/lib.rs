//! What the three binaries (gateway, api, loadtest) share on the command
//! line, so they behave alike:
//!
//! * durations in human form wherever a duration is taken (`30s`, `2m`,
//!   `500ms`, `1h`), the older bare numbers still accepted in the unit the
//!   flag names (`--resume-window-ms 120000`, `--duration 5`);
//! * a runtime error printed as one line, `error: <cause>: <cause>…`, exit
//!   status 1, never a backtrace (usage errors are clap's: status 2).

use std::{fmt::Display, time::Duration};

/// Parses `<number><unit>` (units `ms`, `s`, `m`, `h`; the number may have
/// a fraction: `1.5s`), or a bare number in `bare_unit`.
pub fn parse_duration(text: &str, bare_unit: Duration) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 500ms, 30s, 2m, 1h)"))?;
    let unit = match unit.trim() {
        "" => bare_unit,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Duration::try_from_secs_f64(unit.as_secs_f64() * value)
        .map_err(|_| format!("{text:?} is too long"))
}

/// For `_ms` flags: milliseconds, bare or in human form.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    parse_duration(text, Duration::from_millis(1)).map(|d| d.as_millis() as u64)
}

/// For flags in seconds: seconds (fractions allowed), bare or in human
/// form.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    parse_duration(text, Duration::from_secs(1)).map(|d| d.as_secs_f64())
}

/// Runs `main` and turns an error into one line on stderr and exit
/// status 1, where a `main` returning `Result` would print `Error: ` and a
/// multi-line debug form, with a backtrace when `RUST_BACKTRACE` is set.
pub fn run<E: Display>(main: impl FnOnce() -> Result<(), E>) {
    if let Err(e) = main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// A configuration that parsed but is refused (a bad config file, values
/// that contradict each other): one line on stderr, exit status 2, as
/// clap does for usage errors.
pub fn usage_error(error: impl Display) -> ! {
    eprintln!("error: {error}");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_and_bare_durations() {
        assert_eq!(parse_millis("120000"), Ok(120_000));
        assert_eq!(parse_millis("2m"), Ok(120_000));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("1.5s"), Ok(1_500));
        assert_eq!(parse_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_seconds("5"), Ok(5.0));
        assert_eq!(parse_seconds("5s"), Ok(5.0));
        assert_eq!(parse_seconds("250ms"), Ok(0.25));
        assert_eq!(parse_seconds("2m"), Ok(120.0));
        for bad in ["", "s", "5x", "-1s", "1..2s", "five"] {
            assert!(parse_millis(bad).is_err(), "{bad:?} refused");
        }
    }
}
