//! Log lines in mongo-tools style: `2026-11-25T12:50:52.296+0000<TAB>message`.
//!
//! Scripts written for mongomirror grep these lines (`Current lag from source: 0s`), so the shape
//! is part of the interface. Every line passes through [`crate::redact::scrub`] on its way out.

use std::fmt;
use std::io::Write;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::Verbosity;

/// The current local time as mongo-tools prints it.
pub fn timestamp() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Formats one line: timestamp, tab, an optional severity word, the message.
pub fn line(level: Level, message: &str) -> String {
    let severity = match level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        _ => "",
    };
    crate::redact::scrub(&format!("{}\t{severity}{message}", timestamp()))
}

struct MongoToolsFormat;

impl<S, N> FormatEvent<S, N> for MongoToolsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut message = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut message), event)?;
        writeln!(writer, "{}", line(*event.metadata().level(), &message))
    }
}

/// stderr, with the copy's progress bars taken off the screen while a line is written, so that
/// a log line never lands inside a bar.
struct BarSafeStderr;

impl Write for BarSafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::copy::progress::suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the global logger; logs go to stderr.
pub fn init(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => "warn",
        Verbosity::Normal => "info",
        Verbosity::Verbose => "debug",
        Verbosity::Trace => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("mongomirror={level}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| BarSafeStderr)
        .event_format(MongoToolsFormat)
        .try_init();
}

/// Prints lines on stderr with timestamps, bypassing the log level (used for the final
/// `Failed:` report, which `--quiet` must not hide).
pub fn print_always(lines: &[String]) {
    let text: String = lines
        .iter()
        .map(|l| crate::redact::scrub(&format!("{}\t{l}\n", timestamp())))
        .collect();
    let _ = BarSafeStderr.write_all(text.as_bytes());
}
