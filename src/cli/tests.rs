//! One parse test per flag, and the bad inputs an operator is most likely to type.

use super::*;
use crate::error::ExitCode;
use mongodb::options::AuthMechanism;

const BASE: &[&str] = &[
    "mongomirror",
    "--host",
    "rs0/h1:27017,h2:27017",
    "--destination",
    "rs1/d1:27017",
];

fn parse_ok(extra: &[&str]) -> Options {
    let argv: Vec<&str> = BASE.iter().chain(extra).copied().collect();
    match parse(argv) {
        Ok(Invocation::Run(o)) => *o,
        Ok(Invocation::Print(t)) => panic!("unexpected print: {t}"),
        Err(f) => panic!("unexpected failure: {f}"),
    }
}

fn parse_err(argv: &[&str]) -> crate::error::Failure {
    match parse(argv.iter().copied()) {
        Ok(other) => panic!("expected a failure for {argv:?}, got {other:?}"),
        Err(f) => f,
    }
}

fn parse_err_extra(extra: &[&str]) -> crate::error::Failure {
    let argv: Vec<&str> = BASE.iter().chain(extra).copied().collect();
    parse_err(&argv)
}

/// A test that one flag parses into the expected option.
macro_rules! flag_test {
    ($name:ident, [$($arg:expr),*], |$o:ident| $check:expr) => {
        #[test]
        fn $name() {
            let $o = parse_ok(&[$($arg),*]);
            $check;
        }
    };
}

