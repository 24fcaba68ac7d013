//! Source and destination clients, built in code from an [`Endpoint`], never by pasting strings.
//!
//! Connecting also classifies failures for the operator: an unreachable host, a TLS certificate
//! that is not trusted, a wrong password, a replica set name that does not match, or a source
//! that is not a replica set at all each get their own message and hint.

use std::future::IntoFuture;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{
    ClientOptions, Compressor as DriverCompressor, Credential, ReadConcern, ServerAddress, Tls,
    TlsOptions, WriteConcern,
};
use mongodb::Client;
use tracing::warn;

use crate::cli::{Address, Auth, Compressor, Endpoint, Side};
use crate::error::{server_code, ExitCode, Failure, Result};

/// The server's answer to a majority read where majority reads are disabled (4.4 PSA sets).
const READ_CONCERN_MAJORITY_NOT_ENABLED: i32 = 148;

/// How long to look for a usable server before giving up, unless the URI says otherwise.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one TCP/TLS connection attempt may take, unless the URI says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Server selection timeout of the diagnostic probe run after a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A connected deployment and what it said about itself.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The driver client.
    pub client: Client,
    /// The `hello` reply.
    pub hello: Document,
    /// The server version from `buildInfo`, e.g. `8.0.4`.
    pub version: String,
}

impl Connected {
    /// The replica set name, if the server is a replica-set member.
    pub fn set_name(&self) -> Option<&str> {
        self.hello.get_str("setName").ok()
    }
}

/// Builds the driver options for one side.
pub async fn client_options(endpoint: &Endpoint) -> Result<ClientOptions> {
    let side = endpoint.side;
    let mut options = match &endpoint.address {
        Address::Uri(uri) => ClientOptions::parse(uri.as_str()).await.map_err(|e| {
            Failure::connection(format!(
                "cannot resolve the {side} URI {}",
                endpoint.address.display()
            ))
            .cause(e)
            .hint("check the host name of the mongodb+srv:// URI and this machine's DNS")
        })?,
        Address::Seeds { set_name, hosts } => {
            let mut o = ClientOptions::default();
            o.hosts = hosts
                .iter()
                .map(|h| ServerAddress::Tcp {
                    host: h.host.clone(),
                    port: Some(h.port),
                })
                .collect();
            o.repl_set_name = set_name.clone();
            // mongomirror: a single host with no replica set name is a direct connection.
            o.direct_connection = Some(set_name.is_none() && hosts.len() == 1);
            o
        }
    };
    if options.app_name.is_none() {
        options.app_name = Some(format!("mongomirror-rs {side}"));
    }
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    options.compressors = (!endpoint.compressors.0.is_empty()).then(|| {
        endpoint
            .compressors
            .0
            .iter()
            .map(|c| match c {
                Compressor::Snappy => DriverCompressor::Snappy,
                Compressor::Zstd => DriverCompressor::Zstd { level: None },
                Compressor::Zlib => DriverCompressor::Zlib { level: None },
            })
            .collect()
    });
    if side == Side::Destination {
        options.write_concern = Some(WriteConcern::majority());
    }
    if let Some(auth) = &endpoint.auth {
        options.credential = Some(credential(auth, options.credential.take()));
    }
    if let Some(tls) = &endpoint.tls {
        let mut t = match options.tls.take() {
            Some(Tls::Enabled(t)) => t,
            _ => TlsOptions::default(),
        };
        if tls.ca_file.is_some() {
            t.ca_file_path = tls.ca_file.clone();
        }
        if tls.cert_key_file.is_some() {
            t.cert_key_file_path = tls.cert_key_file.clone();
        }
        if let Some(pw) = &tls.cert_key_password {
            t.tls_certificate_key_file_password = Some(pw.as_bytes().to_vec());
        }
        if tls.allow_invalid {
            t.allow_invalid_certificates = Some(true);
        }
        options.tls = Some(Tls::Enabled(t));
    }
    Ok(options)
}

