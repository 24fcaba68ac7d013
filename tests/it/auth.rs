//! Authentication mechanisms beyond SCRAM, live where the test server has them: MONGODB-X509
//! authenticates with the client certificate; PLAIN (LDAP) and MONGODB-AWS, which the server
//! does not speak, still fail the way an operator needs: exit 3, the failing side named, a hint
//! for that mechanism, and no secret anywhere in the output. How each mechanism's flags map to
//! the driver's credential is unit-tested in `src/connect.rs`.

use std::time::Duration;

use mongodb::bson::doc;

use crate::support::{
    client_for, mongomirror, skip_on_real_deployment, Output, Pair, ServerOptions, TlsMode, User,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// The subject of the harness's client certificate, as MongoDB names an X.509 user.
const CLIENT_SUBJECT: &str = "CN=mongomirror-it-client";

/// A source that requires TLS client certificates and authentication.
async fn start_pair() -> Pair {
    Pair::start_with(
        ServerOptions::default()
            .with_tls(TlsMode::RequireClientCert)
            .with_user(User::root("alice", "alice-Pw-1")),
        ServerOptions::default(),
    )
    .await
}

/// Runs `--preflightOnly` against the pair's TLS source with its CA and client certificate.
async fn preflight(pair: &Pair, flags: &[&str]) -> Output {
    let files = pair.source.tls_files().expect("TLS files");
    mongomirror()
        .args([
            "--host",
            &format!("secantus/localhost:{}", pair.source.port()),
            "--ssl",
            "--sslCAFile",
            files.ca_file.to_str().unwrap(),
            "--sslPEMKeyFile",
            files.client_pem_file.to_str().unwrap(),
        ])
        .args(flags)
        .args(["--destination", &pair.destination.uri(), "--preflightOnly"])
        .run(DEADLINE)
        .await
}

#[tokio::test]
async fn x509_authenticates_with_the_client_certificate() {
    if skip_on_real_deployment("needs a TLS server with --auth") {
        return;
    }
    let pair = start_pair().await;
    let x509 = ["--authenticationMechanism", "MONGODB-X509"];

    let out = preflight(&pair, &x509).await;
    out.assert_failed(
        3,
        "authentication to the source",
        "client certificate's subject",
    );

    client_for(&pair.source.admin_uri())
        .await
        .database("$external")
        .run_command(doc! {
            "createUser": CLIENT_SUBJECT,
            "roles": [{ "role": "root", "db": "admin" }],
            "mechanisms": ["MONGODB-X509"],
        })
        .await
        .expect("creating the X.509 user");
    let out = preflight(&pair, &x509).await;
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains("connected to the source: replica set"),
        "{out}"
    );
}

#[tokio::test]
async fn mechanisms_the_server_lacks_fail_with_a_hint_and_no_secret() {
    if skip_on_real_deployment("needs a TLS server with --auth") {
        return;
    }
    let pair = start_pair().await;
    let mut cases: Vec<(Vec<&str>, &str, &[&str])> = vec![(
        vec![
            "--authenticationMechanism",
            "PLAIN",
            "--username",
            "alice",
            "--password",
            "Ldap-S3cret",
            "--authenticationDatabase",
            "$external",
        ],
        "LDAP",
        &["Ldap-S3cret"],
    )];
    if cfg!(feature = "aws") {
        cases.push((
            vec![
                "--authenticationMechanism",
                "MONGODB-IAM",
                "--username",
                "AKIAEXAMPLEKEYID",
                "--password",
                "Aws-S3cret-Key",
                "--awsSessionToken",
                "Aws-S3ssion-Token",
            ],
            "--awsSessionToken",
            &["Aws-S3cret-Key", "Aws-S3ssion-Token"],
        ));
    }
    for (flags, hint, secrets) in cases {
        let out = preflight(&pair, &flags).await;
        out.assert_failed(3, "authentication to the source", hint);
        for secret in secrets {
            assert!(
                !out.stderr.contains(secret) && !out.stdout.contains(secret),
                "{secret} shown for {flags:?}\n{out}"
            );
        }
    }
}