flag_test!(flag_host, [], |o| assert_eq!(
    o.source.address.display(),
    "rs0/h1:27017,h2:27017"
));
flag_test!(flag_destination, [], |o| assert_eq!(
    o.destination.address.display(),
    "rs1/d1:27017"
));
flag_test!(
    flag_username,
    ["--username", "alice", "--password", "pw1"],
    |o| { assert_eq!(o.source.auth.unwrap().username.as_deref(), Some("alice")) }
);
flag_test!(
    flag_password,
    ["--username", "alice", "--password=pw2"],
    |o| { assert_eq!(o.source.auth.unwrap().password.as_deref(), Some("pw2")) }
);
flag_test!(
    flag_authentication_database,
    [
        "--username",
        "a",
        "--password",
        "p",
        "--authenticationDatabase",
        "users"
    ],
    |o| { assert_eq!(o.source.auth.unwrap().source.as_deref(), Some("users")) }
);
flag_test!(
    flag_authentication_mechanism,
    [
        "--username",
        "a",
        "--password",
        "p",
        "--authenticationMechanism",
        "SCRAM-SHA-1"
    ],
    |o| {
        assert_eq!(
            o.source.auth.unwrap().mechanism,
            Some(AuthMechanism::ScramSha1)
        )
    }
);
flag_test!(
    flag_destination_username,
    ["--destinationUsername", "bob", "--destinationPassword", "p"],
    |o| { assert_eq!(o.destination.auth.unwrap().username.as_deref(), Some("bob")) }
);
flag_test!(
    flag_destination_password,
    [
        "--destinationUsername",
        "bob",
        "--destinationPassword",
        "dpw"
    ],
    |o| { assert_eq!(o.destination.auth.unwrap().password.as_deref(), Some("dpw")) }
);
flag_test!(
    flag_destination_authentication_database,
    [
        "--destinationUsername",
        "b",
        "--destinationPassword",
        "p",
        "--destinationAuthenticationDatabase",
        "admin2"
    ],
    |o| {
        assert_eq!(
            o.destination.auth.unwrap().source.as_deref(),
            Some("admin2")
        )
    }
);
flag_test!(
    flag_destination_authentication_mechanism,
    [
        "--destinationUsername",
        "b",
        "--destinationPassword",
        "p",
        "--destinationAuthenticationMechanism",
        "PLAIN"
    ],
    |o| {
        assert_eq!(
            o.destination.auth.unwrap().mechanism,
            Some(AuthMechanism::Plain)
        )
    }
);
flag_test!(flag_compressors, ["--compressors", "zlib"], |o| {
    assert_eq!(o.source.compressors, Compressors(vec![Compressor::Zlib]));
    assert_eq!(
        o.destination.compressors,
        Compressors(vec![Compressor::Zlib])
    );
});
flag_test!(flag_compressors_default_and_none, [], |o| assert_eq!(
    o.source.compressors,
    Compressors::default()
));
flag_test!(flag_drop, ["--drop"], |o| assert!(o.drop));
flag_test!(flag_no_index_restore, ["--noIndexRestore"], |o| assert!(
    o.no_index_restore
));
flag_test!(
    flag_include_namespace,
    ["--includeNamespace", "a.b", "--includeNamespace=c.d.e"],
    |o| {
        assert_eq!(
            o.filter.include_namespaces,
            vec![Namespace::new("a", "b"), Namespace::new("c", "d.e")]
        )
    }
);
flag_test!(
    flag_include_db,
    ["--includeDB", "a", "--includeDB", "b"],
    |o| assert_eq!(o.filter.include_dbs, vec!["a", "b"])
);
flag_test!(flag_exclude_namespace, ["--excludeNamespace", "a.b"], |o| {
    assert_eq!(o.filter.exclude_namespaces, vec![Namespace::new("a", "b")])
});
flag_test!(flag_exclude_db, ["--excludeDB", "x"], |o| assert_eq!(
    o.filter.exclude_dbs,
    vec!["x"]
));
flag_test!(flag_ssl, ["--ssl"], |o| assert_eq!(
    o.source.tls,
    Some(TlsSettings::default())
));
flag_test!(
    flag_ssl_pem_key_file,
    ["--sslPEMKeyFile", "Cargo.toml"],
    |o| {
        assert_eq!(
            o.source.tls.unwrap().cert_key_file,
            Some("Cargo.toml".into())
        )
    }
);
flag_test!(
    flag_ssl_pem_key_password,
    ["--sslPEMKeyFile", "Cargo.toml", "--sslPEMKeyPassword", "kp"],
    |o| {
        assert_eq!(
            o.source.tls.unwrap().cert_key_password.as_deref(),
            Some("kp")
        )
    }
);
flag_test!(
    flag_ssl_ca_file,
    ["--ssl", "--sslCAFile", "Cargo.toml"],
    |o| { assert_eq!(o.source.tls.unwrap().ca_file, Some("Cargo.toml".into())) }
);
flag_test!(
    flag_ssl_allow_invalid_hostnames,
    ["--ssl", "--sslAllowInvalidHostnames"],
    |o| {
        assert!(o.source.tls.unwrap().allow_invalid);
        assert!(o
            .warnings
            .iter()
            .any(|w| w.contains("--sslAllowInvalidHostnames")));
    }
);
flag_test!(
    flag_ssl_allow_invalid_certificates,
    ["--ssl", "--sslAllowInvalidCertificates"],
    |o| { assert!(o.source.tls.unwrap().allow_invalid) }
);
flag_test!(flag_tls_insecure, ["--ssl", "--tlsInsecure"], |o| assert!(
    o.source.tls.unwrap().allow_invalid
));
flag_test!(
    flag_read_preference,
    ["--readPreference", "secondary"],
    |o| {
        assert!(o
            .warnings
            .iter()
            .any(|w| w.contains("--readPreference is deprecated and has no effect")))
    }
);
flag_test!(flag_write_concern, ["--writeConcern", "{w:1}"], |o| {
    assert!(o
        .warnings
        .iter()
        .any(|w| w.contains("--writeConcern is deprecated and has no effect")))
});
flag_test!(
    flag_bypass_document_validation,
    ["--bypassDocumentValidation"],
    |o| {
        assert!(o
            .warnings
            .iter()
            .any(|w| w.contains("--bypassDocumentValidation is deprecated and has no effect")))
    }
);
flag_test!(
    flag_num_parallel_collections,
    ["--numParallelCollections", "8"],
    |o| assert_eq!(o.num_parallel_collections, 8)
);
flag_test!(flag_j, ["-j", "2"], |o| assert_eq!(
    o.num_parallel_collections,
    2
));
flag_test!(flag_j_default, [], |o| assert_eq!(
    o.num_parallel_collections,
    DEFAULT_PARALLEL_COLLECTIONS
));
flag_test!(
    flag_bookmark_file,
    ["--bookmarkFile", "/tmp/b.json"],
    |o| assert_eq!(o.bookmark_file, std::path::PathBuf::from("/tmp/b.json"))
);
flag_test!(flag_bookmark_file_default, [], |o| assert_eq!(
    o.bookmark_file,
    std::path::PathBuf::from("mongomirror.bookmark")
));
flag_test!(flag_force_dump, ["--forceDump"], |o| assert!(o.force_dump));
flag_test!(
    flag_oplog_path,
    ["--oplogPath", "/var/spool"],
    |o| assert_eq!(o.oplog_path, Some("/var/spool".into()))
);
flag_test!(
    flag_oplog_batch_size,
    ["--oplogBatchSize", "500"],
    |o| assert_eq!(o.oplog_batch_size, 500)
);
flag_test!(flag_oplog_batch_size_default, [], |o| assert_eq!(
    o.oplog_batch_size,
    DEFAULT_OPLOG_BATCH_SIZE
));
flag_test!(
    flag_http_status_port,
    ["--httpStatusPort", "8080"],
    |o| assert_eq!(o.http_status, Some(("127.0.0.1".to_string(), 8080)))
);
flag_test!(
    flag_http_status_host,
    ["--httpStatusPort", "1", "--httpStatusHost", "0.0.0.0"],
    |o| { assert_eq!(o.http_status, Some(("0.0.0.0".to_string(), 1))) }
);
flag_test!(
    flag_coll_stats_threshold,
    ["--collStatsThreshold", "-1"],
    |o| assert_eq!(o.coll_stats_threshold, -1)
);
flag_test!(
    flag_coll_stats_threshold_zero,
    ["--collStatsThreshold", "0"],
    |o| assert_eq!(o.coll_stats_threshold, 0)
);
flag_test!(
    flag_remove_auto_index_id,
    ["--removeAutoIndexId"],
    |o| assert!(o.remove_auto_index_id)
);
flag_test!(
    flag_ttl_without_expiry,
    ["--ttlWithoutExpiry"],
    |o| assert!(o.ttl_without_expiry)
);
flag_test!(flag_preflight_only, ["--preflightOnly"], |o| assert!(
    o.preflight_only
));
flag_test!(
    flag_max_outage_seconds,
    ["--maxOutageSeconds", "30"],
    |o| assert_eq!(o.max_outage, std::time::Duration::from_secs(30))
);
flag_test!(flag_max_outage_seconds_default, [], |o| assert_eq!(
    o.max_outage,
    crate::retry::DEFAULT_MAX_OUTAGE
));
flag_test!(flag_verify, ["--verify"], |o| assert!(
    o.verify && o.verify_report.is_none() && o.verify_max_differences == 10
));
flag_test!(
    flag_verify_report,
    ["--verify", "--verifyReport", "report.json"],
    |o| assert_eq!(
        o.verify_report,
        Some(std::path::PathBuf::from("report.json"))
    )
);
flag_test!(
    flag_verify_max_differences,
    ["--verify", "--verifyMaxDifferences", "3"],
    |o| assert_eq!(o.verify_max_differences, 3)
);