/// One side's credential flags, laid over what a URI may already carry.
///
/// `--gssapiServiceName` and `--gssapiHostName` become the driver's `SERVICE_NAME` and
/// `SERVICE_HOST` mechanism properties; MONGODB-AWS keys become a credential provider.
fn credential(auth: &Auth, from_uri: Option<Credential>) -> Credential {
    let mut credential = from_uri.unwrap_or_default();
    if auth.username.is_some() {
        credential.username = auth.username.clone();
    }
    if auth.password.is_some() {
        credential.password = auth.password.clone();
    }
    if auth.source.is_some() {
        credential.source = auth.source.clone();
    }
    if auth.mechanism.is_some() {
        credential.mechanism = auth.mechanism.clone();
    }
    let mut properties = credential.mechanism_properties.take().unwrap_or_default();
    for (key, value) in [
        ("SERVICE_NAME", &auth.gssapi_service_name),
        ("SERVICE_HOST", &auth.gssapi_host_name),
    ] {
        if let Some(value) = value {
            properties.insert(key, value.clone());
        }
    }
    credential.mechanism_properties = (!properties.is_empty()).then_some(properties);
    #[cfg(feature = "aws")]
    aws_keys_as_provider(&mut credential, auth);
    credential
}

/// Hands MONGODB-AWS keys to the driver as a credential provider, its non-deprecated way (keys
/// as user name and password are deprecated in driver 3.x and go away in 4.0). With no keys,
/// the driver asks the AWS environment itself.
#[cfg(feature = "aws")]
fn aws_keys_as_provider(credential: &mut Credential, auth: &Auth) {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    use mongodb::options::AuthMechanism;

    if credential.mechanism != Some(AuthMechanism::MongoDbAws) {
        return;
    }
    let (Some(key_id), Some(secret)) = (credential.username.take(), credential.password.take())
    else {
        return;
    };
    let from_uri = credential
        .mechanism_properties
        .as_mut()
        .and_then(|p| p.remove("AWS_SESSION_TOKEN"))
        .and_then(|t| t.as_str().map(str::to_string));
    if credential
        .mechanism_properties
        .as_ref()
        .is_some_and(Document::is_empty)
    {
        credential.mechanism_properties = None;
    }
    let token = auth.aws_session_token.clone().or(from_uri);
    credential.aws_credential_provider = Some(SharedCredentialsProvider::new(Credentials::new(
        key_id,
        secret,
        token,
        None,
        "mongomirror flags",
    )));
}

/// Connects to one side and asks who it is.
pub async fn connect(endpoint: &Endpoint) -> Result<Connected> {
    let options = client_options(endpoint).await?;
    connect_with(endpoint, options).await
}

async fn connect_with(endpoint: &Endpoint, options: ClientOptions) -> Result<Connected> {
    let client = Client::with_options(options.clone()).map_err(|e| {
        Failure::usage(format!(
            "the driver cannot use the {} connection options",
            endpoint.side
        ))
        .cause(e)
        .hint("fix the option named above")
    })?;
    let admin = client.database("admin");
    let hello = match admin.run_command(doc! { "hello": 1 }).await {
        Ok(h) => h,
        Err(e) => return Err(diagnose(endpoint, &options, e).await),
    };
    let version = admin
        .run_command(doc! { "buildInfo": 1 })
        .await
        .map_err(|e| classify(endpoint, e))?
        .get_str("version")
        .unwrap_or("unknown")
        .to_string();
    // Authentication happens lazily on the first command that needs it.
    admin
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .map_err(|e| classify(endpoint, e))?;
    Ok(Connected {
        client,
        hello,
        version,
    })
}

/// Connects to the destination with a connection pool of at least `pool` connections (unless
/// the connection string sets `maxPoolSize`): the copy keeps up to `-j` ×
/// [`crate::copy::INSERTS_IN_FLIGHT`] inserts in flight, each needing a connection of its own.
pub async fn connect_destination(endpoint: &Endpoint, pool: u32) -> Result<Connected> {
    let mut options = client_options(endpoint).await?;
    options
        .max_pool_size
        .get_or_insert(pool.max(DRIVER_POOL_SIZE));
    connect_with(endpoint, options).await
}

/// The driver's default `maxPoolSize`.
const DRIVER_POOL_SIZE: u32 = 10;

