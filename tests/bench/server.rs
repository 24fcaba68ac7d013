//! Servers and measured child processes shared by the benchmarks.

// Shared by the `bench` and `lag` examples, each of which uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The program (and leading arguments) that starts a test server: `--secantusd PROGRAM`, else
/// `MONGOMIRROR_TEST_SECANTUSD`, else `default` run by the python of the test harness venv
/// `target/secantus-venv` (`cargo test --test it` provisions it; its console scripts are run
/// through its python).
pub fn launcher(flag: Option<String>, default: &str) -> Vec<String> {
    match flag.or_else(|| std::env::var("MONGOMIRROR_TEST_SECANTUSD").ok()) {
        Some(exe) => vec![exe],
        None => vec![
            "target/secantus-venv/bin/python3".to_string(),
            default.to_string(),
        ],
    }
}

/// A test server on a free port with a fresh data directory, stopped on drop.
pub struct Server {
    child: Child,
    port: u16,
    /// The server's data files, removed on drop (after the server).
    _storage: tempfile::TempDir,
}

impl Server {
    /// Starts `launcher` (secantusd-py, its launcher or secantusd-rs) on a free port.
    pub fn start(launcher: &[String]) -> Result<Server, Error> {
        let storage = tempfile::tempdir()?;
        let storage_path = storage.path().to_str().ok_or("temp dir is not UTF-8")?;
        // One of the servers logs its port on stdout, the other on stderr: merge them.
        let mut child = Command::new("sh")
            .args(["-c", "exec \"$@\" 2>&1", "sh"])
            .args(launcher)
            .args(["--host", "127.0.0.1", "--port", "0", "--cache-size", "1G"])
            .args(["--storage-path", storage_path])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launcher.join(" ")))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().ok_or("the server exited before listening")??;
            if let Some(addr) = line.split("listening on ").nth(1) {
                break addr.rsplit(':').next().unwrap_or_default().trim().parse()?;
            }
        };
        // Keep draining the server's log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server {
            child,
            port,
            _storage: storage,
        })
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What GNU time says about a child: user + system CPU seconds and peak RSS.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_kb: u64,
}

/// `argv` under GNU `/usr/bin/time`, in a process group of its own, its stderr piped; the line
/// GNU time prints at the end starts with `TIME ` and is read by [`usage`].
pub fn timed(argv: &[String]) -> Result<Child, Error> {
    use std::os::unix::process::CommandExt;
    Ok(Command::new("/usr/bin/time")
        .args(["-f", "TIME %U %S %M"])
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?)
}

/// The usage in GNU time's `TIME user system maxrss` line.
pub fn usage(line: &str) -> Result<Usage, Error> {
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["TIME", u, s, m] => Ok(Usage {
            cpu_seconds: u.parse::<f64>()? + s.parse::<f64>()?,
            peak_rss_kb: m.parse()?,
        }),
        _ => Err(format!("unexpected GNU time output {line:?}").into()),
    }
}

/// SIGINT to the run's process group (GNU time and the program under it).
pub fn interrupt(child: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status();
}