#[test]
fn verify_writes_nothing_so_it_refuses_flags_that_write() {
    for other in ["--drop", "--forceDump", "--preflightOnly"] {
        let f = parse_err_extra(&["--verify", other]);
        assert_eq!(f.exit, ExitCode::Usage);
        assert!(f.message.contains("--verify"), "{other}: {}", f.message);
    }
    let f = parse_err_extra(&["--verifyMaxDifferences", "0"]);
    assert!(
        f.message.contains("--verifyMaxDifferences"),
        "{}",
        f.message
    );
}

flag_test!(flag_verbose, ["-vv"], |o| assert_eq!(
    o.verbosity,
    Verbosity::Trace
));
flag_test!(flag_verbose_long, ["--verbose"], |o| assert_eq!(
    o.verbosity,
    Verbosity::Verbose
));
flag_test!(flag_log_format, ["--logFormat", "json"], |o| assert_eq!(
    o.log_format,
    LogFormat::Json
));
flag_test!(flag_log_format_default, [], |o| assert_eq!(
    o.log_format,
    LogFormat::Text
));

#[test]
fn log_format_is_found_before_parsing() {
    let scan = |argv: &[&str]| log_format_in(&argv.iter().map(OsString::from).collect::<Vec<_>>());
    assert_eq!(
        scan(&["mm", "--logFormat", "json", "--nope"]),
        LogFormat::Json
    );
    assert_eq!(scan(&["mm", "--logFormat=JSON"]), LogFormat::Json);
    assert_eq!(scan(&["mm", "--logFormat=text"]), LogFormat::Text);
    assert_eq!(scan(&["mm", "--host", "h"]), LogFormat::Text);
    assert_eq!(scan(&["mm", "--logFormat"]), LogFormat::Text);
}

