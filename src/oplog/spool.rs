//! The oplog spool: a first-in first-out queue of raw oplog entries between the tail reader and
//! the applier.
//!
//! While the applier keeps up, entries pass through a bounded in-memory queue. When it does not
//! (during the initial copy it does not consume at all), they spill to zstd-compressed BSON
//! segment files on disk, so a long copy can never fall off the source oplog and memory stays
//! bounded. Once spilling has started, every new entry goes to disk until the applier has read the
//! disk backlog back, which keeps the order exact. Segment files are deleted as soon as they have
//! been read; after a crash, the bookmark and the source oplog are the truth, never the spool.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use mongodb::bson::RawDocumentBuf;
use tokio::sync::Notify;

use crate::error::{Failure, Result};

/// Bytes of entries kept in memory before the spool spills to disk.
pub const MEMORY_LIMIT: usize = 32 * 1024 * 1024;
/// Uncompressed bytes per segment file.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// zstd level: fast, since the spool is on the hot path of a busy source.
const ZSTD_LEVEL: i32 = 1;
const SEGMENT_PREFIX: &str = "oplog-";
const SEGMENT_SUFFIX: &str = ".bson.zst";

type Encoder = zstd::stream::write::Encoder<'static, BufWriter<File>>;
type Decoder = zstd::stream::read::Decoder<'static, BufReader<File>>;

struct Writer {
    path: PathBuf,
    encoder: Encoder,
    bytes: u64,
}

struct Reader {
    path: PathBuf,
    decoder: Decoder,
}

#[derive(Default)]
struct Inner {
    // Invariant: while `spilling`, `memory` only holds entries older than everything on disk.
    memory: VecDeque<RawDocumentBuf>,
    memory_bytes: usize,
    spilling: bool,
    sealed: VecDeque<PathBuf>,
    writer: Option<Writer>,
    reader: Option<Reader>,
    next_segment: u64,
    disk_entries: u64,
    disk_bytes: u64,
}

/// Sizes for the log and the status endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries waiting on disk.
    pub disk_entries: u64,
    /// Bytes of the spool files on disk (compressed).
    pub disk_bytes: u64,
    /// Entries waiting in memory.
    pub memory_entries: usize,
}

/// The spool; shared between the reader (push) and the applier (pop).
pub struct Spool {
    dir: PathBuf,
    inner: Mutex<Inner>,
    arrived: Notify,
}

fn io_failure(what: String) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| {
        Failure::runtime(what)
            .cause(e)
            .hint("the oplog spool needs room for every entry written during the initial sync: free disk space or pass --oplogPath")
    }
}

