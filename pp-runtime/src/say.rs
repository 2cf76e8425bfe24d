//! pp's own messages on standard error when the program installed no `tracing` subscriber.
//!
//! pp logs through `tracing`, but most programs install no subscriber, and `tracing`
//! drops every event then: a wrong secret or an unreachable node would go unseen. Every
//! pp event therefore goes through the macros here ([`warn!`](crate::warn),
//! [`error!`](macro@crate::error), [`info!`](crate::info), [`debug!`](crate::debug)), which
//! take `tracing`'s syntax and decide per event:
//! - the program has a subscriber (global, or scoped on this thread): the event goes to it
//!   and nowhere else, filtered as the program filters it;
//! - it has none: the event is printed as one plain line on standard error
//!   (`pp: node 10.0.0.5:60000: authentication failed ...`), if its level passes
//!   `PP_LOG` (`off`, `error`, `warn`, `info`, `debug`, `trace`; default `warn`).
//!
//! The check costs a thread-local read; a filtered-out event formats nothing. (It cannot be
//! `tracing::dispatcher::has_been_set`: that turns true for good at the first scoped
//! default, which is how pp prints its own first line, and every later event would then go
//! to no subscriber at all.)

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::NoSubscriber;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// The environment variable that sets the level of pp's messages on standard error.
pub const LOG_ENV: &str = "PP_LOG";

/// Runs `emit` (a `tracing` event of `level`) so that someone sees it: the program's
/// subscriber if it has one, else pp's line on standard error when `PP_LOG` lets `level`
/// through. Called by pp's logging macros; not meant to be called directly.
#[doc(hidden)]
pub fn event(level: Level, emit: impl FnOnce()) {
    if !no_subscriber_here() {
        emit();
    } else if level <= stderr_level() {
        tracing::dispatcher::with_default(stderr_dispatch(), emit);
    }
}

/// Whether this thread sees no subscriber at all (neither global nor scoped).
fn no_subscriber_here() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.is::<NoSubscriber>())
}

/// The level `PP_LOG` asks for, read once; an unknown value is said once and means `warn`.
pub fn stderr_level() -> LevelFilter {
    static LEVEL: OnceLock<LevelFilter> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let value = std::env::var(LOG_ENV).unwrap_or_default();
        parse_level(&value).unwrap_or_else(|| {
            write_line(&format!(
                "pp: {LOG_ENV}={value:?} is not a level (off, error, warn, info, debug, \
                 trace); using warn"
            ));
            LevelFilter::WARN
        })
    })
}

/// `PP_LOG`'s value as a level filter; empty means the default, `warn`.
fn parse_level(value: &str) -> Option<LevelFilter> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "warn" | "warning" => Some(LevelFilter::WARN),
        "off" | "none" | "0" => Some(LevelFilter::OFF),
        "error" => Some(LevelFilter::ERROR),
        "info" => Some(LevelFilter::INFO),
        "debug" => Some(LevelFilter::DEBUG),
        "trace" => Some(LevelFilter::TRACE),
        _ => None,
    }
}

fn stderr_dispatch() -> &'static Dispatch {
    static DISPATCH: OnceLock<Dispatch> = OnceLock::new();
    DISPATCH.get_or_init(|| {
        Dispatch::new(StderrLines {
            max: stderr_level(),
            next_span: AtomicU64::new(1),
        })
    })
}

/// Writes one whole line at once, so that lines of two threads never mix.
fn write_line(line: &str) {
    let mut stderr = std::io::stderr().lock();
    crate::progress::erase_progress_line(&mut stderr);
    // Nothing sensible is left to do when standard error itself fails.
    let _ = stderr.write_all(line.as_bytes());
    let _ = stderr.write_all(b"\n");
}

/// The subscriber that prints pp's events as plain lines; spans are ignored.
struct StderrLines {
    max: LevelFilter,
    next_span: AtomicU64,
}

impl Subscriber for StderrLines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed).max(1))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        write_line(&line.finish(*event.metadata().level()));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message and fields, gathered for one line.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    fn finish(self, level: Level) -> String {
        let tag = match level {
            Level::ERROR => "error: ",
            Level::WARN | Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        let mut out = format!("pp: {tag}{}", self.message);
        if !self.fields.is_empty() {
            let _ = write!(out, " ({})", self.fields);
        }
        out
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push_str(", ");
            }
            let _ = write!(self.fields, "{}: {value:?}", field.name());
        }
    }
}

/// A pp warning: `tracing::warn!`'s syntax, seen on standard error when the program has
/// no subscriber (see the `say` module).
#[doc(hidden)]
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::say::event($crate::__tracing::Level::WARN, || $crate::__tracing::warn!($($arg)+))
    };
}

/// A pp error: `tracing::error!`'s syntax, seen on standard error when the program has no
/// subscriber (see the `say` module).
#[doc(hidden)]
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::say::event($crate::__tracing::Level::ERROR, || $crate::__tracing::error!($($arg)+))
    };
}

/// pp information: `tracing::info!`'s syntax, on standard error with `PP_LOG=info` when
/// the program has no subscriber (see the `say` module).
#[doc(hidden)]
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::say::event($crate::__tracing::Level::INFO, || $crate::__tracing::info!($($arg)+))
    };
}

/// pp detail: `tracing::debug!`'s syntax, on standard error with `PP_LOG=debug` when the
/// program has no subscriber (see the `say` module).
#[doc(hidden)]
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::say::event($crate::__tracing::Level::DEBUG, || $crate::__tracing::debug!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_unknown_values_are_refused() {
        assert_eq!(parse_level(""), Some(LevelFilter::WARN));
        assert_eq!(parse_level("OFF"), Some(LevelFilter::OFF));
        assert_eq!(parse_level(" debug "), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn every_event_without_a_subscriber_goes_to_standard_error_not_only_the_first() {
        if stderr_level() == LevelFilter::OFF {
            return;
        }
        for _ in 0..3 {
            let mut to_stderr = false;
            event(Level::ERROR, || {
                to_stderr = tracing::dispatcher::get_default(|d| d.is::<StderrLines>());
            });
            assert!(to_stderr);
        }
    }

    #[test]
    fn a_line_has_the_message_then_the_fields() {
        let line = Line {
            message: "node 127.0.0.1:1: refused".into(),
            fields: "attempt: 2".into(),
        };
        assert_eq!(
            line.finish(Level::WARN),
            "pp: node 127.0.0.1:1: refused (attempt: 2)"
        );
        assert_eq!(
            Line::default().finish(Level::ERROR),
            "pp: error: ".to_string()
        );
    }
}
