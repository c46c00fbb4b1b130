//! Bounds on the numbers a network or scenario file may hold, checked as each
//! value is read.
//!
//! Checking inside deserialisation (rather than after it) is what gives a
//! mistake its place: serde-saphyr attaches the line and column of the value
//! being read to the error a `deserialize_with` function returns, and
//! [`super::Network::parse`] reports that as `FILE:LINE:COLUMN: message`.
//!
//! A field opts in with one attribute, its bounds written beside it:
//!
//! ```ignore
//! #[serde(deserialize_with = "bounds::count::<_, _, 1, 100_000>")]
//! pub max_sessions: usize,
//! #[serde(deserialize_with = "bounds::octets::<_, _, KIB, GIB>")]
//! pub max_message_size: usize,
//! #[serde(deserialize_with = "bounds::duration::<_, 100, DAY_MS>")]
//! pub idle_timeout: Duration,
//! ```
//!
//! Values are read as their text, so a message quotes what the user wrote
//! (`99999999999999999999`, `1e300`), never a rounded or wrapped number.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::duration;

/// One kibibyte, in octets.
pub const KIB: u64 = 1024;
/// One mebibyte, in octets.
pub const MIB: u64 = 1024 * KIB;
/// One gibibyte, in octets.
pub const GIB: u64 = 1024 * MIB;

/// One second, in the milliseconds [`duration()`] bounds are written in.
pub const SECOND_MS: u64 = 1000;
/// One minute, in milliseconds.
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
/// One hour, in milliseconds.
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
/// One day, in milliseconds.
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// One year (365 days), in milliseconds: [`duration::MAX`].
pub const YEAR_MS: u64 = 365 * DAY_MS;

/// A whole number from `MIN` to `MAX`, as any integer type that holds `MAX`.
pub fn count<'de, D, T, const MIN: u64, const MAX: u64>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let text = scalar(deserializer, "a whole number")?;
    let n = whole(&text, MIN, MAX, &MIN.to_string(), &MAX.to_string()).map_err(D::Error::custom)?;
    fits(n)
}

/// A size in octets from `MIN` to `MAX`; messages give the bound in KiB,
/// MiB or GiB too, since that is how people think of sizes.
pub fn octets<'de, D, T, const MIN: u64, const MAX: u64>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let text = scalar(deserializer, "a number of octets")?;
    let n = whole(&text, MIN, MAX, &size_text(MIN), &size_text(MAX)).map_err(D::Error::custom)?;
    fits(n)
}

/// A duration (`250ms`, `5s`, `2m`, `1h`, `1d`, bare seconds) from `MIN_MS`
/// to `MAX_MS` milliseconds; `MAX_MS` above [`YEAR_MS`] is [`YEAR_MS`].
pub fn duration<'de, D, const MIN_MS: u64, const MAX_MS: u64>(
    deserializer: D,
) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    let text = scalar(deserializer, "a duration such as `5s`")?;
    let value =
        duration::parse_at_most(&text, Duration::from_millis(MAX_MS)).map_err(D::Error::custom)?;
    let min = Duration::from_millis(MIN_MS);
    if value < min {
        return Err(D::Error::custom(format!(
            "`{}` is too short: at least {}",
            text.trim(),
            duration::display(min)
        )));
    }
    Ok(value)
}

/// A port: 0 (any free one, as tests and parallel runs use) to 65535, in
/// words a user knows rather than `invalid u16`.
pub fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let text = scalar(deserializer, "a port")?;
    match whole(&text, 0, u16::MAX.into(), "0", "65535") {
        Ok(n) => fits(n),
        Err(_) => Err(D::Error::custom(format!(
            "`{}` is not a port: ports are 1 to 65535 (0 picks a free one)",
            text.trim()
        ))),
    }
}

/// The text of a scalar, whatever YAML would make of it: `5`, `1e300` and
/// `99999999999999999999` arrive exactly as written, so a message can quote them.
pub(crate) fn scalar<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
) -> Result<String, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .ok_or_else(|| D::Error::custom(format!("no value: write {what}")))
}

/// `text` as a whole number within `min..=max` (named `low` and `high` in messages).
/// Accepts what YAML integers look like (`1_000`, `+5`, `0x400`, `0o17`).
pub(crate) fn whole(text: &str, min: u64, max: u64, low: &str, high: &str) -> Result<u64, String> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = unsigned.replace('_', "");
    let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = digits.strip_prefix("0o") {
        (8, octal)
    } else {
        (10, digits.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("`{text}` is not a whole number"));
    }
    // Only digits are left, so a failed parse means more than u64 holds.
    let value = u64::from_str_radix(digits, radix).ok();
    if negative && value != Some(0) {
        return Err(format!("`{text}` is too small: at least {low}"));
    }
    match value {
        Some(n) if n < min => Err(format!("`{text}` is too small: at least {low}")),
        Some(n) if n <= max => Ok(n),
        _ => Err(format!("`{text}` is too large: at most {high}")),
    }
}

/// `n` as the field's type; the bounds are chosen to fit it, so this fails
/// only on a platform whose `usize` is narrower than a bound.
fn fits<T: TryFrom<u64>, E: serde::de::Error>(n: u64) -> Result<T, E> {
    T::try_from(n).map_err(|_| E::custom(format!("`{n}` is too large for this machine")))
}

/// `1048576 (1 MiB)`: the exact number, and its size in the largest whole unit.
fn size_text(octets: u64) -> String {
    for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if octets >= size && octets % size == 0 {
            return format!("{octets} ({} {unit})", octets / size);
        }
    }
    octets.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_and_their_bounds() {
        let w = |t: &str| whole(t, 1, 100, "1", "100");
        assert_eq!(w("1"), Ok(1));
        assert_eq!(w("100"), Ok(100));
        assert_eq!(w(" +1_0 "), Ok(10));
        assert_eq!(w("0x10"), Ok(16));
        assert_eq!(w("0o10"), Ok(8));
        assert_eq!(w("0"), Err("`0` is too small: at least 1".into()));
        assert_eq!(w("-5"), Err("`-5` is too small: at least 1".into()));
        assert_eq!(w("101"), Err("`101` is too large: at most 100".into()));
        assert_eq!(
            w("99999999999999999999"),
            Err("`99999999999999999999` is too large: at most 100".into())
        );
        assert_eq!(
            w("-99999999999999999999"),
            Err("`-99999999999999999999` is too small: at least 1".into())
        );
        for bad in ["", "-", "1.5", "1e3", "ten", "0x", "0xg", "1 000"] {
            assert_eq!(w(bad), Err(format!("`{bad}` is not a whole number")));
        }
        assert_eq!(whole("-0", 0, 5, "0", "5"), Ok(0));
    }

    #[test]
    fn sizes_are_also_said_in_binary_units() {
        assert_eq!(size_text(KIB), "1024 (1 KiB)");
        assert_eq!(size_text(16 * MIB), "16777216 (16 MiB)");
        assert_eq!(size_text(GIB), "1073741824 (1 GiB)");
        assert_eq!(size_text(1000), "1000");
        assert_eq!(size_text(1536), "1536");
    }
}