flag_test!(flag_quiet, ["--quiet"], |o| assert_eq!(
    o.verbosity,
    Verbosity::Quiet
));

#[test]
fn flag_host_accepts_uris_and_bare_hosts() {
    for (host, want_uri) in [
        ("mongodb://u:p@a:1,b:2/?replicaSet=rs0", true),
        ("mongodb+srv://c.example.net/", true),
        ("a:27018", false),
    ] {
        let o = match parse(["mongomirror", "--host", host, "--destination", "d"]) {
            Ok(Invocation::Run(o)) => o,
            other => panic!("{host}: {other:?}"),
        };
        assert_eq!(
            matches!(o.source.address, Address::Uri(_)),
            want_uri,
            "{host}"
        );
    }
}

#[test]
fn flag_destination_atlas_hosts_use_tls() {
    let o = match parse([
        "mongomirror",
        "--host",
        "h:1",
        "--destination",
        "atlas-x-shard-0/c0.abcde.mongodb.net:27017",
    ]) {
        Ok(Invocation::Run(o)) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(o.destination.tls, Some(TlsSettings::default()));
}

#[test]
fn flag_help_and_version_print() {
    for flag in ["--help", "--version"] {
        match parse(["mongomirror", flag]) {
            Ok(Invocation::Print(text)) => assert!(text.contains("mongomirror"), "{text}"),
            other => panic!("{flag}: {other:?}"),
        }
    }
}

/// A test that a flag the build cannot honour fails with a usage error naming it.
macro_rules! refused_test {
    ($name:ident, [$($arg:expr),*], $flag:expr) => {
        #[test]
        fn $name() {
            let f = parse_err_extra(&[$($arg),*]);
            assert_eq!(f.exit, ExitCode::Usage);
            assert!(f.message.contains($flag), "{}", f.message);
            assert!(f.hint.is_some());
        }
    };
}

refused_test!(flag_preserve_uuids, ["--preserveUUIDs"], "--preserveUUIDs");
refused_test!(
    flag_ssl_crl_file,
    ["--sslCRLFile", "crl.pem"],
    "--sslCRLFile"
);
refused_test!(
    flag_mongodb_cr_mechanism,
    ["--username", "u", "--authenticationMechanism", "MONGODB-CR"],
    "--authenticationMechanism MONGODB-CR"
);

/// The AWS flags of one run: the access key ID, the secret access key and a session token.
pub(crate) const AWS_FLAGS: &[&str] = &[
    "--authenticationMechanism",
    "MONGODB-AWS",
    "--username",
    "AKIAEXAMPLEKEYID",
    "--password",
    "aws-Secret-Key",
    "--awsSessionToken",
    "aws-Session-Token",
];

/// The GSSAPI flags of one run: the principal, the service name and the service host.
#[cfg(feature = "gssapi")]
pub(crate) const GSSAPI_FLAGS: &[&str] = &[
    "--authenticationMechanism",
    "GSSAPI",
    "--username",
    "mirror@EXAMPLE.COM",
    "--gssapiServiceName",
    "mongodb-prod",
    "--gssapiHostName",
    "db1.internal",
];

#[cfg(feature = "aws")]
#[test]
fn flag_aws_session_token() {
    let auth = parse_ok(AWS_FLAGS).source.auth.unwrap();
    assert_eq!(auth.mechanism, Some(AuthMechanism::MongoDbAws));
    assert_eq!(auth.username.as_deref(), Some("AKIAEXAMPLEKEYID"));
    assert_eq!(auth.aws_session_token.as_deref(), Some("aws-Session-Token"));
}
#[cfg(feature = "aws")]
flag_test!(
    flag_mongodb_iam_is_mongodb_aws,
    ["--authenticationMechanism", "MONGODB-IAM"],
    |o| {
        let auth = o.source.auth.unwrap();
        assert_eq!(auth.mechanism, Some(AuthMechanism::MongoDbAws));
        // No keys: the driver takes them from the AWS environment.
        assert_eq!((auth.username, auth.password), (None, None));
    }
);
#[cfg(not(feature = "aws"))]
refused_test!(
    flag_aws_without_the_feature,
    ["--authenticationMechanism", "MONGODB-AWS"],
    "cargo feature `aws`"
);
#[cfg(feature = "gssapi")]
#[test]
fn flag_gssapi_service_name() {
    let auth = parse_ok(GSSAPI_FLAGS).source.auth.unwrap();
    assert_eq!(auth.mechanism, Some(AuthMechanism::Gssapi));
    assert_eq!(auth.gssapi_service_name.as_deref(), Some("mongodb-prod"));
}
#[cfg(feature = "gssapi")]
#[test]
fn flag_gssapi_host_name() {
    let auth = parse_ok(GSSAPI_FLAGS).source.auth.unwrap();
    assert_eq!(auth.gssapi_host_name.as_deref(), Some("db1.internal"));
}
#[cfg(not(feature = "gssapi"))]
refused_test!(
    flag_gssapi_without_the_feature,
    [
        "--authenticationMechanism",
        "GSSAPI",
        "--username",
        "mirror@EXAMPLE.COM",
        "--gssapiServiceName",
        "mongodb"
    ],
    "cargo feature `gssapi`"
);
flag_test!(
    flag_x509_with_a_client_certificate,
    [
        "--authenticationMechanism",
        "MONGODB-X509",
        "--sslPEMKeyFile",
        "Cargo.toml"
    ],
    |o| {
        let auth = o.source.auth.unwrap();
        assert_eq!(auth.mechanism, Some(AuthMechanism::MongoDbX509));
        assert_eq!((auth.username, auth.password), (None, None));
    }
);
#[test]
fn flag_destination_x509_from_a_uri_certificate() {
    let o = match parse([
        "mongomirror",
        "--host",
        "h",
        "--destination",
        "mongodb://d1/?tls=true&tlsCertificateKeyFile=/etc/mm/client.pem",
        "--destinationAuthenticationMechanism",
        "MONGODB-X509",
    ]) {
        Ok(Invocation::Run(o)) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        o.destination.auth.unwrap().mechanism,
        Some(AuthMechanism::MongoDbX509)
    );
}
flag_test!(
    flag_plain_on_the_source,
    [
        "--authenticationMechanism",
        "PLAIN",
        "--username",
        "ldap-user",
        "--password",
        "ldap-Pw",
        "--authenticationDatabase",
        "$external"
    ],
    |o| {
        let auth = o.source.auth.unwrap();
        assert_eq!(auth.mechanism, Some(AuthMechanism::Plain));
        assert_eq!(auth.source.as_deref(), Some("$external"));
    }
);

/// Every combination of credential flags that cannot authenticate fails before any connection,
/// and the message names the missing or extra piece.
#[test]
fn bad_credential_combinations_name_the_missing_piece() {
    let mut cases: Vec<(Vec<&str>, &str, &str)> =
        vec![
        (
            vec!["--awsSessionToken", "t"],
            "--awsSessionToken only applies to --authenticationMechanism MONGODB-AWS",
            "--authenticationMechanism MONGODB-AWS",
        ),
        (
            vec!["--username", "u", "--password", "p", "--gssapiServiceName", "svc"],
            "--gssapiServiceName only applies to --authenticationMechanism GSSAPI",
            "remove --gssapiServiceName",
        ),
        (
            vec!["--gssapiHostName", "h", "--authenticationMechanism", "PLAIN"],
            "--gssapiHostName only applies to --authenticationMechanism GSSAPI",
            "GSSAPI",
        ),
        (
            vec!["--authenticationMechanism", "MONGODB-X509"],
            "MONGODB-X509 on the source needs a client certificate",
            "--sslPEMKeyFile",
        ),
        (
            vec![
                "--authenticationMechanism",
                "MONGODB-X509",
                "--sslPEMKeyFile",
                "Cargo.toml",
                "--username",
                "CN=mirror",
                "--password",
                "x509-Pw",
            ],
            "--password cannot be used with MONGODB-X509",
            "remove --password",
        ),
        (
            vec![
                "--authenticationMechanism",
                "MONGODB-X509",
                "--sslPEMKeyFile",
                "Cargo.toml",
                "--authenticationDatabase",
                "admin",
            ],
            "MONGODB-X509 users are defined in $external, but --authenticationDatabase is 'admin'",
            "$external",
        ),
        (
            vec!["--destinationAuthenticationMechanism", "MONGODB-X509"],
            "MONGODB-X509 on the destination needs a client certificate",
            "tlsCertificateKeyFile",
        ),
        (
            vec!["--authenticationMechanism", "PLAIN", "--username", "ldap-user"],
            "the source password is missing",
            "--password",
        ),
        (
            vec![
                "--destinationAuthenticationMechanism",
                "PLAIN",
                "--destinationPassword",
                "p",
            ],
            "--destinationPassword was given without --destinationUsername",
            "--destinationUsername",
        ),
    ];
    if cfg!(feature = "aws") {
        cases.extend([
            (
                vec!["--authenticationMechanism", "MONGODB-AWS", "--username", "AKIA"],
                "MONGODB-AWS needs both --username (the AWS access key ID) and --password (the secret access key), or neither",
                "AWS_ACCESS_KEY_ID",
            ),
            (
                vec![
                    "--authenticationMechanism",
                    "MONGODB-IAM",
                    "--awsSessionToken",
                    "aws-Session-Token",
                ],
                "--awsSessionToken was given without --username (the AWS access key ID) and --password (the secret access key)",
                "AWS_SESSION_TOKEN",
            ),
            (
                vec![
                    "--authenticationMechanism",
                    "MONGODB-AWS",
                    "--authenticationDatabase",
                    "admin",
                ],
                "MONGODB-AWS users are defined in $external",
                "--authenticationDatabase",
            ),
        ]);
    }
    if cfg!(feature = "gssapi") {
        cases.push((
            vec!["--authenticationMechanism", "GSSAPI"],
            "GSSAPI needs --username: the Kerberos principal",
            "kinit",
        ));
    }
    for (extra, message, hint) in cases {
        let f = parse_err_extra(&extra);
        assert_eq!(f.exit, ExitCode::Usage, "{extra:?}");
        assert!(
            f.message.contains(message),
            "{extra:?}: got {:?}",
            f.message
        );
        let got = f.hint.unwrap_or_default();
        assert!(got.contains(hint), "{extra:?}: hint {got:?}");
    }
}

/// The session token and the secret key are registered secrets: no failure and no `Debug`
/// output shows them.
#[test]
fn aws_secrets_never_show() {
    let argv: Vec<&str> = BASE.iter().chain(AWS_FLAGS).copied().collect();
    let shown = match parse(argv) {
        Ok(Invocation::Run(o)) => format!("{o:?}"),
        Ok(other) => panic!("{other:?}"),
        Err(f) => f.to_string(),
    };
    assert!(shown.contains("AKIAEXAMPLEKEYID") || shown.contains("cargo feature"));
    for secret in ["aws-Secret-Key", "aws-Session-Token"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
        assert_eq!(
            crate::redact::scrub(&format!("x {secret} y")),
            "x <redacted> y"
        );
    }
}

#[test]
fn bad_inputs_fail_with_usage_code_and_hint() {
    let cases: &[(&[&str], &str)] = &[
        (&["mongomirror"], "missing --host"),
        (
            &["mongomirror", "--host", "rs0/", "--destination", "d"],
            "has no hosts",
        ),
        (
            &["mongomirror", "--host", "rs0/:27017", "--destination", "d"],
            "no host name",
        ),
        (
            &["mongomirror", "--host", "h:notaport", "--destination", "d"],
            "not a port number",
        ),
        (&["mongomirror", "--host", "h"], "missing --destination"),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "-j",
                "0",
            ],
            "--numParallelCollections",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--oplogBatchSize",
                "-5",
            ],
            "--oplogBatchSize",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--compressors",
                "lz4",
            ],
            "unknown compressor 'lz4'",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--includeNamespace",
                "nodot",
            ],
            "expected <database>.<collection>",
        ),
        (
            &["mongomirror", "--host", "h", "--destination", "d", "--nope"],
            "unexpected argument '--nope'",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--httpStatusPort",
                "99999",
            ],
            "--httpStatusPort",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--config",
                "/nonexistent/mm.yaml",
            ],
            "cannot read config file",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--username",
                "u",
            ],
            "password is missing",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--password",
                "p",
            ],
            "without --username",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--sslCAFile",
                "/nonexistent/ca.pem",
            ],
            "cannot read --sslCAFile",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--verbose",
                "--quiet",
            ],
            "cannot be used with",
        ),
        (
            &[
                "mongomirror",
                "--host",
                "h",
                "--destination",
                "d",
                "--logFormat",
                "xml",
            ],
            "invalid value 'xml' for '--logFormat <FORMAT>'",
        ),
    ];
    for (argv, expected) in cases {
        let f = parse_err(argv);
        assert_eq!(f.exit, ExitCode::Usage, "{argv:?}");
        assert!(
            f.message.contains(expected),
            "{argv:?}: got {:?}",
            f.message
        );
        assert!(f.hint.is_some(), "{argv:?} has no hint");
    }
}

