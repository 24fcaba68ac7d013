//! The binary's command line, end to end: bad input never panics, always names the problem,
//! and exits with the documented code; `--help` and docs/cli.md agree.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::mongomirror;

const QUICK: Duration = Duration::from_secs(20);

#[tokio::test]
async fn bad_input_exits_2_with_a_clear_message() {
    let config_dir = tempfile::tempdir().unwrap();
    let unreadable = config_dir.path().join("missing.yaml");
    let unreadable = unreadable.to_str().unwrap();
    let base = [
        "--host",
        "rs0/127.0.0.1:27017",
        "--destination",
        "127.0.0.1:27018",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "missing --host"),
        (vec!["--host", "rs0/", "--destination", "d"], "has no hosts"),
        (
            vec!["--host", "rs0/:27017", "--destination", "d"],
            "no host name before the port",
        ),
        (
            vec!["--host", "h:notaport", "--destination", "d"],
            "'notaport' in 'h:notaport' is not a port number",
        ),
        (vec!["--host", "rs0/h:1"], "missing --destination"),
        (
            [&base[..], &["-j", "0"]].concat(),
            "--numParallelCollections",
        ),
        (
            [&base[..], &["--oplogBatchSize", "-5"]].concat(),
            "--oplogBatchSize",
        ),
        (
            [&base[..], &["--compressors", "lz4"]].concat(),
            "unknown compressor 'lz4'",
        ),
        (
            [&base[..], &["--includeNamespace", "nodot"]].concat(),
            "expected <database>.<collection>",
        ),
        (
            [&base[..], &["--noSuchFlag"]].concat(),
            "unexpected argument '--noSuchFlag'",
        ),
        (
            [&base[..], &["--httpStatusPort", "99999"]].concat(),
            "--httpStatusPort",
        ),
        (
            [&base[..], &["--config", unreadable]].concat(),
            "cannot read config file",
        ),
        (
            [&base[..], &["--preserveUUIDs"]].concat(),
            "--preserveUUIDs is not supported",
        ),
    ];
    for (args, message) in cases {
        let started = Instant::now();
        let out = mongomirror().args(&args).run(QUICK).await;
        out.assert_failed(2, message, "");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_unreachable_host_fails_in_bounded_time_without_showing_the_password() {
    let started = Instant::now();
    let out = mongomirror()
        .args([
            "--host",
            "rs0/127.0.0.1:1",
            "--destination",
            "127.0.0.1:2",
            "--username",
            "alice",
            "--password",
            "Unreachable-S3cret",
        ])
        .run(Duration::from_secs(60))
        .await;
    out.assert_failed(3, "Could not connect to the source", "--host");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !out.stderr.contains("Unreachable-S3cret") && !out.stdout.contains("Unreachable-S3cret"),
        "{out}"
    );
}

