//! Child processes owned by the harness.
//!
//! Every child is forked by one long-lived "spawner" thread and, on Linux
//! when `python3` is available, through a tiny Python shim that sets
//! `PR_SET_PDEATHSIG` before `exec`ing the real program: if the test process
//! dies abnormally (SIGKILL, abort), the kernel kills its children too.
//! (The death signal fires when the *forking thread* exits, hence the
//! dedicated thread that lives as long as the process.)
//!
//! stdout and stderr are drained by background threads into a shared line
//! buffer (optionally a bounded ring) so the pipes never fill up; tests await
//! lines or the exit asynchronously.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How long to wait for the pipes to reach EOF once the process has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Which pipe a captured line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Something a captured output line can be matched against: a substring
/// (`&str`, `String`) or a predicate `Fn(&str) -> bool`.
pub trait LineMatcher {
    /// True when `line` is the one being waited for.
    fn matches(&self, line: &str) -> bool;
}

impl LineMatcher for &str {
    fn matches(&self, line: &str) -> bool {
        line.contains(*self)
    }
}

impl LineMatcher for String {
    fn matches(&self, line: &str) -> bool {
        line.contains(self.as_str())
    }
}

impl<F: Fn(&str) -> bool> LineMatcher for F {
    fn matches(&self, line: &str) -> bool {
        self(line)
    }
}

/// A wait on a child process that did not succeed (timeout, or the process
/// exited first). Its message includes the tail of the captured output.
pub struct WaitError {
    /// Human-readable explanation, including the output tail.
    pub message: String,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WaitError {}

struct Line {
    seq: u64,
    stream: Stream,
    text: String,
}

struct State {
    lines: VecDeque<Line>,
    ring: Option<usize>,
    next_seq: u64,
    open_streams: usize,
    exited: bool,
    status: Option<ExitStatus>,
}

struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.send_replace(());
    }
}

/// A running (or finished) child process with captured output. Dropping it
/// kills the process and reaps it.
pub(crate) struct ManagedProcess {
    pid: u32,
    program: String,
    shared: Arc<Shared>,
    waiter: Option<JoinHandle<()>>,
}

impl ManagedProcess {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured. With
    /// `ring = Some(n)` only the last `n` lines are kept.
    pub(crate) fn spawn(cmd: Command, ring: Option<usize>) -> io::Result<Self> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = spawn_tied_to_harness(cmd)?;
        let pid = child.id();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lines: VecDeque::new(),
                ring,
                next_seq: 0,
                open_streams: 2,
                exited: false,
                status: None,
            }),
            changed: watch::Sender::new(()),
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        start_reader(stdout, Stream::Stdout, pid, &shared);
        start_reader(stderr, Stream::Stderr, pid, &shared);
        let waiter = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("wait-{pid}"))
                .spawn(move || {
                    let status = child.wait().ok();
                    shared.update(|s| {
                        s.exited = true;
                        s.status = status;
                    });
                })?
        };
        Ok(Self {
            pid,
            program,
            shared,
            waiter: Some(waiter),
        })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends signal `name` ("INT", "TERM", "KILL", ...) unless the process
    /// has already exited. Returns whether a signal was sent.
    pub(crate) fn signal(&self, name: &str) -> bool {
        // Holding the lock keeps the exit bookkeeping from changing under us.
        let state = self.shared.lock();
        if state.exited {
            return false;
        }
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Exit status once the process has exited and been reaped; `None` while
    /// running (or if it could not be reaped).
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.lock().status
    }

    /// True once the process has exited.
    pub(crate) fn has_exited(&self) -> bool {
        self.shared.lock().exited
    }

    /// Number of lines captured so far (including any dropped from a ring);
    /// use as the `from` of [`ManagedProcess::wait_for_line`].
    pub(crate) fn lines_seen(&self) -> u64 {
        self.shared.lock().next_seq
    }

    /// Waits for the first line numbered `from` or later that `matcher`
    /// accepts; returns its number and text.
    pub(crate) async fn wait_for_line(
        &self,
        from: u64,
        matcher: &dyn LineMatcher,
        timeout: Duration,
    ) -> Result<(u64, String), WaitError> {
        let mut next = from;
        let found = self
            .wait_for(Instant::now() + timeout, |s| {
                if let Some(l) = s
                    .lines
                    .iter()
                    .find(|l| l.seq >= next && matcher.matches(&l.text))
                {
                    return Some(Ok((l.seq, l.text.clone())));
                }
                next = next.max(s.next_seq);
                (s.exited && s.open_streams == 0).then(|| Err(describe_exit(s.status)))
            })
            .await;
        match found {
            Some(Ok(line)) => Ok(line),
            Some(Err(exit)) => Err(self.error(&format!("{exit} before printing the awaited line"))),
            None => Err(self.error(&format!("timed out after {timeout:?} waiting for a line"))),
        }
    }

    /// Waits up to `timeout` for the process to exit, then (briefly) for its
    /// output to be drained. Returns whether it exited.
    pub(crate) async fn wait_exit(&self, timeout: Duration) -> bool {
        let exited = self
            .wait_for(Instant::now() + timeout, |s| s.exited.then_some(()))
            .await
            .is_some();
        if exited {
            self.wait_for(Instant::now() + DRAIN_GRACE, |s| {
                (s.open_streams == 0).then_some(())
            })
            .await;
        }
        exited
    }

    /// Kills the process (if still running) and waits until it is reaped.
    pub(crate) async fn kill_and_wait(&self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(30)).await;
    }

    /// All captured stdout and stderr lines, each joined with newlines.
    pub(crate) fn output(&self) -> (String, String) {
        let state = self.shared.lock();
        let join = |stream| {
            let mut text = String::new();
            for l in state.lines.iter().filter(|l| l.stream == stream) {
                text.push_str(&l.text);
                text.push('\n');
            }
            text
        };
        (join(Stream::Stdout), join(Stream::Stderr))
    }

    /// The last `n` captured lines of both streams, interleaved, for
    /// diagnostics.
    pub(crate) fn tail(&self, n: usize) -> String {
        let state = self.shared.lock();
        let skip = state.lines.len().saturating_sub(n);
        let mut text = String::new();
        for l in state.lines.iter().skip(skip) {
            let tag = match l.stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            text.push_str(&format!("  [{tag}] {}\n", l.text));
        }
        text
    }

    fn error(&self, what: &str) -> WaitError {
        WaitError {
            message: format!(
                "{} (pid {}): {what}; last output:\n{}",
                self.program,
                self.pid,
                self.tail(200)
            ),
        }
    }

    /// Re-evaluates `check` on every state change until it yields a value or
    /// `deadline` passes.
    async fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.shared.changed.subscribe();
        loop {
            if let Some(value) = check(&self.shared.lock()) {
                return Some(value);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return check(&self.shared.lock()),
            }
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.signal("KILL");
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
    }
}

