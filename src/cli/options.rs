//! Validated options: everything the run needs, resolved from [`Args`] before any network call.

use std::fmt;
use std::path::{Path, PathBuf};

use mongodb::options::{AuthMechanism, ConnectionString};

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

    /// Whether the URI form already carries a user name.
    fn uri_has_user(&self) -> bool {
        match self {
            Address::Uri(uri) => ConnectionString::parse(uri)
                .ok()
                .and_then(|c| c.credential)
                .and_then(|c| c.username)
                .is_some(),
            Address::Seeds { .. } => false,
        }
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
#[derive(Clone, PartialEq)]
pub struct Auth {
    /// User name.
    pub username: Option<String>,
    /// Password (never printed: see the `Debug` impl).
    pub password: Option<String>,
    /// Authentication database.
    pub source: Option<String>,
    /// Mechanism; `None` lets the server negotiate SCRAM.
    pub mechanism: Option<AuthMechanism>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| redact::MASK))
            .field("source", &self.source)
            .field("mechanism", &self.mechanism)
            .finish()
    }
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
                args.username.clone(),
                args.password.clone(),
                args.authentication_database.clone(),
                args.authentication_mechanism.as_deref(),
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
                args.destination_username.clone(),
                args.destination_password.clone(),
                args.destination_authentication_database.clone(),
                args.destination_authentication_mechanism.as_deref(),
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
    if args.gssapi_service_name.is_some() || args.gssapi_host_name.is_some() {
        let flag = if args.gssapi_service_name.is_some() {
            "--gssapiServiceName"
        } else {
            "--gssapiHostName"
        };
        return refuse(
            flag,
            "this build has no Kerberos (GSSAPI) support",
            "authenticate with SCRAM-SHA-256 or MONGODB-X509",
        );
    }
    if args.aws_session_token.is_some() {
        return refuse(
            "--awsSessionToken",
            "this build has no AWS IAM (MONGODB-IAM) support",
            "authenticate with SCRAM-SHA-256 or MONGODB-X509",
        );
    }
    if args.ssl_crl_file.is_some() {
        return refuse(
            "--sslCRLFile",
            "the TLS stack (rustls) cannot check certificate revocation lists",
            "remove --sslCRLFile, or revoke the certificate at the CA",
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
pub fn parse_mechanism(flag: &str, value: &str) -> Result<AuthMechanism> {
    let unsupported = |why: &str| {
        Err(
            Failure::usage(format!("{flag} {value} is not supported: {why}"))
                .hint("use SCRAM-SHA-256, SCRAM-SHA-1, MONGODB-X509 or PLAIN"),
        )
    };
    match value.to_ascii_uppercase().as_str() {
        "SCRAM-SHA-1" => Ok(AuthMechanism::ScramSha1),
        "SCRAM-SHA-256" => Ok(AuthMechanism::ScramSha256),
        "MONGODB-X509" => Ok(AuthMechanism::MongoDbX509),
        "PLAIN" => Ok(AuthMechanism::Plain),
        "MONGODB-CR" => {
            unsupported("MongoDB removed MONGODB-CR in 4.0, and this tool needs 4.4 or newer")
        }
        "GSSAPI" => unsupported("this build has no Kerberos support"),
        "MONGODB-IAM" | "MONGODB-AWS" => unsupported("this build has no AWS IAM support"),
        _ => Err(Failure::usage(format!(
            "{flag} '{value}' is not an authentication mechanism"
        ))
        .hint("use SCRAM-SHA-256, SCRAM-SHA-1, MONGODB-X509 or PLAIN")),
    }
}

fn auth_for(
    endpoint: &Endpoint,
    username: Option<String>,
    password: Option<String>,
    source: Option<String>,
    mechanism: Option<&str>,
) -> Result<Option<Auth>> {
    let side = endpoint.side;
    let mechanism = mechanism
        .map(|m| parse_mechanism(&side.flag("authenticationMechanism"), m))
        .transpose()?;
    if username.is_none() && password.is_none() && source.is_none() && mechanism.is_none() {
        return Ok(None);
    }
    let has_user = username.is_some() || endpoint.address.uri_has_user();
    let x509 = mechanism == Some(AuthMechanism::MongoDbX509);
    if password.is_some() && !has_user {
        return Err(Failure::usage(format!(
            "{} was given without {}",
            side.flag("password"),
            side.flag("username")
        ))
        .hint(format!(
            "pass {} with the {side} user name",
            side.flag("username")
        )));
    }
    if username.is_some() && password.is_none() && !x509 {
        let env = match side {
            Side::Source => super::args::ENV_PASSWORD,
            Side::Destination => super::args::ENV_DESTINATION_PASSWORD,
        };
        return Err(Failure::usage(format!(
            "{} is set but the {side} password is missing",
            side.flag("username")
        ))
        .hint(format!(
            "pass {}, set {env}, or put {}: in the --config file",
            side.flag("password"),
            side.flag("password").trim_start_matches("--")
        )));
    }
    Ok(Some(Auth {
        username,
        password,
        source,
        mechanism,
    }))
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
        for refused in ["GSSAPI", "MONGODB-CR", "MONGODB-IAM", "bogus"] {
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