/// Connects to the source and checks that it is a replica-set member.
///
/// Every read from the source (the copy, the oplog, the recheck of conflicting documents) uses
/// majority read concern, so that nothing a failover can roll back on the source reaches the
/// destination. A source whose majority reads are disabled (`enableMajorityReadConcern: false`,
/// possible on 4.4 PSA sets) is read with local read concern, with a warning.
pub async fn connect_source(endpoint: &Endpoint) -> Result<Connected> {
    let mut options = client_options(endpoint).await?;
    options.read_concern = Some(ReadConcern::majority());
    let connected = connect_with(endpoint, options.clone()).await?;
    check_replica_set(endpoint, &connected.hello)?;
    let oplog = connected
        .client
        .database("local")
        .collection::<Document>("oplog.rs");
    let probe = crate::retry::transient("reading the source oplog", || {
        oplog
            .find_one(doc! {})
            .projection(doc! { "ts": 1 })
            .into_future()
    })
    .await;
    match probe {
        Err(e) if server_code(&e) == Some(READ_CONCERN_MAJORITY_NOT_ENABLED) => {
            warn!("the source does not support majority reads (enableMajorityReadConcern is false): reading it with local read concern, so writes that a failover rolls back on the source can reach the destination");
            options.read_concern = None;
            connect_with(endpoint, options).await
        }
        // Other failures (privileges, say) are diagnosed where the oplog is first needed.
        _ => Ok(connected),
    }
}

fn check_replica_set(endpoint: &Endpoint, hello: &Document) -> Result<()> {
    if hello.get_str("setName").is_ok() {
        return Ok(());
    }
    let shown = endpoint.address.display();
    if hello.get_str("msg") == Ok("isdbgrid") {
        return Err(Failure::new(
            ExitCode::Preflight,
            format!("{shown} is a mongos: mongomirror migrates replica sets, not sharded clusters"),
        )
        .hint("run one mongomirror per shard, pointing --host at each shard's replica set"));
    }
    Err(standalone_failure(&shown))
}

fn standalone_failure(shown: &str) -> Failure {
    Failure::new(
        ExitCode::Preflight,
        format!("Source appears to be a standalone: {shown} is not a replica-set member, and mongomirror needs the source oplog"),
    )
    .hint(
        "convert it to a one-member replica set: restart mongod with --replSet rs0, run rs.initiate(), \
         then pass --host rs0/<host:port>",
    )
}

/// What to check after the server refused the credentials, for the mechanism in use.
fn credentials_hint(endpoint: &Endpoint) -> String {
    let side = endpoint.side;
    let (user, password, auth_db) = match side {
        Side::Source => ("--username", "--password", "--authenticationDatabase"),
        Side::Destination => (
            "--destinationUsername",
            "--destinationPassword",
            "--destinationAuthenticationDatabase",
        ),
    };
    let mechanism = endpoint
        .auth
        .as_ref()
        .and_then(|a| a.mechanism.as_ref())
        .map(|m| m.as_str());
    match mechanism {
        Some("MONGODB-X509") => format!(
            "check that the {side} knows the client certificate's subject as a user in $external, and that its CA trusts the certificate"
        ),
        Some("MONGODB-AWS") => format!(
            "check the AWS keys ({user}, {password}, --awsSessionToken, or the AWS environment) and that their IAM user or role is a {side} user in $external"
        ),
        Some("GSSAPI") => format!(
            "check the Kerberos ticket (klist), the principal in {user}, and --gssapiServiceName/--gssapiHostName"
        ),
        Some("PLAIN") => format!(
            "check {user} and {password} against the LDAP directory, and that the {side} has LDAP authentication enabled"
        ),
        _ => format!(
            "check {user}, {password} and {auth_db} (SCRAM users usually live in admin); the user needs the documented roles"
        ),
    }
}

