//! Durations on the command line, one syntax for every daemon: `500ms`, `30s`, `10m`, `2h`,
//! or a plain number of seconds.

use std::time::Duration;

/// Parses `500ms`, `30s`, `10m`, `2h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let expected = || {
        format!(
            "`{text}` is not a duration; expected a number with a unit such as `500ms`, `30s`, \
             `10m` or `2h`, or a plain number of seconds"
        )
    };
    let value: u64 = number.parse().map_err(|_| expected())?;
    let per_unit: u64 = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(value)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        _ => return Err(expected()),
    };
    value
        .checked_mul(per_unit)
        .map(Duration::from_secs)
        .ok_or_else(expected)
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
        for bad in ["", "s", "1d", "-1s", "1.5s", "99999999999999999999h"] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.contains("expected a number with a unit"), "{error}");
        }
    }
}