impl Spool {
    /// A spool in `dir` (created if needed; spool files left by an earlier run are removed).
    pub fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_failure(format!(
            "cannot create the oplog spool directory {}",
            dir.display()
        )))?;
        let stale =
            fs::read_dir(dir).map_err(io_failure(format!("cannot list {}", dir.display())))?;
        for entry in stale.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(SEGMENT_PREFIX) && name.ends_with(SEGMENT_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner::default()),
            arrived: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an entry; never blocks on the consumer (it spills to disk instead).
    pub fn push(&self, entry: RawDocumentBuf) -> Result<()> {
        {
            let mut inner = self.lock();
            let len = entry.as_bytes().len();
            if !inner.spilling && inner.memory_bytes + len <= MEMORY_LIMIT {
                inner.memory_bytes += len;
                inner.memory.push_back(entry);
            } else {
                inner.spilling = true;
                self.write(&mut inner, &entry)?;
            }
        }
        self.arrived.notify_one();
        Ok(())
    }

    fn write(&self, inner: &mut Inner, entry: &RawDocumentBuf) -> Result<()> {
        let w = match inner.writer.take() {
            Some(w) => w,
            None => {
                let path = self.dir.join(format!(
                    "{SEGMENT_PREFIX}{:08}{SEGMENT_SUFFIX}",
                    inner.next_segment
                ));
                inner.next_segment += 1;
                let file = File::create(&path)
                    .map_err(io_failure(format!("cannot create {}", path.display())))?;
                let encoder = Encoder::new(BufWriter::new(file), ZSTD_LEVEL)
                    .map_err(io_failure(format!("cannot compress {}", path.display())))?;
                Writer {
                    path,
                    encoder,
                    bytes: 0,
                }
            }
        };
        let w = inner.writer.insert(w);
        w.encoder
            .write_all(entry.as_bytes())
            .map_err(io_failure(format!("cannot write {}", w.path.display())))?;
        w.bytes += entry.as_bytes().len() as u64;
        inner.disk_entries += 1;
        if w.bytes >= SEGMENT_BYTES {
            Self::seal(inner)?;
        }
        Ok(())
    }

    /// Finishes the segment being written so that it can be read.
    fn seal(inner: &mut Inner) -> Result<()> {
        if let Some(w) = inner.writer.take() {
            let path = w.path.clone();
            let mut out = w
                .encoder
                .finish()
                .map_err(io_failure(format!("cannot finish {}", path.display())))?;
            out.flush()
                .map_err(io_failure(format!("cannot flush {}", path.display())))?;
            inner.disk_bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            inner.sealed.push_back(path);
        }
        Ok(())
    }

    /// Takes the oldest entries: at most `max_entries`, and at most `max_bytes` unless a single
    /// entry is larger. Returns an empty batch when the spool is empty.
    pub fn pop(&self, max_entries: usize, max_bytes: usize) -> Result<Vec<RawDocumentBuf>> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_entries {
            if let Some(front) = inner.memory.front() {
                let len = front.as_bytes().len();
                if !out.is_empty() && bytes + len > max_bytes {
                    break;
                }
                inner.memory_bytes -= len;
                out.extend(inner.memory.pop_front());
                bytes += len;
                continue;
            }
            if !inner.spilling {
                break;
            }
            // Memory is empty here, so its front is the right place for the entry read back:
            // it is the oldest one left, and the next turn takes it if it fits this batch.
            match Self::read_disk(&mut inner)? {
                Some(doc) => {
                    inner.memory_bytes += doc.as_bytes().len();
                    inner.memory.push_front(doc);
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Reads the next entry from disk, opening and deleting segments as needed. `None` means
    /// the disk backlog is empty, and the spool returns to memory.
    fn read_disk(inner: &mut Inner) -> Result<Option<RawDocumentBuf>> {
        loop {
            let r = match inner.reader.take() {
                Some(r) => r,
                None => {
                    if inner.sealed.is_empty() {
                        Self::seal(inner)?;
                    }
                    let Some(path) = inner.sealed.pop_front() else {
                        inner.spilling = false;
                        inner.disk_bytes = 0;
                        return Ok(None);
                    };
                    let file = File::open(&path)
                        .map_err(io_failure(format!("cannot open {}", path.display())))?;
                    let decoder = Decoder::new(file)
                        .map_err(io_failure(format!("cannot decompress {}", path.display())))?;
                    Reader { path, decoder }
                }
            };
            let r = inner.reader.insert(r);
            match read_document(&mut r.decoder)
                .map_err(io_failure(format!("cannot read {}", r.path.display())))?
            {
                Some(doc) => {
                    inner.disk_entries = inner.disk_entries.saturating_sub(1);
                    return Ok(Some(doc));
                }
                None => {
                    let path = r.path.clone();
                    inner.reader = None;
                    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    inner.disk_bytes = inner.disk_bytes.saturating_sub(size);
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Waits until an entry has arrived or `stop` resolves, then pops a batch (possibly empty).
    pub async fn next_batch(
        &self,
        max_entries: usize,
        max_bytes: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Vec<RawDocumentBuf>> {
        tokio::pin!(stop);
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let batch = tokio::task::block_in_place(|| self.pop(max_entries, max_bytes))?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            tokio::select! {
                _ = &mut arrived => {}
                _ = &mut stop => return Ok(Vec::new()),
            }
        }
    }

    /// Whether no entry waits, in memory or on disk.
    pub fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.memory.is_empty() && inner.disk_entries == 0
    }

    /// Current sizes.
    pub fn stats(&self) -> SpoolStats {
        let inner = self.lock();
        SpoolStats {
            disk_entries: inner.disk_entries,
            disk_bytes: inner.disk_bytes
                + inner
                    .writer
                    .as_ref()
                    .and_then(|w| fs::metadata(&w.path).ok())
                    .map_or(0, |m| m.len()),
            memory_entries: inner.memory.len(),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let inner = self.lock();
        let paths = inner
            .sealed
            .iter()
            .chain(inner.writer.as_ref().map(|w| &w.path))
            .chain(inner.reader.as_ref().map(|r| &r.path));
        for p in paths {
            let _ = fs::remove_file(p);
        }
    }
}

/// Reads one length-prefixed BSON document; `None` at a clean end of stream.
fn read_document(r: &mut impl Read) -> std::io::Result<Option<RawDocumentBuf>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = i32::from_le_bytes(len);
    if !(5..=48 * 1024 * 1024).contains(&n) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad document length {n}"),
        ));
    }
    let mut buf = vec![0u8; n as usize];
    buf[..4].copy_from_slice(&len);
    r.read_exact(&mut buf[4..])?;
    RawDocumentBuf::from_bytes(buf)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::rawdoc;

    fn entry(i: i64, pad: usize) -> RawDocumentBuf {
        rawdoc! { "i": i, "pad": "x".repeat(pad) }
    }

    fn ids(batch: &[RawDocumentBuf]) -> Vec<i64> {
        batch.iter().map(|d| d.get_i64("i").unwrap()).collect()
    }

    #[test]
    fn spills_to_disk_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(dir.path()).unwrap();
        // 40 KB entries: the memory limit holds ~800 of them; 3000 force a spill.
        let n = 3000;
        for i in 0..n {
            spool.push(entry(i, 40_000)).unwrap();
        }
        let stats = spool.stats();
        assert!(
            stats.disk_entries > 0 && stats.memory_entries > 0,
            "{stats:?}"
        );
        assert!(stats.disk_bytes > 0, "{stats:?}");
        let mut seen = Vec::new();
        // Interleave pushes with pops: new entries must come after the disk backlog.
        let mut next = n;
        loop {
            let batch = spool.pop(500, 16 * 1024 * 1024).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 500);
            assert!(batch.iter().map(|d| d.as_bytes().len()).sum::<usize>() <= 16 * 1024 * 1024);
            seen.extend(ids(&batch));
            if next < n + 100 {
                spool.push(entry(next, 10)).unwrap();
                next += 1;
            }
        }
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
        assert_eq!(spool.stats(), SpoolStats::default());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "segments were not deleted: {left:?}");
    }

    #[test]
    fn an_entry_larger_than_the_byte_limit_still_moves() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(dir.path()).unwrap();
        spool.push(entry(1, 100)).unwrap();
        spool.push(entry(2, 5000)).unwrap();
        assert_eq!(ids(&spool.pop(10, 1000).unwrap()), [1]);
        assert_eq!(ids(&spool.pop(10, 1000).unwrap()), [2]);
        assert!(spool.pop(10, 1000).unwrap().is_empty());
    }

    /// A full disk (the first segment file is `/dev/full`) is an error of the push that
    /// spills, naming the file and the reason; never a silent loss of entries.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_an_error_never_a_silent_skip() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(dir.path()).unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("oplog-00000000.bson.zst"))
            .unwrap();
        let failed = (0..3000)
            .map(|i| spool.push(entry(i, 40_000)))
            .find_map(Result::err)
            .expect("spilling to a full disk fails");
        let text = format!("{failed:?}");
        assert!(text.contains("oplog-00000000.bson.zst"), "{text}");
        assert!(text.contains("No space left on device"), "{text}");
        assert!(text.contains("free disk space"), "{text}");
    }

    #[test]
    fn stale_segments_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("oplog-00000007.bson.zst"), b"junk").unwrap();
        fs::write(dir.path().join("keep.txt"), b"mine").unwrap();
        let _spool = Spool::create(dir.path()).unwrap();
        assert!(!dir.path().join("oplog-00000007.bson.zst").exists());
        assert!(dir.path().join("keep.txt").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_batch_waits_for_an_entry_or_stop() {
        let dir = tempfile::tempdir().unwrap();
        let spool = std::sync::Arc::new(Spool::create(dir.path()).unwrap());
        let pusher = spool.clone();
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            pusher.push(entry(9, 1)).unwrap();
        });
        let batch = spool
            .next_batch(10, 1 << 20, std::future::pending())
            .await
            .unwrap();
        assert_eq!(ids(&batch), [9]);
        task.await.unwrap();
        let batch = spool.next_batch(10, 1 << 20, async {}).await.unwrap();
        assert!(batch.is_empty());
    }
}
