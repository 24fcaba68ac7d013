//! The `mongomirror` binary: parse, log, run, and turn the outcome into an exit code.

use mongomirror::cli::{self, Invocation};
use mongomirror::error::ExitCode;
use mongomirror::logging;

fn main() {
    install_panic_hook();
    let argv: Vec<_> = std::env::args_os().collect();
    logging::set_format(cli::log_format_in(&argv));
    let code = match cli::parse(argv) {
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            ExitCode::Success.code()
        }
        Ok(Invocation::Run(options)) => {
            logging::init(options.verbosity, options.log_format);
            run(*options)
        }
        Err(failure) => {
            logging::print_always(&failure.lines());
            failure.exit.code()
        }
    };
    std::process::exit(code);
}

fn run(options: cli::Options) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logging::print_always(&[format!("Failed: cannot start the async runtime: {e}")]);
            return ExitCode::Runtime.code();
        }
    };
    let code = match runtime.block_on(mongomirror::run(options)) {
        Ok(()) => ExitCode::Success.code(),
        Err(failure) => {
            logging::print_always(&failure.lines());
            failure.exit.code()
        }
    };
    // Exit with the runtime still up: everything that matters (bookmark, last batch) is already
    // durable, and tearing down the driver's background tasks can only add noise.
    std::process::exit(code);
}

/// A bug must still end in one `Failed:` line, with no backtrace and no secrets.
///
/// Only a panic of the main thread ends the process here. A panic inside a task is caught by
/// the runtime and comes back as an error of that task, which the stage reports itself; the hook
/// only logs where it happened.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if std::thread::current().name() != Some("main") {
            logging::print_always(&[format!(
                "internal error in a background task: {what}{place}"
            )]);
            return;
        }
        logging::print_always(&[
            format!("Failed: internal error: {what}{place}"),
            "  hint: this is a bug in mongomirror-rs; please report it with the log above"
                .to_string(),
        ]);
        std::process::exit(ExitCode::Runtime.code());
    }));
}
