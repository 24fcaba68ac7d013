//! Copy progress, drawn in one place: the rest of the copy only reports counts.
//!
//! Each collection being copied shows mongomirror's line,
//! `[########.............]  db.coll  29000/49778  (58.3%)`. On a terminal indicatif draws it as a
//! live bar; otherwise (a pipe, a log file, a test) the same text is logged every
//! [`LOG_INTERVAL`], plus once more when the collection is done, so scripts can follow it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

use crate::cli::Verbosity;
use crate::status::Status;

/// Width of the bar between the brackets, as in mongomirror's output.
const BAR_WIDTH: u64 = 21;
/// How often progress lines are logged when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// mongomirror's progress text for one collection.
pub fn line(ns: &str, copied: u64, total: u64) -> String {
    // The total is an estimate taken before the copy; never show more than 100%.
    let total = total.max(copied);
    let fraction = if total == 0 {
        1.0
    } else {
        copied as f64 / total as f64
    };
    let filled = ((fraction * BAR_WIDTH as f64).floor() as u64).min(BAR_WIDTH);
    format!(
        "[{}{}]  {ns}  {copied}/{total}  ({:.1}%)",
        "#".repeat(filled as usize),
        ".".repeat((BAR_WIDTH - filled) as usize),
        fraction * 100.0
    )
}

/// The bars being drawn, if any, so that log lines can be written around them.
static DRAWN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `write` with the live bars taken off the screen, then redraws them.
///
/// A log line written straight to stderr while bars are drawn would be drawn over; the logger
/// writes each line through this. Without live bars it simply runs `write`.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    let drawn = DRAWN.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match drawn {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

/// How progress reaches the operator.
enum Display {
    /// Live bars on a terminal.
    Bars(MultiProgress),
    /// Periodic log lines.
    Lines,
    /// Nothing (`--quiet`).
    Hidden,
}

/// How progress is shown, from [`shown`].
#[derive(Debug, PartialEq)]
enum Shown {
    Bars,
    Lines,
    Hidden,
}

/// Nothing with `--quiet`; bars only on a terminal and never in JSON log mode, whose stream is
/// one object per line (a container started with `-t` has a terminal, and its log driver would
/// keep the bars' escape codes); periodic log lines otherwise.
fn shown(verbosity: Verbosity, terminal: bool, json: bool) -> Shown {
    if verbosity == Verbosity::Quiet {
        Shown::Hidden
    } else if terminal && !json {
        Shown::Bars
    } else {
        Shown::Lines
    }
}

/// Progress of the whole copy: the collections in flight.
pub struct Progress {
    display: Display,
    active: Mutex<Vec<Arc<CollectionProgress>>>,
    /// The status endpoint's view (`details.<ns>`).
    status: Arc<Status>,
}

