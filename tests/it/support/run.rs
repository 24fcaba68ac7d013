//! Running `mongomirror` (or any program) with captured output, deadlines
//! and signals.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{LineMatcher, ManagedProcess, WaitError};

/// A builder for the `mongomirror` binary under test. It runs in a fresh temporary working
/// directory (removed with the process handle), so files it writes by default, such as
/// `mongomirror.bookmark`, never leak between tests or into the source tree.
pub fn mongomirror() -> ProcessBuilder {
    let workdir =
        tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a working directory: {e}"));
    let mut builder = command(env!("CARGO_BIN_EXE_mongomirror")).current_dir(workdir.path());
    builder.workdir = Some(workdir);
    builder
}

/// A builder for any program (looked up in `PATH` when given a bare name).
pub fn command(program: impl AsRef<OsStr>) -> ProcessBuilder {
    ProcessBuilder {
        cmd: Command::new(program),
        workdir: None,
    }
}

/// Arguments, environment and working directory of a process to run. The
/// child inherits the test's environment plus what is set here; its stdin
/// is closed.
pub struct ProcessBuilder {
    cmd: Command,
    /// The temporary working directory, kept alive as long as the process handle.
    workdir: Option<tempfile::TempDir>,
}

impl ProcessBuilder {
    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Sets the working directory (replacing the temporary one).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.workdir = None;
        self.cmd.current_dir(dir);
        self
    }

    /// Starts the process; panics if it cannot be started.
    pub fn spawn(self) -> Running {
        let shown = format!("{:?}", self.cmd);
        let process = ManagedProcess::spawn(self.cmd, None)
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        Running {
            process,
            _workdir: self.workdir,
        }
    }

    /// Runs the process to completion, killing it if it is still running
    /// after `deadline` (then `timed_out` is set).
    pub async fn run(self, deadline: Duration) -> Output {
        self.spawn().wait(deadline).await
    }
}

/// What a finished process left behind.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit code; `None` when killed by a signal (or still running).
    pub status: Option<i32>,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// True when the harness killed the process at the deadline.
    pub timed_out: bool,
}

impl Output {
    /// Exited on its own with code 0.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status == Some(0)
    }

    /// Asserts how a run failed: exit `code`, a `Failed:` line containing `message`, a `hint:`
    /// line containing `hint`, and no panic or backtrace.
    pub fn assert_failed(&self, code: i32, message: &str, hint: &str) {
        assert_eq!(self.status, Some(code), "{self}");
        let line = |prefix: &str| {
            self.stderr
                .lines()
                .find(|l| l.contains(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line\n{self}"))
                .to_string()
        };
        let failed = line("Failed: ");
        assert!(
            failed.contains(message),
            "expected {message:?} in {failed:?}\n{self}"
        );
        let hint_line = line("hint: ");
        assert!(
            hint_line.contains(hint),
            "expected {hint:?} in {hint_line:?}\n{self}"
        );
        for forbidden in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(!self.stderr.contains(forbidden), "{forbidden}\n{self}");
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status {:?}, signal {:?}, timed out {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.signal, self.timed_out, self.stdout, self.stderr
        )
    }
}

/// A running process. Output is captured continuously; dropping it kills
/// the process.
pub struct Running {
    process: ManagedProcess,
    _workdir: Option<tempfile::TempDir>,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits for a line (stdout or stderr, from the start of the output)
    /// matching `matcher` — a substring or a `Fn(&str) -> bool` — and
    /// returns it. Fails early if the process exits without printing it.
    pub async fn wait_for_line(
        &self,
        matcher: impl LineMatcher,
        timeout: Duration,
    ) -> Result<String, WaitError> {
        Ok(self.wait_for_line_from(0, matcher, timeout).await?.1)
    }

    /// Like [`Running::wait_for_line`], considering only lines numbered
    /// `from` or later (see [`Running::lines_seen`]); returns the line's
    /// number and text. Use `number + 1` to wait for the next occurrence.
    pub async fn wait_for_line_from(
        &self,
        from: usize,
        matcher: impl LineMatcher,
        timeout: Duration,
    ) -> Result<(usize, String), WaitError> {
        let (seq, line) = self
            .process
            .wait_for_line(from as u64, &matcher, timeout)
            .await?;
        Ok((seq as usize, line))
    }

    /// Number of output lines (both streams) printed so far.
    pub fn lines_seen(&self) -> usize {
        self.process.lines_seen() as usize
    }

    /// Sends SIGINT (like Ctrl-C). Send it only once the program is up
    /// (e.g. after a [`Running::wait_for_line`]): before that it may still
    /// be in the harness's exec shim or lack its handler.
    pub fn send_sigint(&self) {
        self.process.signal("INT");
    }

    /// Sends the named signal ("TERM", "HUP", ...) if still running.
    pub fn send_signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Sends SIGKILL if still running (use [`Running::wait`] to reap).
    pub fn kill(&self) {
        self.process.signal("KILL");
    }

    /// True once the process has exited.
    pub fn has_exited(&self) -> bool {
        self.process.has_exited()
    }

    /// Waits up to `timeout` for the process to exit; kills it otherwise
    /// (`timed_out` is then set). Returns everything it printed.
    pub async fn wait(&self, timeout: Duration) -> Output {
        let timed_out = !self.process.wait_exit(timeout).await;
        if timed_out {
            self.process.kill_and_wait().await;
        }
        Output {
            timed_out,
            ..self.output_so_far()
        }
    }

    /// The output captured so far (status fields set only after exit).
    pub fn output_so_far(&self) -> Output {
        let status = self.process.exit_status();
        let (stdout, stderr) = self.process.output();
        Output {
            status: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            stdout,
            stderr,
            timed_out: false,
        }
    }
}
