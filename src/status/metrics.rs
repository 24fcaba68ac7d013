//! `GET /metrics`: the status as OpenMetrics text, encoded by `prometheus-client`.
//!
//! The metrics are built from a snapshot of [`super::Status`] at each scrape, so the stages keep
//! reporting into one place and nothing is counted twice.

use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AppliedOps;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the metrics show, read from the status at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Per namespace: documents and bytes copied.
    pub namespaces: Vec<(String, u64, u64)>,
    /// Replay counters.
    pub applied: AppliedOps,
    /// Lag in seconds, once known.
    pub lag: Option<u32>,
    /// Bytes of the on-disk spool.
    pub spool_bytes: u64,
    /// Seconds since the bookmark was saved, once it was.
    pub bookmark_age: Option<f64>,
}

type Labels = Vec<(String, String)>;

/// A label value as OpenMetrics text quotes it (`prometheus-client` writes values as given, and
/// a collection name may hold `"` or `\`).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot as OpenMetrics text.
pub fn encode(s: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("mongomirror");
    let copied_documents = Family::<Labels, Counter>::default();
    let copied_bytes = Family::<Labels, Counter>::default();
    for (ns, documents, bytes) in &s.namespaces {
        let labels = vec![("namespace".to_string(), escape(ns))];
        copied_documents.get_or_create(&labels).inc_by(*documents);
        copied_bytes.get_or_create(&labels).inc_by(*bytes);
    }
    registry.register(
        "copied_documents",
        "Documents copied during initial sync",
        copied_documents,
    );
    registry.register(
        "copied_bytes",
        "BSON bytes copied during initial sync",
        copied_bytes,
    );
    let applied = Family::<Labels, Counter>::default();
    let a = s.applied;
    for (kind, value) in [
        ("write", a.writes),
        ("command", a.commands),
        ("transaction", a.transactions),
        ("skipped", a.skipped),
        ("missing", a.missing),
    ] {
        applied
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc_by(value);
    }
    registry.register("applied_ops", "Oplog operations replayed, by kind", applied);
    if let Some(lag) = s.lag {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::from(lag));
        registry.register(
            "lag_seconds",
            "Newest source oplog entry minus the last applied one",
            gauge,
        );
    }
    let spool = Gauge::<i64>::default();
    spool.set(i64::try_from(s.spool_bytes).unwrap_or(i64::MAX));
    registry.register("spool_bytes", "Bytes of the on-disk oplog spool", spool);
    if let Some(age) = s.bookmark_age {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(age);
        registry.register(
            "bookmark_age_seconds",
            "Seconds since the bookmark was last saved",
            gauge,
        );
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode_text(&mut out, &registry);
    out
}
