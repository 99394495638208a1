//! Durations on the command line, one syntax for every daemon: `500ms`, `30s`, `10m`, `2h`,
//! or a plain number of seconds.

use std::time::Duration;

/// Parses a duration as `humantime` does (`500ms`, `30s`, `10m`, `2h`, `7d`, `1h 30m`), or a
/// plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, crate::config::Invalid> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| crate::config::Invalid(format!("`{text}` is not a duration: too large")));
    }
    humantime::parse_duration(text).map_err(|e| {
        crate::config::Invalid(format!(
            "`{text}` is not a duration ({e}); expected a number with a unit such as `500ms`, \
             `30s`, `10m` or `2h`, or a plain number of seconds"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_plain_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_input_says_what_was_expected() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 24 * 3600)));
        for bad in ["", "s", "1x", "-1s", "1.5.2s", "99999999999999999999h"] {
            let error = parse_duration(bad).expect_err(bad).0;
            assert!(
                error.contains("expected a number with a unit") || error.contains("too large"),
                "{error}"
            );
        }
    }
}
