//! The command line: mongomirror's flags, the `--config` file, and the environment, merged in one
//! place and resolved into [`Options`] before anything touches the network.
//!
//! Precedence is flag, then environment variable, then config file. The config file is merged by
//! turning its keys back into `--flag=value` arguments for every flag that the command line and
//! the environment left unset, so a value from the file goes through exactly the same parser and
//! checks as one typed on the command line.

mod args;
mod config;
mod namespace;
mod options;

pub use args::{Args, ENV_DESTINATION_PASSWORD, ENV_PASSWORD, ENV_SSL_PEM_KEY_PASSWORD};
pub use namespace::{Namespace, NamespaceFilter, SYSTEM_DATABASES};
pub use options::{
    built_mechanisms, Address, Auth, Compressor, Compressors, Endpoint, HostPort, LogFormat,
    Options, Side, TlsSettings, Verbosity, DEFAULT_BOOKMARK_FILE, DEFAULT_OPLOG_BATCH_SIZE,
    DEFAULT_PARALLEL_COLLECTIONS,
};

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use crate::error::{Failure, Result};

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run with these options.
    Run(Box<Options>),
    /// Print this text (help or version) and exit 0.
    Print(String),
}

/// Parses a full argument list (program name first) into an [`Invocation`].
pub fn parse<I, T>(argv: I) -> Result<Invocation>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let command = Args::command();
    let mut matches = match command.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => return clap_outcome(e, None),
    };
    if let Some(path) = matches.get_one::<String>("config").cloned() {
        argv.extend(config::arguments_from_file(&command, &matches, &path)?);
        matches = match command.try_get_matches_from(&argv) {
            Ok(m) => m,
            Err(e) => return clap_outcome(e, Some(&path)),
        };
    }
    let args = Args::from_arg_matches(&matches).map_err(|e| clap_failure(e, None))?;
    Options::from_args(args).map(|o| Invocation::Run(Box::new(o)))
}

/// The `--logFormat` typed on the command line, found by a plain scan of the arguments.
///
/// It lets a usage error, which is found before the flags are resolved, come out in the format
/// the operator asked for. A value only the config file sets applies once parsing succeeds.
pub fn log_format_in(argv: &[OsString]) -> LogFormat {
    let mut words = argv.iter().filter_map(|a| a.to_str());
    while let Some(word) = words.next() {
        let value = match word.split_once('=') {
            Some(("--logFormat", value)) => Some(value),
            None if word == "--logFormat" => words.next(),
            _ => None,
        };
        if let Some(value) = value {
            return if value.eq_ignore_ascii_case("json") {
                LogFormat::Json
            } else {
                LogFormat::Text
            };
        }
    }
    LogFormat::Text
}

/// Help and version requests become [`Invocation::Print`]; everything else is a usage failure.
fn clap_outcome(e: clap::Error, config: Option<&str>) -> Result<Invocation> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            Ok(Invocation::Print(e.render().to_string()))
        }
        _ => Err(clap_failure(e, config)),
    }
}

/// Turns clap's multi-line error into one line plus a hint, with URIs redacted.
fn clap_failure(e: clap::Error, config: Option<&str>) -> Failure {
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let message = redact_uris_in(message);
    let tip = lines
        .find_map(|l| l.strip_prefix("tip: "))
        .map(|t| format!("{t}; run 'mongomirror --help' to see every flag"));
    let mut failure = Failure::usage(message)
        .hint(tip.unwrap_or_else(|| "run 'mongomirror --help' to see every flag".to_string()));
    if let Some(path) = config {
        failure = failure.cause(format!("the value comes from the config file '{path}'"));
    }
    failure
}

/// Redacts every `mongodb://` or `mongodb+srv://` URI inside free text.
fn redact_uris_in(text: &str) -> String {
    text.split_inclusive([' ', '\''])
        .map(|word| {
            let trimmed = word.trim_end_matches([' ', '\'']);
            if trimmed.starts_with("mongodb://") || trimmed.starts_with("mongodb+srv://") {
                format!(
                    "{}{}",
                    crate::redact::redact_uri(trimmed),
                    &word[trimmed.len()..]
                )
            } else {
                word.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