#[tokio::test]
async fn passwords_in_uris_and_config_files_are_never_printed() {
    let out = mongomirror()
        .args([
            "--host",
            "mongodb://alice:Uri-S3cret@h:zz/",
            "--destination",
            "d",
        ])
        .run(QUICK)
        .await;
    out.assert_failed(2, "invalid --host", "");
    assert!(!out.stderr.contains("Uri-S3cret"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mm.yaml");
    std::fs::write(&config, "password: [File-S3cret\n").unwrap();
    let out = mongomirror()
        .args([
            "--host",
            "h",
            "--destination",
            "d",
            "--config",
            config.to_str().unwrap(),
        ])
        .run(QUICK)
        .await;
    out.assert_failed(2, "not valid YAML", "");
    assert!(!out.stderr.contains("File-S3cret"), "{out}");
}

#[tokio::test]
async fn version_and_help_exit_0() {
    let out = mongomirror().arg("--version").run(QUICK).await;
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "{out}");

    let out = mongomirror().arg("--help").run(QUICK).await;
    assert!(out.success(), "{out}");
    for heading in [
        "Source:",
        "Destination:",
        "TLS (source):",
        "Namespaces:",
        "Copy:",
        "Oplog and resume:",
        "Monitoring:",
    ] {
        assert!(
            out.stdout.contains(heading),
            "missing section {heading}\n{out}"
        );
    }
}

/// The 39 options of mongomirror's reference, spelled exactly.
const MONGOMIRROR_FLAGS: [&str; 39] = [
    "host",
    "username",
    "password",
    "authenticationDatabase",
    "authenticationMechanism",
    "awsSessionToken",
    "compressors",
    "config",
    "destination",
    "destinationAuthenticationDatabase",
    "destinationAuthenticationMechanism",
    "destinationUsername",
    "destinationPassword",
    "drop",
    "noIndexRestore",
    "includeNamespace",
    "includeDB",
    "ssl",
    "sslPEMKeyFile",
    "sslPEMKeyPassword",
    "sslCAFile",
    "sslCRLFile",
    "sslAllowInvalidHostnames",
    "sslAllowInvalidCertificates",
    "tlsInsecure",
    "gssapiServiceName",
    "gssapiHostName",
    "readPreference",
    "writeConcern",
    "numParallelCollections",
    "bypassDocumentValidation",
    "bookmarkFile",
    "forceDump",
    "oplogPath",
    "oplogBatchSize",
    "httpStatusPort",
    "collStatsThreshold",
    "removeAutoIndexId",
    "preserveUUIDs",
];

/// Every `--flag` token in `text` that starts a help entry or a table cell.
fn flags_in(text: &str, entry_start: impl Fn(&str) -> Option<&str>) -> BTreeSet<String> {
    text.lines()
        .filter_map(entry_start)
        .flat_map(|cell| {
            cell.split([',', ' ', '`', '|'])
                .filter_map(|w| w.strip_prefix("--"))
                .map(|w| {
                    w.chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect::<String>()
                })
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The long flags `mongomirror --help` lists.
async fn help_flags() -> BTreeSet<String> {
    let out = mongomirror().arg("--help").run(QUICK).await;
    assert!(out.success(), "{out}");
    // Help entries are lines that start (after indentation) with `-x, --flag` or `--flag`.
    flags_in(&out.stdout, |l| {
        let t = l.trim_start();
        (t.starts_with("--") || (t.starts_with('-') && t.get(2..4) == Some(", ")))
            .then(|| t.split("  ").next().unwrap_or(t))
    })
}

#[tokio::test]
async fn help_shows_every_mongomirror_option_and_matches_docs_cli_md() {
    let help = help_flags().await;
    for flag in MONGOMIRROR_FLAGS {
        assert!(help.contains(flag), "--help lacks --{flag}");
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    // Documented flags are the first cell of a table row.
    let documented = flags_in(&doc, |l| {
        l.strip_prefix("| `--")
            .map(|_| l.split('|').nth(1).unwrap_or(""))
    });
    assert_eq!(
        help, documented,
        "flags in --help (left) and docs/cli.md (right) differ"
    );
}

/// `<ts>\t<rest>` with mongo-tools' timestamp (`2026-11-25T12:50:52.296+0000`); returns `<rest>`.
fn text_line(line: &str) -> &str {
    let (ts, rest) = line
        .split_once('\t')
        .unwrap_or_else(|| panic!("no tab in {line:?}"));
    let shape = ts.len() == 28
        && ts.as_bytes()[10] == b'T'
        && ts.as_bytes()[19] == b'.'
        && matches!(ts.as_bytes()[23], b'+' | b'-')
        && ts
            .chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23) || c.is_ascii_digit());
    assert!(shape, "not a mongo-tools timestamp: {ts:?}");
    rest
}

/// Parses one JSON log line and checks the fields every line has.
fn json_line(line: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    for key in ["time", "level", "message"] {
        assert!(v[key].is_string(), "no {key} in {line}");
    }
    v
}

#[tokio::test]
async fn a_failure_is_text_lines_by_default_and_one_json_object_with_log_format_json() {
    let args = ["--host", "rs0/", "--destination", "d"];
    let out = mongomirror().args(args).run(QUICK).await;
    out.assert_failed(2, "has no hosts", "");
    let rest: Vec<&str> = out.stderr.lines().map(text_line).collect();
    assert_eq!(
        rest,
        [
            "Failed: invalid --host 'rs0/': replica set 'rs0' has no hosts after the '/'",
            "  hint: use --host setName/host1:27017,host2:27017, --host host:port, or a mongodb:// URI",
        ],
        "{out}"
    );

    for json in [["--logFormat", "json"], ["--logFormat=JSON", "-j=2"]] {
        let out = mongomirror().args(args).args(json).run(QUICK).await;
        assert_eq!(out.status, Some(2), "{out}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v = json_line(lines[0]);
        assert_eq!(v["level"], "error");
        assert_eq!(
            v["message"],
            "Failed: invalid --host 'rs0/': replica set 'rs0' has no hosts after the '/'"
        );
        assert_eq!(
            v["error"],
            "invalid --host 'rs0/': replica set 'rs0' has no hosts after the '/'"
        );
        assert!(v["hint"].as_str().unwrap().starts_with("use --host"), "{v}");
    }
}

#[tokio::test]
async fn log_format_json_makes_every_line_of_a_run_an_object() {
    let pair = crate::support::Pair::start().await;
    let out = pair
        .mongomirror()
        .args(["--preflightOnly", "--logFormat", "json"])
        .run(Duration::from_secs(60))
        .await;
    assert!(out.success(), "{out}");
    let lines: Vec<serde_json::Value> = out.stderr.lines().map(json_line).collect();
    let messages: Vec<&str> = lines
        .iter()
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("connected to the source: replica set")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .all(|v| v["level"] == "info" || v["level"] == "warn"),
        "{out}"
    );
    // Structured fields come typed: the preflight's oplog window is a number of seconds.
    assert!(
        lines.iter().any(|v| v["oplog_window_seconds"].is_u64()
            && v["message"]
                .as_str()
                .unwrap()
                .starts_with("preflight: the source oplog covers")),
        "{out}"
    );
}

/// The man page and the completions come from the clap definition that prints `--help`
/// (tools/assets.rs renders them the same way): each names every flag `--help` lists.
#[tokio::test]
async fn man_page_and_completions_name_every_flag_of_help() {
    use clap::CommandFactory;
    use clap_complete::Shell;

    // `token` occurs followed by something other than a flag-name character.
    let names = |text: &str, token: &str| {
        text.match_indices(token)
            .any(|(i, _)| !text[i + token.len()..].starts_with(|c: char| c.is_ascii_alphanumeric()))
    };
    let mut man = Vec::new();
    clap_mangen::Man::new(mongomirror::cli::Args::command())
        .render(&mut man)
        .unwrap();
    let man = String::from_utf8(man).unwrap();
    let completions = |shell| {
        let mut out = Vec::new();
        clap_complete::generate(
            shell,
            &mut mongomirror::cli::Args::command(),
            "mongomirror",
            &mut out,
        );
        String::from_utf8(out).unwrap()
    };
    let (bash, zsh, fish) = (
        completions(Shell::Bash),
        completions(Shell::Zsh),
        completions(Shell::Fish),
    );
    let help = help_flags().await;
    assert!(help.len() > 40, "{help:?}");
    for flag in &help {
        assert!(
            names(&man, &format!("\\-\\-{flag}")),
            "man page lacks --{flag}"
        );
        assert!(names(&bash, &format!("--{flag}")), "bash lacks --{flag}");
        assert!(names(&zsh, &format!("--{flag}")), "zsh lacks --{flag}");
        assert!(names(&fish, &format!("-l {flag}")), "fish lacks --{flag}");
    }
}
