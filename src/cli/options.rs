//! Validated options: everything the run needs, resolved from [`Args`] before any network call.

use std::fmt;
use std::path::{Path, PathBuf};

use mongodb::options::{AuthMechanism, ConnectionString, Tls, TlsOptions};

use super::args::Args;
use super::namespace::NamespaceFilter;
use crate::error::{Failure, Result};
use crate::redact;

/// mongomirror's default for `-j`.
pub const DEFAULT_PARALLEL_COLLECTIONS: u32 = 4;
/// mongomirror's default for `--oplogBatchSize`.
pub const DEFAULT_OPLOG_BATCH_SIZE: u32 = 10_000;
/// mongomirror's default bookmark file name.
pub const DEFAULT_BOOKMARK_FILE: &str = "mongomirror.bookmark";

/// Which end of the migration a setting belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The replica set being migrated.
    Source,
    /// The replica set receiving the data.
    Destination,
}

impl Side {
    /// The flag that names this side's address.
    pub fn address_flag(self) -> &'static str {
        match self {
            Side::Source => "--host",
            Side::Destination => "--destination",
        }
    }

    /// The flag prefix of this side's credential flags (`--username` / `--destinationUsername`).
    fn flag(self, name: &str) -> String {
        match self {
            Side::Source => format!("--{name}"),
            Side::Destination => {
                let mut chars = name.chars();
                let first = chars
                    .next()
                    .map(|c| c.to_ascii_uppercase())
                    .unwrap_or_default();
                format!("--destination{first}{}", chars.as_str())
            }
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// One `host:port` seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where a deployment is, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    /// mongomirror's `setName/h1:p1,h2:p2` form, or bare hosts. One host with no set name is a
    /// direct connection.
    Seeds {
        /// The replica set name, if given.
        set_name: Option<String>,
        /// The seed list.
        hosts: Vec<HostPort>,
    },
    /// A full `mongodb://` or `mongodb+srv://` connection string (validated, may hold secrets).
    Uri(String),
}

impl Address {
    /// Parses an address flag value.
    pub fn parse(flag: &str, value: &str) -> Result<Self> {
        let bad = |why: String| {
            Failure::usage(format!(
                "invalid {flag} '{}': {why}",
                redact::redact_uri(value)
            ))
            .hint(format!(
                "use {flag} setName/host1:27017,host2:27017, {flag} host:port, or a mongodb:// URI"
            ))
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if value.starts_with("mongodb://") || value.starts_with("mongodb+srv://") {
            return match ConnectionString::parse(value) {
                Ok(_) => Ok(Address::Uri(value.to_string())),
                Err(e) => Err(bad(redact::redact_uri(&e.to_string()))),
            };
        }
        if value.contains("://") {
            return Err(bad(
                "only mongodb:// and mongodb+srv:// URIs are understood".into(),
            ));
        }
        let (set_name, list) = match value.split_once('/') {
            Some((set, list)) => {
                if set.is_empty() {
                    return Err(bad("the replica set name before '/' is empty".into()));
                }
                if list.trim().is_empty() {
                    return Err(bad(format!(
                        "replica set '{set}' has no hosts after the '/'"
                    )));
                }
                (Some(set.to_string()), list)
            }
            None => (None, value),
        };
        let hosts = list
            .split(',')
            .map(|h| parse_host_port(h.trim()).map_err(&bad))
            .collect::<Result<Vec<_>>>()?;
        Ok(Address::Seeds { set_name, hosts })
    }

    /// A printable form with credentials removed.
    pub fn display(&self) -> String {
        match self {
            Address::Uri(uri) => redact::redact_uri(uri),
            Address::Seeds { set_name, hosts } => {
                let list: Vec<String> = hosts.iter().map(ToString::to_string).collect();
                match set_name {
                    Some(set) => format!("{set}/{}", list.join(",")),
                    None => list.join(","),
                }
            }
        }
    }

    /// Whether every host is an Atlas host, which always requires TLS.
    fn is_atlas(&self) -> bool {
        let atlas = |h: &str| h.to_ascii_lowercase().ends_with(".mongodb.net");
        match self {
            Address::Seeds { hosts, .. } => hosts.iter().all(|h| atlas(&h.host)),
            Address::Uri(_) => false,
        }
    }

    /// The parsed connection string of the URI form.
    fn connection_string(&self) -> Option<ConnectionString> {
        match self {
            Address::Uri(uri) => ConnectionString::parse(uri).ok(),
            Address::Seeds { .. } => None,
        }
    }

    /// Whether the URI form already carries a user name.
    fn uri_has_user(&self) -> bool {
        self.connection_string()
            .and_then(|c| c.credential)
            .and_then(|c| c.username)
            .is_some()
    }

    /// Whether the URI form names a client certificate (`tlsCertificateKeyFile`).
    fn uri_has_client_certificate(&self) -> bool {
        matches!(
            self.connection_string().and_then(|c| c.tls),
            Some(Tls::Enabled(TlsOptions {
                cert_key_file_path: Some(_),
                ..
            }))
        )
    }
}

fn parse_host_port(s: &str) -> std::result::Result<HostPort, String> {
    const DEFAULT_PORT: u16 = 27017;
    if s.is_empty() {
        return Err("a host in the list is empty".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{s}' has no closing ']'"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected '{after}' after '[{host}]'")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{s}' has no host name before the port"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => n as u16,
            _ => return Err(format!("'{p}' in '{s}' is not a port number (1-65535)")),
        },
    };
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// One wire compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// snappy
    Snappy,
    /// zstd
    Zstd,
    /// zlib
    Zlib,
}

/// The `--compressors` list; empty means `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressors(pub Vec<Compressor>);

impl Default for Compressors {
    fn default() -> Self {
        Compressors(vec![Compressor::Snappy, Compressor::Zstd, Compressor::Zlib])
    }
}

/// Value parser for `--compressors`.
pub(crate) fn parse_compressors(s: &str) -> std::result::Result<Compressors, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Compressors(Vec::new()));
    }
    let mut list = Vec::new();
    for name in s.split(',').map(str::trim) {
        let c = match name.to_ascii_lowercase().as_str() {
            "snappy" => Compressor::Snappy,
            "zstd" => Compressor::Zstd,
            "zlib" => Compressor::Zlib,
            "none" => return Err("'none' cannot be combined with other compressors".into()),
            _ => {
                return Err(format!(
                    "unknown compressor '{name}': choose from snappy, zstd, zlib, or none"
                ))
            }
        };
        if list.contains(&c) {
            return Err(format!("compressor '{name}' is listed twice"));
        }
        list.push(c);
    }
    Ok(Compressors(list))
}