impl Progress {
    /// Bars on a terminal, log lines elsewhere, nothing with `--quiet`; every count also goes
    /// to `status`.
    pub fn new(verbosity: Verbosity, status: Arc<Status>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let display = match shown(verbosity, terminal, crate::logging::json()) {
            Shown::Hidden => Display::Hidden,
            Shown::Lines => Display::Lines,
            Shown::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                *DRAWN.lock().unwrap_or_else(PoisonError::into_inner) = Some(multi.clone());
                Display::Bars(multi)
            }
        };
        Progress {
            display,
            active: Mutex::new(Vec::new()),
            status,
        }
    }

    /// Registers a collection of about `total` documents and `total_bytes` bytes whose copy
    /// starts now.
    pub fn start(&self, ns: String, total: u64, total_bytes: u64) -> Arc<CollectionProgress> {
        let bar = match &self.display {
            Display::Bars(multi) => {
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_message(line(&ns, 0, total));
                Some(bar)
            }
            _ => None,
        };
        self.status
            .update_namespace(&ns, |n| n.total_bytes = total_bytes);
        let collection = Arc::new(CollectionProgress {
            status: self.status.clone(),
            ns,
            total,
            copied: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            bar,
        });
        self.lock().push(collection.clone());
        collection
    }

    /// Marks a collection's documents as all in: its bar is cleared and its final line logged.
    pub fn finish(&self, collection: &Arc<CollectionProgress>) {
        self.lock().retain(|c| !Arc::ptr_eq(c, collection));
        if let Some(bar) = &collection.bar {
            bar.finish_and_clear();
        }
        if !matches!(self.display, Display::Hidden) {
            info!("{}", collection.line());
        }
    }

    /// Logs one line per collection in flight (the non-terminal display).
    pub fn log_active(&self) {
        if !matches!(self.display, Display::Lines) {
            return;
        }
        for c in self.lock().iter() {
            info!("{}", c.line());
        }
    }

    /// Whether [`Progress::log_active`] has anything to do.
    pub fn logs_lines(&self) -> bool {
        matches!(self.display, Display::Lines)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CollectionProgress>>> {
        // The list holds no invariant a panic could break.
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if matches!(self.display, Display::Bars(_)) {
            *DRAWN.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// Counts for one collection, shared by every range worker copying it.
pub struct CollectionProgress {
    status: Arc<Status>,
    ns: String,
    total: u64,
    copied: AtomicU64,
    bytes: AtomicU64,
    bar: Option<ProgressBar>,
}

impl CollectionProgress {
    /// Records documents that arrived on the destination.
    pub fn add(&self, documents: u64, bytes: u64) {
        let copied = self.copied.fetch_add(documents, Ordering::Relaxed) + documents;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.report();
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.max(copied));
            bar.set_position(copied);
            bar.set_message(line(&self.ns, copied, self.total));
        }
    }

    /// Takes back counts of documents that will be copied again.
    pub fn retract(&self, documents: u64, bytes: u64) {
        self.copied.fetch_sub(documents, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.report();
    }

    /// Records that the collection is complete, `indexes` indexes built.
    pub fn complete(&self, indexes: u64) {
        self.status.update_namespace(&self.ns, |n| {
            n.create_indexes = indexes;
            n.complete = true;
        });
    }

    fn report(&self) {
        let (documents, bytes) = (self.documents(), self.bytes());
        self.status.update_namespace(&self.ns, |n| {
            n.copied_docs = documents;
            n.copied_bytes = bytes;
        });
    }

    /// Documents copied so far.
    pub fn documents(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }

    /// BSON bytes copied so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn line(&self) -> String {
        line(&self.ns, self.documents(), self.total)
    }
}

/// Logs the progress lines every [`LOG_INTERVAL`] while it lives (when bars are not drawn).
pub struct LogTicker(Option<tokio::task::JoinHandle<()>>);

impl LogTicker {
    /// Starts logging the active collections' progress.
    pub fn start(progress: Arc<Progress>) -> Self {
        if !progress.logs_lines() {
            return LogTicker(None);
        }
        LogTicker(Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(LOG_INTERVAL);
            interval.tick().await;
            loop {
                interval.tick().await;
                progress.log_active();
            }
        })))
    }
}

impl Drop for LogTicker {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_and_never_in_json() {
        let normal = Verbosity::Normal;
        assert_eq!(shown(normal, true, false), Shown::Bars);
        assert_eq!(shown(normal, true, true), Shown::Lines);
        assert_eq!(shown(normal, false, false), Shown::Lines);
        assert_eq!(shown(Verbosity::Quiet, true, false), Shown::Hidden);
    }

    #[test]
    fn counts_reach_the_status_endpoint() {
        let status = Status::shared();
        status.set_stage(crate::status::Stage::InitialSync, "copying collections");
        let progress = Progress::new(Verbosity::Quiet, status.clone());
        let c = progress.start("db.c".into(), 10, 1000);
        c.add(4, 400);
        c.add(3, 300);
        c.retract(3, 300);
        let details = &status.json()["details"]["db.c"];
        assert_eq!(details["copiedBytes"], 400);
        assert_eq!(details["totalBytes"], 1000);
        assert_eq!(details["complete"], false);
        progress.finish(&c);
        c.complete(2);
        let details = &status.json()["details"]["db.c"];
        assert_eq!(
            (
                details["complete"].clone(),
                details["createIndexes"].clone()
            ),
            (true.into(), 2.into())
        );
        assert_eq!(c.documents(), 4);
    }

    #[test]
    fn line_matches_mongomirror() {
        assert_eq!(
            line("zoo.animals", 29000, 49778),
            "[############.........]  zoo.animals  29000/49778  (58.3%)"
        );
        assert_eq!(
            line("a.b", 0, 0),
            "[#####################]  a.b  0/0  (100.0%)"
        );
        assert_eq!(
            line("a.b", 0, 10),
            "[.....................]  a.b  0/10  (0.0%)"
        );
        // An estimate that was too low never shows more than 100%.
        assert_eq!(
            line("a.b", 12, 10),
            "[#####################]  a.b  12/12  (100.0%)"
        );
    }
}
