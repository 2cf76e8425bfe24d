//! The kinds of value `ppserver`'s flags take, each parsed by one function whatever flag
//! carries it: sizes in bytes, durations in seconds, counts and log levels.
//!
//! Written here rather than taken from a crate: the syntax is pp's own (`K`, `M`, `G` are
//! powers of 1024; durations are plain seconds with fractions), which size and duration
//! crates read differently, and each parser is a dozen lines.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A size in bytes as written on the command line: `1048576`, `512K`, `64M`, `2G` (the
/// suffixes are powers of 1024, either case). Above 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub(crate) u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("bad size `{text}` (bytes, or with the suffix K, M or G)");
        let trimmed = text.trim();
        let (digits, shift) = match trimmed.char_indices().last().ok_or_else(bad)? {
            (i, 'k' | 'K') => (&trimmed[..i], 10),
            (i, 'm' | 'M') => (&trimmed[..i], 20),
            (i, 'g' | 'G') => (&trimmed[..i], 30),
            _ => (trimmed, 0),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_mul(1 << shift)
            .filter(|&n| n > 0)
            .map(ByteSize)
            .ok_or_else(bad)
    }
}

/// Written back with the largest suffix that divides it, as help shows the defaults.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        match [(30, 'G'), (20, 'M'), (10, 'K')]
            .into_iter()
            .find(|&(shift, _)| bytes != 0 && bytes % (1 << shift) == 0)
        {
            Some((shift, suffix)) => write!(f, "{}{suffix}", bytes >> shift),
            None => write!(f, "{bytes}"),
        }
    }
}

/// A duration written in seconds, fractions allowed: above 0 and below 10^9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seconds(pub(crate) Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(|s| Seconds(Duration::from_secs_f64(s)))
            .ok_or_else(|| format!("bad duration `{text}` (seconds, above 0)"))
    }
}

/// Written back as a number of seconds, as help shows the defaults.
impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A count of at least 1 (workers, connections, jobs).
pub(crate) fn parse_count(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .ok_or_else(|| format!("bad number `{text}` (at least 1)"))
}

/// A log level by name, any case; `warning` is `warn`.
pub(crate) fn parse_level(text: &str) -> Result<tracing::Level, String> {
    match text.to_ascii_lowercase().as_str() {
        "error" => Ok(tracing::Level::ERROR),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "info" => Ok(tracing::Level::INFO),
        "debug" => Ok(tracing::Level::DEBUG),
        "trace" => Ok(tracing::Level::TRACE),
        _ => Err(format!(
            "bad log level `{text}` (error, warn, info, debug, trace)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_suffixes_k_m_g() {
        let size = |text: &str| text.parse::<ByteSize>().map(|s| s.0);
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("512K"), Ok(512 << 10));
        assert_eq!(size("64m"), Ok(64 << 20));
        assert_eq!(size("2G"), Ok(2 << 30));
        assert!(size("0").is_err());
        assert!(size("").is_err());
        assert!(size("1T").unwrap_err().contains("bad size"));
        assert!(size("99999999999G").is_err());
    }

    #[test]
    fn sizes_and_durations_read_back_as_written() {
        for text in ["512M", "4G", "64M", "1000", "1536K"] {
            assert_eq!(text.parse::<ByteSize>().unwrap().to_string(), text);
        }
        for text in ["5", "0.5", "60"] {
            assert_eq!(text.parse::<Seconds>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn durations_counts_and_levels() {
        assert_eq!(
            "1.5".parse::<Seconds>(),
            Ok(Seconds(Duration::from_millis(1500)))
        );
        for bad in ["0", "-1", "inf", "NaN", "1e9", "soon"] {
            assert!(bad.parse::<Seconds>().unwrap_err().contains("duration"));
        }
        assert_eq!(parse_count("3"), Ok(3));
        assert!(parse_count("0").unwrap_err().contains("at least 1"));
        assert_eq!(parse_level("Warning"), Ok(tracing::Level::WARN));
        assert!(parse_level("loud").unwrap_err().contains("log level"));
    }
}