/// Credentials for one side.
#[derive(Clone, Default, PartialEq)]
pub struct Auth {
    /// User name (the AWS access key ID for MONGODB-AWS, the principal for GSSAPI).
    pub username: Option<String>,
    /// Password, or the AWS secret access key (never printed: see the `Debug` impl).
    pub password: Option<String>,
    /// Authentication database.
    pub source: Option<String>,
    /// Mechanism; `None` lets the server negotiate SCRAM.
    pub mechanism: Option<AuthMechanism>,
    /// `--awsSessionToken`, for temporary AWS credentials (secret, never printed).
    pub aws_session_token: Option<String>,
    /// `--gssapiServiceName`: the Kerberos service name, when it is not `mongodb`.
    pub gssapi_service_name: Option<String>,
    /// `--gssapiHostName`: the host name in the service principal, when DNS says otherwise.
    pub gssapi_host_name: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| redact::MASK))
            .field("source", &self.source)
            .field("mechanism", &self.mechanism)
            .field(
                "aws_session_token",
                &self.aws_session_token.as_ref().map(|_| redact::MASK),
            )
            .field("gssapi_service_name", &self.gssapi_service_name)
            .field("gssapi_host_name", &self.gssapi_host_name)
            .finish()
    }
}

/// The authentication mechanisms this build can use, in the order help and errors list them.
///
/// MONGODB-AWS and GSSAPI depend on cargo features (`aws`, on by default, and `gssapi`), so the
/// list says what this very binary accepts; `--version` prints it.
pub fn built_mechanisms() -> Vec<&'static str> {
    let mut out = vec!["SCRAM-SHA-256", "SCRAM-SHA-1", "MONGODB-X509", "PLAIN"];
    if cfg!(feature = "aws") {
        out.push("MONGODB-AWS");
    }
    if cfg!(feature = "gssapi") {
        out.push("GSSAPI");
    }
    out
}

