//! The benchmarks run: the `bench` example (built by `cargo test` next to the binary) on tiny
//! sizes, through its latency proxy. Nothing is timed here; docs/performance.md has the
//! numbers and the commands that produce them.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{reserve_server_slots, secantusd, skip_on_real_deployment, Pair};

/// Longest a tiny benchmark may take.
const TIMEOUT: Duration = Duration::from_secs(240);

/// An example program built next to the binary (`cargo test` builds the examples).
fn example(name: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mongomirror"))
        .parent()
        .expect("the binary's directory")
        .join("examples")
        .join(name);
    assert!(
        exe.is_file(),
        "{} is not built: `cargo test` builds it, `cargo test --test it` does not \
         (run `cargo build --examples` first)",
        exe.display()
    );
    exe
}

/// Runs the bench example with `args` on two servers of its own; returns its standard output.
fn bench(args: &[&str]) -> String {
    let launcher = secantusd();
    // The bench starts a source and a destination (one pair at a time).
    let _slots = reserve_server_slots(2);
    let mut cmd = Command::new(example("bench"));
    cmd.args(args)
        .arg("--secantusd")
        .arg(&launcher.program)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: on a timeout, the bench, its servers and its runs go together.
        .process_group(0);
    if let Some(script) = launcher.leading_args.first() {
        // The harness venv: its python runs the server launcher, and has pymongo.
        cmd.arg("--secantusd-arg")
            .arg(script)
            .arg("--python")
            .arg(&launcher.program);
    }
    run_bounded(cmd)
}

/// Runs `cmd` (its output piped, in its own process group) for at most [`TIMEOUT`]; returns its
/// standard output, or panics with both outputs if it fails or runs out of time, after killing
/// its whole process group.
fn run_bounded(mut cmd: Command) -> String {
    let mut child = cmd.spawn().expect("starting the benchmark");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the bench") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("the bench failed ({s}):\n{out}\n{err}"),
        None => panic!("the bench took more than {TIMEOUT:?}:\n{out}\n{err}"),
    }
}

#[test]
fn the_copy_benchmark_runs_through_the_latency_proxy() {
    if skip_on_real_deployment("the bench starts servers of its own") {
        return;
    }
    let out = bench(&["--docs", "400", "--rtt-ms", "10"]);
    for run in ["baseline", "mongomirror -j 1", "mongomirror -j 4"] {
        assert!(
            out.contains(&format!("| 10 | {run} |")),
            "no row for {run} at 10 ms:\n{out}"
        );
    }
}

#[test]
fn the_script_benchmark_runs_both_contenders_to_the_same_data() {
    if skip_on_real_deployment("the bench starts servers of its own") {
        return;
    }
    // It fails unless both contenders leave the destination equal to the source.
    let out = bench(&[
        "--mode",
        "script",
        "--docs",
        "200",
        "--writes",
        "40",
        "--write-rate",
        "100",
        "--rtt-ms",
        "10",
    ]);
    for run in ["pymongo script", "mongomirror -j 4"] {
        assert!(
            out.contains(&format!("| 10 | {run} |")),
            "no row for {run} at 10 ms:\n{out}"
        );
    }
}

/// The lag benchmark, both appliers, through the delaying proxy: each run drains, ends with
/// identical deployments, and reports its lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_benchmark_runs_on_tiny_sizes() {
    let pair = Pair::start().await;
    let (source, destination) = (pair.source.uri(), pair.destination.uri());
    let stdout = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(example("lag"));
        cmd.args(["--source", &source, "--destination", &destination])
            .args(["--seconds", "2", "--rates", "40", "--rtt-ms", "10"])
            .args(["--docs", "100", "--appliers", "mongomirror,serial"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        run_bounded(cmd)
    })
    .await
    .unwrap();
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| 10 |")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, applier) in rows.iter().zip(["mongomirror", "serial"]) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | rtt | applier | asked | done | p50 | p99 | max | drain | identical | CPU | RSS |
        assert_eq!(cells[2], applier, "{row}");
        assert_eq!(cells[9], "yes", "{row}");
        assert!(cells[5].parse::<u64>().is_ok(), "{row}");
        assert!(cells[4].parse::<f64>().unwrap() > 0.0, "{row}");
    }
}