/// Names which side failed and why, with the flags that fix it.
fn classify(endpoint: &Endpoint, error: mongodb::error::Error) -> Failure {
    let side = endpoint.side;
    let shown = endpoint.address.display();
    let cause = error.to_string();
    match *error.kind {
        ErrorKind::Authentication { .. } => {
            Failure::connection(format!("authentication to the {side} {shown} failed"))
                .cause(cause)
                .hint(credentials_hint(endpoint))
        }
        ErrorKind::InvalidArgument { .. } => Failure::usage(format!(
            "the driver refused the {side} connection options for {shown}"
        ))
        .cause(cause)
        .hint(format!(
            "fix the {side} options named above (a mongodb:// URI's query options included)"
        )),
        ErrorKind::Command(ref c) if c.code == 18 || c.code == 13 => {
            Failure::connection(format!("the {side} {shown} refused the credentials"))
                .cause(cause)
                .hint(credentials_hint(endpoint))
        }
        _ => {
            let lower = cause.to_ascii_lowercase();
            let hint = if ["certificate", "unknownissuer", "tls", "handshake"]
                .iter()
                .any(|w| lower.contains(w))
            {
                match side {
                    Side::Source => "the TLS handshake failed: pass --sslCAFile with the CA that signed the server certificate, or --tlsInsecure to skip validation".to_string(),
                    Side::Destination => "the TLS handshake failed: put tls=true&tlsCAFile=<ca.pem> in a mongodb:// --destination URI".to_string(),
                }
            } else {
                format!(
                    "check that {} names running servers and that this machine can reach them",
                    side.address_flag()
                )
            };
            Failure::connection(format!(
                "Could not connect to the {side} {shown}: no reachable servers"
            ))
            .cause(cause)
            .hint(hint)
        }
    }
}

/// After a failed `hello`, probes the first seed directly to tell a standalone or a replica set
/// name mismatch apart from an unreachable server.
async fn diagnose(
    endpoint: &Endpoint,
    options: &ClientOptions,
    error: mongodb::error::Error,
) -> Failure {
    let failure = classify(endpoint, error);
    let Some(expected) = options.repl_set_name.clone() else {
        return failure;
    };
    let mut probe = options.clone();
    probe.hosts.truncate(1);
    probe.repl_set_name = None;
    probe.direct_connection = Some(true);
    probe.server_selection_timeout = Some(PROBE_TIMEOUT);
    let Ok(client) = Client::with_options(probe) else {
        return failure;
    };
    let Ok(hello) = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
    else {
        return failure;
    };
    let host = options
        .hosts
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    match hello.get_str("setName") {
        Ok(actual) if actual != expected => Failure::connection(format!(
            "{host} belongs to replica set '{actual}', not '{expected}'"
        ))
        .hint(format!(
            "fix the set name in {}: {actual}/{host}",
            endpoint.side.address_flag()
        )),
        Ok(_) => failure,
        Err(_) if endpoint.side == Side::Source => standalone_failure(&endpoint.address.display()),
        Err(_) => failure,
    }
}

#[cfg(test)]
mod tests {
    //! Each mechanism's flags, down to the driver `Credential` they produce.

    use mongodb::options::AuthMechanism;

    use super::*;
    use crate::cli::{parse, Invocation, Options};

    fn options(extra: &[&str]) -> Options {
        let base = [
            "mongomirror",
            "--host",
            "rs0/h1:27017",
            "--destination",
            "d1",
        ];
        match parse(base.iter().chain(extra)) {
            Ok(Invocation::Run(o)) => *o,
            other => panic!("{extra:?}: {other:?}"),
        }
    }

    async fn source_credential(extra: &[&str]) -> (Credential, ClientOptions) {
        let driver = client_options(&options(extra).source).await.unwrap();
        (driver.credential.clone().expect("a credential"), driver)
    }

    #[tokio::test]
    async fn scram_and_plain_map_user_password_database_and_mechanism() {
        let (c, driver) = source_credential(&[
            "--username",
            "alice",
            "--password",
            "scram-Pw",
            "--authenticationDatabase",
            "users",
            "--authenticationMechanism",
            "SCRAM-SHA-256",
        ])
        .await;
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("scram-Pw"));
        assert_eq!(c.source.as_deref(), Some("users"));
        assert_eq!(c.mechanism, Some(AuthMechanism::ScramSha256));
        assert!(!format!("{driver:?}").contains("scram-Pw"));

