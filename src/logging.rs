//! Log lines in mongo-tools style, `2026-11-25T12:50:52.296+0000<TAB>message`, or, with
//! `--logFormat json`, one JSON object per line for log shippers.
//!
//! Scripts written for mongomirror grep the text lines (`Current lag from source: 0s`), so their
//! shape is part of the interface and stays byte for byte what mongomirror prints. A JSON line
//! holds `time` (UTC, RFC 3339), `level`, `message`, and every structured field the event
//! carries (`namespace`, `documents`, `lag`, `error`, `hint`, ...). Every line passes through
//! [`crate::redact::scrub`] on its way out.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{LogFormat, Verbosity};

/// Whether lines are JSON; set once the command line is known, read by every writer.
static JSON: AtomicBool = AtomicBool::new(false);

/// Chooses the format of every line printed from now on, including [`print_always`] lines.
///
/// `main` calls it before the flags are fully parsed (from a plain scan of the arguments), so
/// that even a usage error comes out as JSON when `--logFormat json` was given.
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// Whether lines are JSON (`--logFormat json`): then progress is never drawn as bars, which
/// would break the one-object-per-line stream even on a terminal.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// The current local time as mongo-tools prints it.
pub fn timestamp() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Formats one text line: timestamp, tab, an optional severity word, the message.
pub fn line(level: Level, message: &str) -> String {
    let severity = match level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        _ => "",
    };
    crate::redact::scrub(&format!("{}\t{severity}{message}", timestamp()))
}

/// Formats one JSON line: `time`, `level` and `message` first, then `fields` in order.
///
/// Each string is scrubbed of secrets before it is escaped, so a secret with quotes or
/// backslashes in it is still found.
pub fn json_line(level: Level, message: &str, fields: Map<String, Value>) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let head = [
        ("time", Value::String(time)),
        ("level", Value::String(level.as_str().to_ascii_lowercase())),
        ("message", scrubbed(Value::String(message.to_string()))),
    ];
    let members: Vec<String> = head
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(
            fields
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "time" | "level" | "message"))
                .map(|(k, v)| (k, scrubbed(v))),
        )
        .map(|(k, v)| format!("{}:{v}", Value::String(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn scrubbed(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(crate::redact::scrub(&s)),
        other => other,
    }
}

/// The two line formats of [`LogFormat`].
///
/// A text line is the message alone: structured fields never change what mongomirror's scripts
/// grep. A JSON line carries the fields too.
struct LineFormat(LogFormat);

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let shown = match self.0 {
            LogFormat::Text => line(level, &fields.message),
            LogFormat::Json => json_line(level, &fields.message, fields.map),
        };
        writeln!(writer, "{shown}")
    }
}

