//! Connecting to real servers: the address forms, SCRAM, TLS, compression, and the failures an
//! operator meets first (wrong password, untrusted certificate, standalone source).

use std::time::Duration;

use crate::support::{
    mongomirror, skip_on_real_deployment, Output, Pair, ServerOptions, TestServer, TlsMode, User,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// mongomirror's `setName/host:port` form for a harness server, or the URI of a real deployment.
fn seed_list(server: &TestServer) -> String {
    if server.is_external() {
        server.uri()
    } else {
        format!("secantus/{}", server.host_port())
    }
}

/// Runs `--preflightOnly` between the pair with extra flags.
async fn preflight(pair: &Pair, extra: &[&str]) -> Output {
    preflight_from(&seed_list(&pair.source), &pair.destination.uri(), extra).await
}

/// Runs `--preflightOnly` from `host` to `destination` with extra flags.
async fn preflight_from<S: AsRef<std::ffi::OsStr>>(
    host: &str,
    destination: &str,
    extra: &[S],
) -> Output {
    mongomirror()
        .args([
            "--host",
            host,
            "--destination",
            destination,
            "--preflightOnly",
        ])
        .args(extra)
        .run(DEADLINE)
        .await
}

fn assert_connected(out: &Output) {
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains("connected to the source: replica set"),
        "{out}"
    );
    assert!(out.stderr.contains("connected to the destination"), "{out}");
}

#[tokio::test]
async fn plain_connection_in_every_address_form() {
    let pair = Pair::start().await;
    let out = preflight(&pair, &[]).await;
    assert_connected(&out);
    assert!(
        out.stderr
            .contains("--preflightOnly: stopping before anything is written"),
        "{out}"
    );
    if pair.source.is_external() {
        return;
    }
    for host in [pair.source.host_port(), pair.source.uri()] {
        assert_connected(&preflight_from::<&str>(&host, &pair.destination.host_port(), &[]).await);
    }
}

#[tokio::test]
async fn compressors_are_negotiated_or_turned_off() {
    let pair = Pair::start().await;
    for list in ["zstd,snappy", "zlib", "none"] {
        assert_connected(&preflight(&pair, &["--compressors", list]).await);
    }
}

#[tokio::test]
async fn deprecated_flags_warn_once_and_have_no_effect() {
    let pair = Pair::start().await;
    let out = preflight(
        &pair,
        &[
            "--readPreference",
            "secondary",
            "--writeConcern",
            "1",
            "--bypassDocumentValidation",
        ],
    )
    .await;
    assert_connected(&out);
    for flag in [
        "--readPreference",
        "--writeConcern",
        "--bypassDocumentValidation",
    ] {
        let warnings = out
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("warning: {flag} is deprecated and has no effect")))
            .count();
        assert_eq!(warnings, 1, "{flag}\n{out}");
    }
}

fn auth_options() -> ServerOptions {
    ServerOptions::default().with_user(User::root("alice", "alice-Pw-1"))
}

#[tokio::test]
async fn scram_with_good_and_wrong_passwords_names_the_failing_side() {
    if skip_on_real_deployment("needs servers started with --auth") {
        return;
    }
    let pair = Pair::start_with(auth_options(), auth_options()).await;
    let run = |src_pw: &'static str, dst_pw: &'static str| {
        let (host, dest) = (seed_list(&pair.source), pair.destination.uri());
        async move {
            mongomirror()
                .args([
                    "--host",
                    &host,
                    "--username",
                    "alice",
                    "--password",
                    src_pw,
                    "--authenticationDatabase",
                    "admin",
                ])
                .args([
                    "--destination",
                    &dest,
                    "--destinationUsername",
                    "alice",
                    "--destinationPassword",
                    dst_pw,
                ])
                .arg("--preflightOnly")
                .run(DEADLINE)
                .await
        }
    };
    assert_connected(&run("alice-Pw-1", "alice-Pw-1").await);

    let out = run("Wrong-Source-Pw", "alice-Pw-1").await;
    out.assert_failed(3, "authentication to the source", "--password");
    assert!(!out.stderr.contains("Wrong-Source-Pw"), "{out}");

    let out = run("alice-Pw-1", "Wrong-Dest-Pw").await;
    out.assert_failed(
        3,
        "authentication to the destination",
        "--destinationPassword",
    );
    assert!(
        !out.stderr.contains("Wrong-Dest-Pw") && !out.stderr.contains("alice-Pw-1"),
        "{out}"
    );
}