/// TLS settings for one side.
#[derive(Clone, Default, PartialEq)]
pub struct TlsSettings {
    /// CA chain that signed the server certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key in one PEM file.
    pub cert_key_file: Option<PathBuf>,
    /// Password of an encrypted key in `cert_key_file`.
    pub cert_key_password: Option<String>,
    /// Skip certificate chain and host name validation.
    pub allow_invalid: bool,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_file", &self.ca_file)
            .field("cert_key_file", &self.cert_key_file)
            .field(
                "cert_key_password",
                &self.cert_key_password.as_ref().map(|_| redact::MASK),
            )
            .field("allow_invalid", &self.allow_invalid)
            .finish()
    }
}

/// Everything needed to connect to one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Which side this is.
    pub side: Side,
    /// Where it is.
    pub address: Address,
    /// Credentials from flags, env or config (a URI may carry its own).
    pub auth: Option<Auth>,
    /// TLS from flags; `None` leaves TLS as the URI says (off by default).
    pub tls: Option<TlsSettings>,
    /// Wire compressors.
    pub compressors: Compressors,
}

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `--quiet`: warnings and errors only.
    Quiet,
    /// The default: progress and milestones.
    Normal,
    /// `-v`: debug detail.
    Verbose,
    /// `-vv` and more: everything.
    Trace,
}

/// How log lines are written (`--logFormat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// mongo-tools text lines, as mongomirror prints them: what scripts grep.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The validated options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The source replica set.
    pub source: Endpoint,
    /// The destination replica set.
    pub destination: Endpoint,
    /// Which namespaces take part.
    pub filter: NamespaceFilter,
    /// `--drop`.
    pub drop: bool,
    /// `--noIndexRestore`.
    pub no_index_restore: bool,
    /// `--removeAutoIndexId`.
    pub remove_auto_index_id: bool,
    /// `--ttlWithoutExpiry`.
    pub ttl_without_expiry: bool,
    /// `-j`.
    pub num_parallel_collections: u32,
    /// `--collStatsThreshold`.
    pub coll_stats_threshold: i64,
    /// `--bookmarkFile`.
    pub bookmark_file: PathBuf,
    /// `--forceDump`.
    pub force_dump: bool,
    /// `--oplogPath`.
    pub oplog_path: Option<PathBuf>,
    /// `--oplogBatchSize`.
    pub oplog_batch_size: u32,
    /// `--maxOutageSeconds`: how long failing servers are waited out.
    pub max_outage: std::time::Duration,
    /// `--httpStatusHost` and `--httpStatusPort`, when the status server is on.
    pub http_status: Option<(String, u16)>,
    /// `--preflightOnly`.
    pub preflight_only: bool,
    /// `--verify`: compare the deployments and exit.
    pub verify: bool,
    /// `--verifyReport`: where a verification report is also written, as JSON.
    pub verify_report: Option<PathBuf>,
    /// `--verifyMaxDifferences`: differing documents listed per namespace.
    pub verify_max_differences: usize,
    /// `-v` / `--quiet`.
    pub verbosity: Verbosity,
    /// `--logFormat`.
    pub log_format: LogFormat,
    /// Warnings about accepted but ineffective flags, logged once logging is up.
    pub warnings: Vec<String>,
}