/// Collects an event's fields as JSON values, keeping numbers and booleans typed.
#[derive(Default)]
struct JsonFields {
    message: String,
    map: Map<String, Value>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.map.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(crate::error::brief(&value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields and the message arrive here already formatted with Display.
        self.put(field, Value::from(format!("{value:?}")));
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

/// Installs the global logger; logs go to stderr in the given format.
pub fn init(verbosity: Verbosity, format: LogFormat) {
    set_format(format);
    let level = match verbosity {
        Verbosity::Quiet => "warn",
        Verbosity::Normal => "info",
        Verbosity::Verbose => "debug",
        Verbosity::Trace => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "mongomirror={level}"
        )))
        .with_writer(|| BarSafeStderr)
        .event_format(LineFormat(format))
        .try_init();
}

/// Prints lines on stderr, bypassing the log level (used for the final `Failed:` report, which
/// `--quiet` must not hide).
///
/// Text: each line with its timestamp. JSON: one `error` object whose `message` is the first
/// line; the `caused by:` and `hint:` lines of a [`crate::error::Failure`] become its `error`
/// field (the failure and its causes, joined by `: `) and its `hint` field.
pub fn print_always(lines: &[String]) {
    let text = if json() {
        format!("{}\n", failure_json(lines))
    } else {
        lines
            .iter()
            .map(|l| crate::redact::scrub(&format!("{}\t{l}\n", timestamp())))
            .collect()
    };
    let _ = BarSafeStderr.write_all(text.as_bytes());
}

/// The JSON object of [`print_always`].
fn failure_json(lines: &[String]) -> String {
    let message = lines.first().map(String::as_str).unwrap_or_default();
    let mut chain: Vec<&str> = message.strip_prefix("Failed: ").into_iter().collect();
    let mut fields = Map::new();
    for l in lines.iter().skip(1).map(|l| l.trim_start()) {
        if let Some(cause) = l.strip_prefix("caused by: ") {
            chain.push(cause);
        } else if let Some(hint) = l.strip_prefix("hint: ") {
            fields.insert("hint".to_string(), Value::from(hint));
        }
    }
    if !chain.is_empty() {
        fields.insert("error".to_string(), Value::from(chain.join(": ")));
    }
    // The error goes before the hint, as in the text lines.
    let hint = fields.remove("hint");
    fields.extend(hint.map(|h| ("hint".to_string(), h)));
    json_line(Level::ERROR, message, fields)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{info, warn};

    use super::*;

    /// A writer that keeps what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines two events produce in `format`: a plain warning and an info line with fields.
    fn emit(format: LogFormat) -> Vec<String> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .event_format(LineFormat(format))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            warn!("the oplog window is short");
            info!(
                namespace = "shop.orders",
                documents = 49_778u64,
                lag = 0i64,
                caught_up = true,
                "[#############........]  shop.orders  29000/49778  (58.3%)"
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// `2026-11-25T12:50:52.296+0100` and the rest of the line.
    fn split_timestamp(line: &str) -> (&str, &str) {
        let (ts, rest) = line.split_once('\t').expect("a tab after the timestamp");
        chrono::DateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.3f%z")
            .unwrap_or_else(|e| panic!("{ts:?}: {e}"));
        assert_eq!(ts.len(), "2026-11-25T12:50:52.296+0100".len(), "{ts}");
        (ts, rest)
    }

    #[test]
    fn text_lines_are_mongo_tools_lines_byte_for_byte() {
        let lines = emit(LogFormat::Text);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            split_timestamp(&lines[0]).1,
            "warning: the oplog window is short"
        );
        // Structured fields never change the text line.
        assert_eq!(
            split_timestamp(&lines[1]).1,
            "[#############........]  shop.orders  29000/49778  (58.3%)"
        );
    }

    #[test]
    fn json_lines_carry_time_level_message_and_typed_fields() {
        let lines = emit(LogFormat::Json);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "warn");
        assert_eq!(first["message"], "the oplog window is short");
        let time = first["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{time}"
        );
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["level"], "info");
        assert_eq!(second["namespace"], "shop.orders");
        assert_eq!(second["documents"], 49_778);
        assert_eq!(second["lag"], 0);
        assert_eq!(second["caught_up"], true);
        // time, level, message come first, then the fields in the order they were given.
        assert!(
            lines[1].starts_with("{\"time\":")
                && lines[1].contains("\"level\":\"info\",\"message\":")
                && lines[1].ends_with("\"caught_up\":true}"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_failure_is_one_json_object_with_error_and_hint() {
        let failure = crate::error::Failure::connection("authentication to the source failed")
            .cause("SCRAM failure: bad \"password\"")
            .hint("check --username");
        let line = failure_json(&failure.lines());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["message"], "Failed: authentication to the source failed");
        assert_eq!(
            v["error"],
            "authentication to the source failed: SCRAM failure: bad \"password\""
        );
        assert_eq!(v["hint"], "check --username");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn json_values_are_scrubbed_before_escaping() {
        crate::redact::register_secret("json\"S3cret");
        let mut fields = Map::new();
        fields.insert("error".into(), Value::from("auth with json\"S3cret failed"));
        let line = json_line(Level::ERROR, "uses json\"S3cret", fields);
        assert!(!line.contains("S3cret"), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"], "auth with <redacted> failed");
    }
}