#[test]
fn camel_case_suggestion_is_offered() {
    let f = parse_err_extra(&["--include-namespace", "a.b"]);
    assert!(f.hint.unwrap().contains("--includeNamespace"));
}

#[test]
fn uri_values_in_clap_errors_are_redacted() {
    assert_eq!(
        redact_uris_in("invalid value 'mongodb://u:pw@h/' for '--x'"),
        "invalid value 'mongodb://<redacted>@h/' for '--x'"
    );
}

mod config_file {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn parse_with(config: &str, extra: &[&str]) -> crate::error::Result<Options> {
        let f = file(config);
        let path = f.path().to_str().unwrap().to_string();
        let mut argv = vec!["mongomirror", "--config", path.as_str()];
        argv.extend_from_slice(extra);
        match parse(argv)? {
            Invocation::Run(o) => Ok(*o),
            Invocation::Print(t) => panic!("{t}"),
        }
    }

    #[test]
    fn documented_keys_and_any_flag() {
        let o = parse_with(
            "uri: mongodb://src:27017/?replicaSet=rs0\n\
             username: alice\npassword: filepw\n\
             destination: rs1/d1:27017\ndestinationUsername: bob\ndestinationPassword: dfilepw\n\
             includeNamespace: [a.b, c.d]\ndrop: true\nnumParallelCollections: 3\nverbose: 2\n",
            &[],
        )
        .unwrap();
        assert!(matches!(o.source.address, Address::Uri(_)));
        assert_eq!(o.source.auth.unwrap().password.as_deref(), Some("filepw"));
        assert_eq!(
            o.destination.auth.unwrap().password.as_deref(),
            Some("dfilepw")
        );
        assert_eq!(o.filter.include_namespaces.len(), 2);
        assert!(o.drop);
        assert_eq!(o.num_parallel_collections, 3);
        assert_eq!(o.verbosity, Verbosity::Trace);
    }