impl Options {
    /// Resolves raw arguments into options, rejecting anything that cannot work.
    pub fn from_args(args: Args) -> Result<Self> {
        for secret in [
            &args.password,
            &args.destination_password,
            &args.ssl_pem_key_password,
            &args.aws_session_token,
        ]
        .into_iter()
        .flatten()
        {
            redact::register_secret(secret);
        }
        refuse_unsupported(&args)?;
        let mut warnings = deprecation_warnings(&args);

        let compressors = args.compressors.clone().unwrap_or_default();
        let source = Endpoint {
            side: Side::Source,
            address: required_address(Side::Source, args.host.as_deref())?,
            auth: None,
            tls: source_tls(&args, &mut warnings)?,
            compressors: compressors.clone(),
        };
        let source = Endpoint {
            auth: auth_for(
                &source,
                CredentialFlags {
                    username: args.username.clone(),
                    password: args.password.clone(),
                    source: args.authentication_database.clone(),
                    mechanism: args.authentication_mechanism.clone(),
                    aws_session_token: args.aws_session_token.clone(),
                    gssapi_service_name: args.gssapi_service_name.clone(),
                    gssapi_host_name: args.gssapi_host_name.clone(),
                },
            )?,
            ..source
        };
        let destination_address = required_address(Side::Destination, args.destination.as_deref())?;
        let destination = Endpoint {
            side: Side::Destination,
            tls: destination_address.is_atlas().then(TlsSettings::default),
            address: destination_address,
            auth: None,
            compressors,
        };
        let destination = Endpoint {
            auth: auth_for(
                &destination,
                CredentialFlags {
                    username: args.destination_username.clone(),
                    password: args.destination_password.clone(),
                    source: args.destination_authentication_database.clone(),
                    mechanism: args.destination_authentication_mechanism.clone(),
                    ..CredentialFlags::default()
                },
            )?,
            ..destination
        };

        let verbosity = match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            (false, _) => Verbosity::Trace,
        };
        Ok(Options {
            source,
            destination,
            filter: NamespaceFilter {
                include_namespaces: args.include_namespace,
                include_dbs: args.include_db,
                exclude_namespaces: args.exclude_namespace,
                exclude_dbs: args.exclude_db,
            },
            drop: args.drop,
            no_index_restore: args.no_index_restore,
            remove_auto_index_id: args.remove_auto_index_id,
            ttl_without_expiry: args.ttl_without_expiry,
            num_parallel_collections: args
                .num_parallel_collections
                .unwrap_or(DEFAULT_PARALLEL_COLLECTIONS),
            coll_stats_threshold: args.coll_stats_threshold.unwrap_or(-1),
            bookmark_file: PathBuf::from(
                args.bookmark_file
                    .unwrap_or_else(|| DEFAULT_BOOKMARK_FILE.to_string()),
            ),
            force_dump: args.force_dump,
            oplog_path: args.oplog_path.map(PathBuf::from),
            oplog_batch_size: args.oplog_batch_size.unwrap_or(DEFAULT_OPLOG_BATCH_SIZE),
            max_outage: args
                .max_outage_seconds
                .map_or(crate::retry::DEFAULT_MAX_OUTAGE, |s| {
                    std::time::Duration::from_secs(u64::from(s))
                }),
            http_status: args
                .http_status_port
                .map(|p| (args.http_status_host.clone(), p)),
            preflight_only: args.preflight_only,
            verify: args.verify,
            verify_report: args.verify_report.map(PathBuf::from),
            verify_max_differences: args
                .verify_max_differences
                .map_or(crate::verify::DEFAULT_MAX_DIFFERENCES, |n| n as usize),
            verbosity,
            log_format: args.log_format,
            warnings,
        })
    }
}

fn required_address(side: Side, value: Option<&str>) -> Result<Address> {
    let flag = side.address_flag();
    match value {
        Some(v) => Address::parse(flag, v),
        None => Err(Failure::usage(format!(
            "missing {flag}: the {side} replica set is required"
        ))
        .hint(format!(
            "pass {flag} setName/host1:27017,host2:27017 (run 'mongomirror --help' for every flag)"
        ))),
    }
}

/// Flags that are accepted for compatibility but cannot be honoured by this build.
fn refuse_unsupported(args: &Args) -> Result<()> {
    let refuse = |flag: &str, why: &str, hint: &str| {
        Err(Failure::usage(format!("{flag} is not supported: {why}")).hint(hint.to_string()))
    };
    if args.preserve_uuids {
        return refuse(
            "--preserveUUIDs",
            "keeping collection UUIDs needs privileged applyOps, which only Atlas's own live migration has",
            "remove --preserveUUIDs; collections get new UUIDs on the destination, which applications do not see",
        );
    }
    if args.ssl_crl_file.is_some() {
        return refuse(
            "--sslCRLFile",
            "the MongoDB Rust driver's TLS options have no certificate revocation list, so it could not be checked",
            "remove --sslCRLFile; to stop trusting a revoked server certificate, replace it and its CA in --sslCAFile",
        );
    }
    Ok(())
}

fn deprecation_warnings(args: &Args) -> Vec<String> {
    let mut out = Vec::new();
    if args.read_preference.is_some() {
        out.push("--readPreference is deprecated and has no effect: mongomirror always reads from the primary".to_string());
    }
    if args.write_concern.is_some() {
        out.push("--writeConcern is deprecated and has no effect: writes always use majority write concern".to_string());
    }
    if args.bypass_document_validation {
        out.push("--bypassDocumentValidation is deprecated and has no effect: document validation is always bypassed".to_string());
    }
    out
}

