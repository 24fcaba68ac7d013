//! The `--config` YAML file.
//!
//! mongomirror documents four keys (`password`, `destinationPassword`, `sslPEMKeyPassword` and
//! `uri`); we also accept every other flag by its long name. Keys the command line or the
//! environment already set are skipped, which gives the precedence flag > env > file.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde_norway::Value;

use crate::error::{Failure, Result};

/// Reads the config file and returns the `--flag=value` arguments it contributes.
pub(super) fn arguments_from_file(
    command: &Command,
    matches: &ArgMatches,
    path: &str,
) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!("cannot read config file '{path}': {e}"))
            .hint("--config takes the path of a readable YAML file")
    })?;
    let bad = |why: String| {
        Failure::usage(format!("config file '{path}': {why}"))
            .hint("the file holds one `flagName: value` per line, e.g. `destinationPassword: ...`")
    };
    let map = match serde_norway::from_str::<Value>(&text) {
        Ok(Value::Mapping(map)) => map,
        Ok(Value::Null) => return Ok(Vec::new()),
        Ok(_) => return Err(bad("expected a mapping of option names to values".into())),
        // The YAML error may quote the file, which can hold passwords: keep only its location.
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            return Err(bad(format!("it is not valid YAML{at}")));
        }
    };
    let mut out = Vec::new();
    let mut seen_host = false;
    for (key, value) in map {
        let Value::String(key) = key else {
            return Err(bad("every key must be a flag name".into()));
        };
        let long = if key == "uri" { "host" } else { key.as_str() };
        if long == "host" {
            if seen_host {
                return Err(bad("both `uri` and `host` are set; keep one".into()));
            }
            seen_host = true;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .filter(|a| {
                !matches!(a.get_action(), ArgAction::Help | ArgAction::Version) && long != "config"
            })
            .ok_or_else(|| bad(format!("unknown key '{key}'")))?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{long}");
        match (arg.get_action(), value) {
            (_, Value::Null) => {}
            (ArgAction::SetTrue, Value::Bool(b)) => {
                if b {
                    out.push(OsString::from(&flag));
                }
            }
            (ArgAction::SetTrue, _) => return Err(bad(format!("'{key}' must be true or false"))),
            (ArgAction::Count, Value::Number(n)) => {
                let times = n
                    .as_u64()
                    .filter(|n| *n <= 5)
                    .ok_or_else(|| bad(format!("'{key}' must be a count from 0 to 5")))?;
                out.extend((0..times).map(|_| OsString::from(&flag)));
            }
            (ArgAction::Count, Value::Bool(b)) => {
                if b {
                    out.push(OsString::from(&flag));
                }
            }
            (ArgAction::Append, Value::Sequence(items)) => {
                for item in items {
                    out.push(flag_value(
                        &flag,
                        scalar(&item)
                            .ok_or_else(|| bad(format!("'{key}' must be a list of strings")))?,
                    ));
                }
            }
            (_, value) => {
                let text =
                    scalar(&value).ok_or_else(|| bad(format!("'{key}' must be a single value")))?;
                out.push(flag_value(&flag, text));
            }
        }
    }
    Ok(out)
}

fn flag_value(flag: &str, value: String) -> OsString {
    OsString::from(format!("{flag}={value}"))
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