/// "exited with code N" / "was killed by a signal" wording for messages.
fn describe_exit(status: Option<ExitStatus>) -> String {
    match status.map(|s| s.code()) {
        Some(Some(code)) => format!("exited with code {code}"),
        Some(None) => format!("was killed by a signal ({})", status.unwrap()),
        None => "exited (status unknown)".to_string(),
    }
}

fn start_reader(pipe: impl Read + Send + 'static, stream: Stream, pid: u32, shared: &Arc<Shared>) {
    let shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("pipe-{pid}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                shared.update(|s| {
                    let seq = s.next_seq;
                    s.next_seq += 1;
                    s.lines.push_back(Line { seq, stream, text });
                    if s.ring.is_some_and(|cap| s.lines.len() > cap) {
                        s.lines.pop_front();
                    }
                });
            }
            shared.update(|s| s.open_streams -= 1);
        });
    spawned.expect("cannot start a pipe reader thread");
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` (stdin closed, stdout and stderr piped) from the long-lived
/// spawner thread, wrapped in the death-signal shim when one is available.
fn spawn_tied_to_harness(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("it-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        tx
    });
    let mut cmd = match death_signal_python() {
        Some(python) => wrap_with_death_signal(python, cmd),
        None => cmd,
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (reply, result) = mpsc::channel();
    spawner.send((cmd, reply)).expect("spawner thread is gone");
    result.recv().expect("spawner thread is gone")
}

/// argv: [ppid, program, args...]. Gives up (exit 1) if the harness is
/// already gone; execs the program otherwise (same pid, same argv[0]).
const DEATH_SIGNAL_SHIM: &str = "\
import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 9)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
";

fn wrap_with_death_signal(python: &PathBuf, cmd: Command) -> Command {
    let mut wrapped = Command::new(python);
    wrapped
        .arg("-c")
        .arg(DEATH_SIGNAL_SHIM)
        .arg(std::process::id().to_string())
        .arg(resolve_program(cmd.get_program()))
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// `execv` does no PATH lookup, so bare names are resolved here.
fn resolve_program(program: &std::ffi::OsStr) -> PathBuf {
    let path = PathBuf::from(program);
    if path.components().count() > 1 {
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&path))
        .find(|candidate| candidate.is_file())
        .unwrap_or(path)
}

/// The Python interpreter used for the death-signal shim, if it works here.
fn death_signal_python() -> Option<&'static PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if !cfg!(target_os = "linux") {
                return None;
            }
            let probe = "import ctypes, sys; ctypes.CDLL(None).prctl; print(sys.executable)";
            let out = Command::new("python3")
                .args(["-c", probe])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
            (out.status.success() && path.is_file()).then_some(path)
        })
        .as_ref()
}