/// Checks that a file named by a flag can be read, before anything connects.
fn readable_file(flag: &str, path: &str) -> Result<PathBuf> {
    match std::fs::File::open(Path::new(path)) {
        Ok(_) => Ok(PathBuf::from(path)),
        Err(e) => Err(
            Failure::usage(format!("cannot read {flag} '{path}': {e}")).hint(
                "give a path to a readable PEM file, relative to the working directory or absolute",
            ),
        ),
    }
}

fn source_tls(args: &Args, warnings: &mut Vec<String>) -> Result<Option<TlsSettings>> {
    if args.ssl_pem_key_password.is_some() && args.ssl_pem_key_file.is_none() {
        return Err(
            Failure::usage("--sslPEMKeyPassword was given without --sslPEMKeyFile")
                .hint("pass --sslPEMKeyFile with the encrypted client certificate and key"),
        );
    }
    if args.ssl_allow_invalid_hostnames {
        warnings.push("--sslAllowInvalidHostnames is deprecated: like --tlsInsecure it turns off all certificate validation of the source".to_string());
    }
    if args.ssl_allow_invalid_certificates {
        warnings.push("--sslAllowInvalidCertificates is deprecated: use --tlsInsecure".to_string());
    }
    let wanted = args.ssl
        || args.ssl_ca_file.is_some()
        || args.ssl_pem_key_file.is_some()
        || args.tls_insecure
        || args.ssl_allow_invalid_certificates
        || args.ssl_allow_invalid_hostnames;
    if !wanted {
        return Ok(None);
    }
    Ok(Some(TlsSettings {
        ca_file: args
            .ssl_ca_file
            .as_deref()
            .map(|p| readable_file("--sslCAFile", p))
            .transpose()?,
        cert_key_file: args
            .ssl_pem_key_file
            .as_deref()
            .map(|p| readable_file("--sslPEMKeyFile", p))
            .transpose()?,
        cert_key_password: args.ssl_pem_key_password.clone(),
        allow_invalid: args.tls_insecure
            || args.ssl_allow_invalid_certificates
            || args.ssl_allow_invalid_hostnames,
    }))
}

/// Parses an `--authenticationMechanism` value; `flag` names the flag in errors.
///
/// `MONGODB-IAM`, the spelling of mongomirror's reference, is the driver's `MONGODB-AWS`.
pub fn parse_mechanism(flag: &str, value: &str) -> Result<AuthMechanism> {
    let choices = format!("use one of {}", built_mechanisms().join(", "));
    match value.to_ascii_uppercase().as_str() {
        "SCRAM-SHA-1" => Ok(AuthMechanism::ScramSha1),
        "SCRAM-SHA-256" => Ok(AuthMechanism::ScramSha256),
        "MONGODB-X509" => Ok(AuthMechanism::MongoDbX509),
        "PLAIN" => Ok(AuthMechanism::Plain),
        #[cfg(feature = "aws")]
        "MONGODB-AWS" | "MONGODB-IAM" => Ok(AuthMechanism::MongoDbAws),
        #[cfg(not(feature = "aws"))]
        "MONGODB-AWS" | "MONGODB-IAM" => Err(not_built(flag, value, "aws")),
        #[cfg(feature = "gssapi")]
        "GSSAPI" => Ok(AuthMechanism::Gssapi),
        #[cfg(not(feature = "gssapi"))]
        "GSSAPI" => Err(not_built(flag, value, "gssapi")),
        "MONGODB-CR" => Err(Failure::usage(format!(
            "{flag} MONGODB-CR is not supported: MongoDB removed it in 4.0, and this tool needs 4.4 or newer"
        ))
        .hint(choices)),
        _ => Err(Failure::usage(format!(
            "{flag} '{value}' is not an authentication mechanism"
        ))
        .hint(choices)),
    }
}

/// The failure for a mechanism whose cargo feature this binary was built without.
#[cfg(any(not(feature = "aws"), not(feature = "gssapi")))]
fn not_built(flag: &str, value: &str, feature: &str) -> Failure {
    Failure::usage(format!(
        "{flag} {value} is not available: this mongomirror was built without the cargo feature `{feature}`"
    ))
    .hint(format!(
        "use a release binary that has it ({}), or rebuild with `cargo install --path . --features {feature}` (docs/cli.md says what it needs)",
        if feature == "gssapi" { "macOS, or Linux -gnu-gssapi" } else { "any of them" }
    ))
}