        let o = options(&[
            "--destinationUsername",
            "ldap-user",
            "--destinationPassword",
            "ldap-Pw",
            "--destinationAuthenticationMechanism",
            "PLAIN",
            "--destinationAuthenticationDatabase",
            "$external",
        ]);
        let c = client_options(&o.destination)
            .await
            .unwrap()
            .credential
            .unwrap();
        assert_eq!(c.mechanism, Some(AuthMechanism::Plain));
        assert_eq!(c.source.as_deref(), Some("$external"));
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("ldap-user"), Some("ldap-Pw"))
        );
        AuthMechanism::Plain.validate_credential(&c).unwrap();
    }

    #[tokio::test]
    async fn x509_uses_the_client_certificate_and_no_password() {
        let x509 = [
            "--authenticationMechanism",
            "MONGODB-X509",
            "--sslPEMKeyFile",
            "Cargo.toml",
        ];
        let (c, driver) = source_credential(&x509).await;
        assert_eq!(c.mechanism, Some(AuthMechanism::MongoDbX509));
        assert_eq!((c.username, c.password.as_deref()), (None, None));
        match driver.tls {
            Some(Tls::Enabled(t)) => {
                assert_eq!(t.cert_key_file_path, Some("Cargo.toml".into()))
            }
            other => panic!("{other:?}"),
        }
        let with_subject = [&x509[..], &["--username", "CN=mirror,O=example"]].concat();
        let with_subject = source_credential(&with_subject).await.0;
        AuthMechanism::MongoDbX509
            .validate_credential(&with_subject)
            .unwrap();
        assert_eq!(
            with_subject.username.as_deref(),
            Some("CN=mirror,O=example")
        );
    }

    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn aws_keys_from_flags_become_a_credential_provider() {
        use aws_credential_types::provider::ProvideCredentials;

        let (c, driver) = source_credential(crate::cli::tests::AWS_FLAGS).await;
        assert_eq!(c.mechanism, Some(AuthMechanism::MongoDbAws));
        // The keys live only in the provider, not in the deprecated user name/password slots.
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (None, None));
        assert_eq!(c.mechanism_properties, None);
        let keys = c
            .aws_credential_provider
            .as_ref()
            .expect("a provider")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(keys.access_key_id(), "AKIAEXAMPLEKEYID");
        assert_eq!(keys.secret_access_key(), "aws-Secret-Key");
        assert_eq!(keys.session_token(), Some("aws-Session-Token"));
        let shown = format!("{driver:?} {c:?}");
        assert!(
            !shown.contains("aws-Secret-Key") && !shown.contains("aws-Session-Token"),
            "{shown}"
        );
        AuthMechanism::MongoDbAws.validate_credential(&c).unwrap();
    }

    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn aws_without_keys_leaves_them_to_the_aws_environment() {
        let (c, _) = source_credential(&["--authenticationMechanism", "MONGODB-AWS"]).await;
        assert_eq!(c.mechanism, Some(AuthMechanism::MongoDbAws));
        assert!(c.username.is_none() && c.aws_credential_provider.is_none());
        assert_eq!(
            c.source, None,
            "the driver defaults MONGODB-AWS to $external"
        );
    }

    #[cfg(feature = "gssapi")]
    #[tokio::test]
    async fn gssapi_flags_become_service_properties() {
        let (c, _) = source_credential(crate::cli::tests::GSSAPI_FLAGS).await;
        assert_eq!(c.mechanism, Some(AuthMechanism::Gssapi));
        assert_eq!(c.username.as_deref(), Some("mirror@EXAMPLE.COM"));
        assert_eq!(
            c.mechanism_properties,
            Some(doc! { "SERVICE_NAME": "mongodb-prod", "SERVICE_HOST": "db1.internal" })
        );
        AuthMechanism::Gssapi.validate_credential(&c).unwrap();
    }

    #[tokio::test]
    async fn flags_override_a_uri_credential_and_keep_its_properties() {
        let o = options(&[]);
        let mut endpoint = o.source.clone();
        endpoint.address = Address::parse(
            "--host",
            "mongodb://uri-user:uri-Pw@h1/?authSource=admin&authMechanism=SCRAM-SHA-1",
        )
        .unwrap();
        endpoint.auth = Some(Auth {
            password: Some("flag-Pw".into()),
            ..Auth::default()
        });
        let c = client_options(&endpoint).await.unwrap().credential.unwrap();
        assert_eq!(c.username.as_deref(), Some("uri-user"));
        assert_eq!(c.password.as_deref(), Some("flag-Pw"));
        assert_eq!(c.mechanism, Some(AuthMechanism::ScramSha1));
    }
}
