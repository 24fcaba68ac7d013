//! Writes the man page and the shell completions of `mongomirror` into a directory.
//!
//! Both are rendered from the one clap definition (`mongomirror::cli::Args`), the same one that
//! prints `--help`, so they cannot drift from it. The release workflow runs this, and so can
//! anyone:
//!
//! ```text
//! cargo run --locked --example assets -- target/assets
//! ```
//!
//! It writes `man/mongomirror.1` and `completions/` for bash, zsh, fish, elvish and PowerShell.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cargo run --example assets -- <output directory>");
        std::process::exit(2);
    };
    if let Err(e) = write(&dir) {
        eprintln!(
            "cannot write the man page and completions into {}: {e}",
            dir.display()
        );
        std::process::exit(1);
    }
}

fn write(dir: &std::path::Path) -> std::io::Result<()> {
    let mut command = mongomirror::cli::Args::command();
    let man_dir = dir.join("man");
    std::fs::create_dir_all(&man_dir)?;
    let mut page = Vec::new();
    // The man page header holds one line: the version number, not `--version`'s two lines.
    let titled = command.clone().version(env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(titled).render(&mut page)?;
    std::fs::write(man_dir.join("mongomirror.1"), page)?;
    println!("{}", man_dir.join("mongomirror.1").display());

    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let path = clap_complete::generate_to(shell, &mut command, "mongomirror", &completions)?;
        println!("{}", path.display());
    }
    Ok(())
}
