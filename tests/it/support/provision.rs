//! Finding (or installing) the SecantusDB server executable.
//!
//! `MONGOMIRROR_TEST_SECANTUSD` may name an executable to use as is.
//! Otherwise a virtualenv with [`SECANTUSDB_REQUIREMENT`] is built once at
//! `<target dir>/secantus-venv` (target dir: `CARGO_TARGET_DIR`, else
//! `<manifest dir>/target`). It is built in a temporary sibling directory and
//! renamed into place with a marker file written last, so concurrent test
//! processes never see a half-built venv; within a process a `OnceLock`
//! makes the other threads wait for the first one.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The pip requirement installed into the harness virtualenv.
pub const SECANTUSDB_REQUIREMENT: &str = "SecantusDB==0.7.0b3";

/// Environment variable naming a ready `secantusd-py`-compatible executable, used as it is
/// (it must close the tailable-oplog-cursor window itself, as [`FIXED_LAUNCHER`] does).
const EXECUTABLE_VAR: &str = "MONGOMIRROR_TEST_SECANTUSD";
/// Written last into a complete venv; holds [`SECANTUSDB_REQUIREMENT`].
const MARKER: &str = ".mongomirror-it-complete";

/// The launcher that closes SecantusDB's tailable-oplog-cursor window (see the file itself and
/// docs/testing.md); every harness server runs through it.
pub const FIXED_LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/secantus/launch.py");

/// How to run the server: `program` followed by `leading_args`, then the
/// server's own flags.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The executable to run.
    pub program: PathBuf,
    /// Arguments placed before the server flags: [`FIXED_LAUNCHER`], for a venv.
    pub leading_args: Vec<OsString>,
    /// The same for the server as published, without the fix: only the harness self-test
    /// uses it, to show what the fix prevents.
    pub unfixed_args: Vec<OsString>,
}

impl Launcher {
    /// A `Command` running the server, ready for its flags.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.leading_args);
        cmd
    }

    /// A `Command` running the server as published (its tailable oplog cursor can lose entries).
    pub fn unfixed_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.unfixed_args);
        cmd
    }
}

/// The server launcher, provisioned on first call (may take a minute);
/// panics with the installer's output when provisioning fails.
pub fn secantusd() -> &'static Launcher {
    static LAUNCHER: OnceLock<Result<Launcher, String>> = OnceLock::new();
    match LAUNCHER.get_or_init(find_or_provision) {
        Ok(launcher) => launcher,
        Err(message) => panic!("cannot provision the SecantusDB test server: {message}"),
    }
}

fn find_or_provision() -> Result<Launcher, String> {
    if let Some(exe) = std::env::var_os(EXECUTABLE_VAR) {
        let program = PathBuf::from(exe);
        if !program.is_file() {
            return Err(format!(
                "{EXECUTABLE_VAR}={} is not a file",
                program.display()
            ));
        }
        return Ok(Launcher {
            program,
            leading_args: Vec::new(),
            unfixed_args: Vec::new(),
        });
    }
    let venv = target_dir().join("secantus-venv");
    if !is_complete(&venv) {
        build_venv(&venv)?;
    }
    // Interpreter + script rather than the script alone: the script's
    // shebang names the temporary build directory, the interpreter finds
    // its venv through the adjacent pyvenv.cfg wherever it now lives.
    Ok(Launcher {
        program: venv.join("bin").join("python3"),
        leading_args: vec![FIXED_LAUNCHER.into()],
        unfixed_args: vec![venv.join("bin").join("secantusd-py").into_os_string()],
    })
}

fn target_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => manifest_dir.join(dir),
        None => manifest_dir.join("target"),
    }
}

fn is_complete(venv: &Path) -> bool {
    fs::read_to_string(venv.join(MARKER)).is_ok_and(|m| m.trim() == SECANTUSDB_REQUIREMENT)
        && venv.join("bin").join("secantusd-py").is_file()
}

fn build_venv(venv: &Path) -> Result<(), String> {
    let parent = venv.parent().expect("venv path has a parent");
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let sibling = |tag: &str| venv.with_file_name(format!("secantus-venv.{tag}-{unique}"));
    let staging = sibling("building");
    let result = populate(&staging).and_then(|()| install(&staging, venv, &sibling("stale")));
    let _ = fs::remove_dir_all(&staging);
    result
}

fn populate(staging: &Path) -> Result<(), String> {
    eprintln!(
        "provisioning {SECANTUSDB_REQUIREMENT} into {} ...",
        staging.display()
    );
    run_step(Command::new("python3").arg("-m").arg("venv").arg(staging))?;
    run_step(
        Command::new(staging.join("bin").join("python3"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .arg(SECANTUSDB_REQUIREMENT),
    )?;
    fs::write(staging.join(MARKER), SECANTUSDB_REQUIREMENT)
        .map_err(|e| format!("writing the marker file: {e}"))
}

/// Renames `staging` to `venv`, moving an outdated venv out of the way; if
/// another process won the race with a complete venv, that one is kept.
fn install(staging: &Path, venv: &Path, stale: &Path) -> Result<(), String> {
    if venv.exists() && !is_complete(venv) && fs::rename(venv, stale).is_ok() {
        let _ = fs::remove_dir_all(stale);
    }
    match fs::rename(staging, venv) {
        Ok(()) => Ok(()),
        Err(_) if is_complete(venv) => Ok(()),
        Err(e) => Err(format!(
            "renaming {} to {}: {e}",
            staging.display(),
            venv.display()
        )),
    }
}

fn run_step(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e} (is python3 installed?)"))?;
    if out.status.success() {
        return Ok(());
    }
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    Err(format!(
        "{shown} failed ({}).\n--- stderr (tail) ---\n{}\n--- stdout (tail) ---\n{}",
        out.status,
        tail(&out.stderr),
        tail(&out.stdout)
    ))
}