/// One side's credential flags, as given.
#[derive(Default)]
struct CredentialFlags {
    username: Option<String>,
    password: Option<String>,
    source: Option<String>,
    mechanism: Option<String>,
    aws_session_token: Option<String>,
    gssapi_service_name: Option<String>,
    gssapi_host_name: Option<String>,
}

/// Resolves one side's credential flags, refusing every combination the driver would only
/// reject at connection time (or silently ignore), and naming the missing piece.
fn auth_for(endpoint: &Endpoint, given: CredentialFlags) -> Result<Option<Auth>> {
    let side = endpoint.side;
    let [user, password, auth_db, mechanism_flag] = [
        "username",
        "password",
        "authenticationDatabase",
        "authenticationMechanism",
    ]
    .map(|name| side.flag(name));
    let mechanism = given
        .mechanism
        .as_deref()
        .map(|m| parse_mechanism(&mechanism_flag, m))
        .transpose()?;
    for (is_set, flag, wanted) in [
        (
            given.aws_session_token.is_some(),
            "--awsSessionToken",
            "MONGODB-AWS",
        ),
        (
            given.gssapi_service_name.is_some(),
            "--gssapiServiceName",
            "GSSAPI",
        ),
        (
            given.gssapi_host_name.is_some(),
            "--gssapiHostName",
            "GSSAPI",
        ),
    ] {
        if is_set && mechanism.as_ref().map(AuthMechanism::as_str) != Some(wanted) {
            return Err(Failure::usage(format!(
                "{flag} only applies to {mechanism_flag} {wanted}"
            ))
            .hint(format!("add {mechanism_flag} {wanted}, or remove {flag}")));
        }
    }
    let auth = Auth {
        username: given.username,
        password: given.password,
        source: given.source,
        mechanism,
        aws_session_token: given.aws_session_token,
        gssapi_service_name: given.gssapi_service_name,
        gssapi_host_name: given.gssapi_host_name,
    };
    if auth == Auth::default() {
        return Ok(None);
    }
    let has_user = auth.username.is_some() || endpoint.address.uri_has_user();
    if auth.password.is_some() && !has_user {
        return Err(
            Failure::usage(format!("{password} was given without {user}"))
                .hint(format!("pass {user} with the {side} user name")),
        );
    }
    let external_only = |name: &str| match auth.source.as_deref() {
        Some(db) if db != "$external" => Err(Failure::usage(format!(
            "{name} users are defined in $external, but {auth_db} is '{db}'"
        ))
        .hint(format!("remove {auth_db}, or set it to '$external'"))),
        _ => Ok(()),
    };
    match auth.mechanism.as_ref().map(AuthMechanism::as_str) {
        Some(name @ "MONGODB-X509") => {
            if auth.password.is_some() {
                return Err(Failure::usage(format!(
                    "{password} cannot be used with {name}: the client certificate is the credential"
                ))
                .hint(format!("remove {password}")));
            }
            external_only(name)?;
            let has_certificate = endpoint
                .tls
                .as_ref()
                .is_some_and(|t| t.cert_key_file.is_some())
                || endpoint.address.uri_has_client_certificate();
            if !has_certificate {
                return Err(Failure::usage(format!(
                    "{name} on the {side} needs a client certificate, and none was given"
                ))
                .hint(match side {
                    Side::Source => "pass --sslPEMKeyFile with the client certificate and key (and --sslCAFile for a private CA)",
                    Side::Destination => "give --destination as a mongodb:// URI with tls=true&tlsCertificateKeyFile=<client.pem>",
                }));
            }
        }
        Some(name @ "MONGODB-AWS") => {
            external_only(name)?;
            // Where MONGODB-AWS finds credentials when the flags give none.
            let aws_hint = format!(
                "pass {user} and {password}{}, or none of them to let the AWS environment provide the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, a profile, or the ECS/EC2 role)",
                if side == Side::Source { " (plus --awsSessionToken for temporary credentials)" } else { "" }
            );
            if auth.username.is_some() != auth.password.is_some() {
                return Err(Failure::usage(format!(
                    "{name} needs both {user} (the AWS access key ID) and {password} (the secret access key), or neither"
                ))
                .hint(aws_hint.clone()));
            }
            if auth.aws_session_token.is_some() && auth.username.is_none() {
                return Err(Failure::usage(format!(
                    "--awsSessionToken was given without {user} (the AWS access key ID) and {password} (the secret access key)"
                ))
                .hint(aws_hint));
            }
        }
        Some(name @ "GSSAPI") => {
            external_only(name)?;
            if !has_user {
                return Err(Failure::usage(format!(
                    "{name} needs {user}: the Kerberos principal, such as mirror@EXAMPLE.COM"
                ))
                .hint(format!(
                    "pass {user} with the principal whose ticket `kinit` obtained"
                )));
            }
        }
        _ => {
            if auth.username.is_some() && auth.password.is_none() {
                let env = match side {
                    Side::Source => super::args::ENV_PASSWORD,
                    Side::Destination => super::args::ENV_DESTINATION_PASSWORD,
                };
                return Err(Failure::usage(format!(
                    "{user} is set but the {side} password is missing"
                ))
                .hint(format!(
                    "pass {password}, set {env}, or put {}: in the --config file",
                    password.trim_start_matches("--")
                )));
            }
        }
    }
    Ok(Some(auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(v: &str) -> Address {
        Address::parse("--host", v).unwrap()
    }

    #[test]
    fn address_forms() {
        assert_eq!(
            seeds("rs0/h1:27017,h2:27018"),
            Address::Seeds {
                set_name: Some("rs0".into()),
                hosts: vec![
                    HostPort {
                        host: "h1".into(),
                        port: 27017
                    },
                    HostPort {
                        host: "h2".into(),
                        port: 27018
                    }
                ]
            }
        );
        assert_eq!(
            seeds("localhost"),
            Address::Seeds {
                set_name: None,
                hosts: vec![HostPort {
                    host: "localhost".into(),
                    port: 27017
                }]
            }
        );
        assert_eq!(seeds("[::1]:27019").display(), "[::1]:27019");
        assert_eq!(seeds("rs0/h1:1,h2").display(), "rs0/h1:1,h2:27017");
        assert!(matches!(
            seeds("mongodb://u:p@h1,h2/?replicaSet=rs0"),
            Address::Uri(_)
        ));
    }

    #[test]
    fn bad_addresses_say_why() {
        for (value, why) in [
            ("rs0/", "has no hosts"),
            ("rs0/:27017", "no host name before the port"),
            (
                "h:notaport",
                "'notaport' in 'h:notaport' is not a port number",
            ),
            ("h:70000", "is not a port number"),
            ("/h:1", "replica set name before '/' is empty"),
            ("rs0/h1,,h2", "a host in the list is empty"),
            ("http://h", "only mongodb://"),
            ("mongodb://h:zz", "invalid --host"),
        ] {
            let err = Address::parse("--host", value).unwrap_err();
            assert!(err.message.contains(why), "{value}: {}", err.message);
            assert!(err.hint.is_some());
        }
    }

    #[test]
    fn uri_errors_do_not_show_passwords() {
        let err = Address::parse("--host", "mongodb://bob:pa55word@h:zz/").unwrap_err();
        assert!(!err.to_string().contains("pa55word"), "{err}");
    }

    #[test]
    fn compressor_lists() {
        assert_eq!(parse_compressors("none").unwrap(), Compressors(vec![]));
        assert_eq!(
            parse_compressors("zlib,snappy").unwrap(),
            Compressors(vec![Compressor::Zlib, Compressor::Snappy])
        );
        assert!(parse_compressors("lz4")
            .unwrap_err()
            .contains("unknown compressor 'lz4'"));
        assert!(parse_compressors("zstd,zstd").is_err());
        assert!(parse_compressors("none,zlib").is_err());
        assert_eq!(Compressors::default().0.len(), 3);
    }

    #[test]
    fn mechanisms() {
        assert_eq!(
            parse_mechanism("--m", "scram-sha-256").unwrap(),
            AuthMechanism::ScramSha256
        );
        for refused in ["MONGODB-CR", "bogus"] {
            let err = parse_mechanism("--authenticationMechanism", refused).unwrap_err();
            assert!(
                err.message.contains("--authenticationMechanism"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn destination_flag_names() {
        assert_eq!(Side::Destination.flag("username"), "--destinationUsername");
        assert_eq!(Side::Source.flag("username"), "--username");
    }
}