    #[test]
    fn flags_win_over_the_file() {
        let o = parse_with(
            "host: rs0/file:1\ndestination: rs1/d:1\nnumParallelCollections: 3\n",
            &["--host", "rs0/flag:2", "-j", "5"],
        )
        .unwrap();
        assert_eq!(o.source.address.display(), "rs0/flag:2");
        assert_eq!(o.num_parallel_collections, 5);
    }

    #[test]
    fn bad_files_name_the_problem() {
        for (text, expected) in [
            ("nosuchflag: 1\n", "unknown key 'nosuchflag'"),
            ("drop: maybe\n", "'drop' must be true or false"),
            ("host: [a, b]\n", "'host' must be a single value"),
            ("uri: mongodb://a\nhost: b\n", "both `uri` and `host`"),
            ("password: [unclosed\n", "not valid YAML"),
            ("- a\n- b\n", "expected a mapping"),
            ("help: true\n", "unknown key 'help'"),
        ] {
            let err = parse_with(text, &[]).unwrap_err();
            assert_eq!(err.exit, ExitCode::Usage);
            assert!(err.message.contains(expected), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn a_bad_value_from_the_file_says_so() {
        let err =
            parse_with("host: h\ndestination: d\nnumParallelCollections: 0\n", &[]).unwrap_err();
        assert!(
            err.message.contains("--numParallelCollections"),
            "{}",
            err.message
        );
        assert!(
            err.causes.iter().any(|c| c.contains("config file")),
            "{:?}",
            err.causes
        );
    }
}