/// Flag beats environment beats config file: each layer is given a wrong password in turn.
#[tokio::test]
async fn password_precedence_is_flag_then_env_then_config() {
    if skip_on_real_deployment("needs servers started with --auth") {
        return;
    }
    let pair = Pair::start_with(auth_options(), ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mongomirror.yaml");
    let run = |config_pw: &str, env_pw: Option<&str>, flag_pw: Option<&str>| {
        std::fs::write(&config, format!("password: {config_pw}\n")).unwrap();
        let mut cmd = mongomirror()
            .args([
                "--host",
                &seed_list(&pair.source),
                "--username",
                "alice",
                "--destination",
                &pair.destination.uri(),
            ])
            .args(["--config", config.to_str().unwrap(), "--preflightOnly"])
            .env_remove("MONGOMIRROR_PASSWORD");
        if let Some(pw) = env_pw {
            cmd = cmd.env("MONGOMIRROR_PASSWORD", pw);
        }
        if let Some(pw) = flag_pw {
            cmd = cmd.args(["--password", pw]);
        }
        cmd.run(DEADLINE)
    };
    assert_connected(&run("alice-Pw-1", None, None).await);
    assert_connected(&run("wrong-in-file", Some("alice-Pw-1"), None).await);
    assert_connected(&run("wrong-in-file", Some("wrong-in-env"), Some("alice-Pw-1")).await);
    run("alice-Pw-1", Some("wrong-in-env"), None)
        .await
        .assert_failed(3, "authentication to the source", "--password");
}

#[tokio::test]
async fn tls_with_a_ca_file_with_invalid_certificates_allowed_and_without_a_ca() {
    if skip_on_real_deployment("needs a TLS server") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_tls(TlsMode::Tls),
        ServerOptions::default(),
    )
    .await;
    let ca = pair
        .source
        .tls_files()
        .expect("TLS files")
        .ca_file
        .to_str()
        .unwrap()
        .to_string();
    let host = format!("secantus/localhost:{}", pair.source.port());
    let run = |extra: Vec<String>| {
        let host = host.clone();
        let dest = pair.destination.uri();
        async move { preflight_from(&host, &dest, &extra).await }
    };
    assert_connected(&run(vec!["--ssl".into(), "--sslCAFile".into(), ca.clone()]).await);
    assert_connected(&run(vec!["--ssl".into(), "--sslAllowInvalidCertificates".into()]).await);
    assert_connected(&run(vec!["--ssl".into(), "--tlsInsecure".into()]).await);
    run(vec!["--ssl".into()]).await.assert_failed(
        3,
        "Could not connect to the source",
        "--sslCAFile",
    );
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    if skip_on_real_deployment("needs a TLS server") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_tls(TlsMode::RequireClientCert),
        ServerOptions::default(),
    )
    .await;
    let files = pair.source.tls_files().expect("TLS files");
    let host = format!("secantus/localhost:{}", pair.source.port());
    let out = preflight_from(
        &host,
        &pair.destination.uri(),
        &[
            "--ssl",
            "--sslCAFile",
            files.ca_file.to_str().unwrap(),
            "--sslPEMKeyFile",
            files.client_pem_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_connected(&out);
}

#[tokio::test]
async fn a_standalone_source_is_refused_with_a_hint_to_convert_it() {
    if skip_on_real_deployment("needs a standalone server") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().standalone(),
        ServerOptions::default(),
    )
    .await;
    // Both a direct connection and a replica-set seed list reach the same diagnosis.
    for host in [
        pair.source.host_port(),
        format!("rs0/{}", pair.source.host_port()),
    ] {
        let out = preflight_from::<&str>(&host, &pair.destination.uri(), &[]).await;
        out.assert_failed(4, "Source appears to be a standalone", "rs.initiate()");
    }
}

#[tokio::test]
async fn a_wrong_replica_set_name_is_diagnosed() {
    if skip_on_real_deployment("needs to know the test server's set name") {
        return;
    }
    let pair = Pair::start().await;
    let host = format!("wrongset/{}", pair.source.host_port());
    let out = preflight_from::<&str>(&host, &pair.destination.uri(), &[]).await;
    out.assert_failed(
        3,
        "belongs to replica set 'secantus', not 'wrongset'",
        "secantus/",
    );
}
