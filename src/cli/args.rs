//! The raw command line: mongomirror's flags, spelled exactly as mongomirror spells them.
//!
//! Each flag is declared once here, with its help text and its help section. Values that can be
//! checked without context (numbers, ports, compressor names, namespaces) are checked by the
//! parser; everything that needs the whole picture is resolved into [`super::Options`].

use std::sync::LazyLock;

use clap::{ArgAction, Parser};

use super::namespace::Namespace;
use super::options::LogFormat;

/// Help sections, in the order `--help` shows them.
pub(crate) const SOURCE: &str = "Source";
pub(crate) const DESTINATION: &str = "Destination";
pub(crate) const TLS: &str = "TLS (source)";
pub(crate) const NAMESPACES: &str = "Namespaces";
pub(crate) const COPY: &str = "Copy";
pub(crate) const OPLOG: &str = "Oplog and resume";
pub(crate) const MONITORING: &str = "Monitoring";
pub(crate) const VERIFY: &str = "Verification";
pub(crate) const GENERAL: &str = "General";

/// Environment variables that can carry the three passwords (flag > env > config file).
pub const ENV_PASSWORD: &str = "MONGOMIRROR_PASSWORD";
/// Environment variable for `--destinationPassword`.
pub const ENV_DESTINATION_PASSWORD: &str = "MONGOMIRROR_DESTINATION_PASSWORD";
/// Environment variable for `--sslPEMKeyPassword`.
pub const ENV_SSL_PEM_KEY_PASSWORD: &str = "MONGOMIRROR_SSL_PEM_KEY_PASSWORD";

/// `--version`: the version, and the authentication mechanisms this build has (they depend on
/// cargo features).
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "version: {} (mongomirror-rs; flag-compatible with mongomirror 0.13)\nauthentication mechanisms: {}",
        env!("CARGO_PKG_VERSION"),
        super::options::built_mechanisms().join(", ")
    )
});

/// mongomirror's command line.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "mongomirror",
    version = VERSION.as_str(),
    about = "Migrate a live MongoDB replica set into another one: initial sync, then continuous oplog sync.",
    after_help = "Exit codes: 0 success or clean interrupt, 1 runtime failure, 2 usage error, \
                  3 connection or authentication failure, 4 preflight failure, 5 lost oplog position.",
    disable_help_flag = true,
    disable_version_flag = true,
    rename_all = "camelCase",
    max_term_width = 110
)]
pub struct Args {
    // ---------------------------------------------------------------- source
    /// Source replica set: `setName/host1:port1,host2:port2`, a single `host[:port]` for a direct
    /// connection, or a `mongodb://` / `mongodb+srv://` URI. Config file key: `uri` or `host`.
    #[arg(long, value_name = "SET/HOST:PORT,...", help_heading = SOURCE)]
    pub host: Option<String>,

    /// Source user; it needs readAnyDatabase, clusterMonitor and backup (or equivalent).
    #[arg(long, value_name = "USER", help_heading = SOURCE)]
    pub username: Option<String>,

    /// Password for --username.
    #[arg(long, value_name = "PASSWORD", env = ENV_PASSWORD, hide_env_values = true, help_heading = SOURCE)]
    pub password: Option<String>,

    /// Database the source user was created in (default: admin; $external for MONGODB-X509,
    /// MONGODB-AWS, GSSAPI and LDAP users).
    #[arg(long, value_name = "DB", help_heading = SOURCE)]
    pub authentication_database: Option<String>,

    /// Source auth mechanism: SCRAM-SHA-256, SCRAM-SHA-1, MONGODB-X509, PLAIN (LDAP),
    /// MONGODB-AWS (alias MONGODB-IAM) or GSSAPI (Kerberos). `--version` lists this build's.
    #[arg(long, value_name = "MECHANISM", help_heading = SOURCE)]
    pub authentication_mechanism: Option<String>,

    /// AWS session token for MONGODB-AWS with temporary credentials; --username is the access key
    /// ID and --password the secret access key. Without all three, the AWS environment is used.
    #[arg(long, value_name = "TOKEN", help_heading = SOURCE)]
    pub aws_session_token: Option<String>,

    /// Kerberos service name for GSSAPI, when it is not `mongodb`.
    #[arg(long = "gssapiServiceName", value_name = "NAME", help_heading = SOURCE)]
    pub gssapi_service_name: Option<String>,

    /// Host name in the Kerberos service principal for GSSAPI, when it differs from the one DNS
    /// gives.
    #[arg(long = "gssapiHostName", value_name = "HOST", help_heading = SOURCE)]
    pub gssapi_host_name: Option<String>,

    /// Deprecated, no effect: mongomirror always reads from the primary.
    #[arg(long, value_name = "PREF", help_heading = SOURCE)]
    pub read_preference: Option<String>,

    // ----------------------------------------------------------- destination
    /// Destination replica set, in the same forms as --host. TLS is used when the URI asks for
    /// it, and always for Atlas hosts (*.mongodb.net).
    #[arg(long, value_name = "SET/HOST:PORT,...", help_heading = DESTINATION)]
    pub destination: Option<String>,

    /// Destination user; it must create, write, drop and index (Atlas admin).
    #[arg(long, value_name = "USER", help_heading = DESTINATION)]
    pub destination_username: Option<String>,

    /// Password for --destinationUsername.
    #[arg(long, value_name = "PASSWORD", env = ENV_DESTINATION_PASSWORD, hide_env_values = true, help_heading = DESTINATION)]
    pub destination_password: Option<String>,

    /// Database the destination user was created in (default: admin).
    #[arg(long, value_name = "DB", help_heading = DESTINATION)]
    pub destination_authentication_database: Option<String>,

    /// Destination auth mechanism, as --authenticationMechanism. MONGODB-X509 takes its client
    /// certificate from a --destination URI (tlsCertificateKeyFile).
    #[arg(long, value_name = "MECHANISM", help_heading = DESTINATION)]
    pub destination_authentication_mechanism: Option<String>,

    /// Deprecated, no effect: writes always use majority write concern.
    #[arg(long, value_name = "WC", help_heading = DESTINATION)]
    pub write_concern: Option<String>,

    // ------------------------------------------------------------------- TLS
    /// Connect to the source over TLS.
    #[arg(long, help_heading = TLS)]
    pub ssl: bool,

    /// PEM file holding the client certificate and key, for sources that require one.
    #[arg(long = "sslPEMKeyFile", value_name = "FILE", help_heading = TLS)]
    pub ssl_pem_key_file: Option<String>,

    /// Password that decrypts --sslPEMKeyFile.
    #[arg(long = "sslPEMKeyPassword", value_name = "PASSWORD", env = ENV_SSL_PEM_KEY_PASSWORD, hide_env_values = true, help_heading = TLS)]
    pub ssl_pem_key_password: Option<String>,

    /// PEM file with the root CA chain that signed the source's certificate.
    #[arg(long = "sslCAFile", value_name = "FILE", help_heading = TLS)]
    pub ssl_ca_file: Option<String>,

    /// Certificate revocation list: refused, the driver's TLS options cannot carry one.
    #[arg(long = "sslCRLFile", value_name = "FILE", help_heading = TLS)]
    pub ssl_crl_file: Option<String>,

    /// Deprecated (use --tlsInsecure): skip host name checks. Like mongomirror warns, this also
    /// skips all certificate validation.
    #[arg(long, help_heading = TLS)]
    pub ssl_allow_invalid_hostnames: bool,

    /// Deprecated (use --tlsInsecure): skip validation of the source's certificates.
    #[arg(long, help_heading = TLS)]
    pub ssl_allow_invalid_certificates: bool,

    /// Skip validation of the source's certificate chain and host name.
    #[arg(long, help_heading = TLS)]
    pub tls_insecure: bool,

    // ------------------------------------------------------------ namespaces
    /// Copy only this namespace (`db.collection`). Repeatable; unions with --includeDB.
    #[arg(long, value_name = "DB.COLL", action = ArgAction::Append, value_parser = Namespace::parse_flag, help_heading = NAMESPACES)]
    pub include_namespace: Vec<Namespace>,

    /// Copy only this database. Repeatable; unions with --includeNamespace.
    #[arg(long = "includeDB", value_name = "DB", action = ArgAction::Append, value_parser = Namespace::parse_db_flag, help_heading = NAMESPACES)]
    pub include_db: Vec<String>,

    /// Never copy this namespace (`db.collection`). Repeatable; exclusion wins over inclusion.
    #[arg(long, value_name = "DB.COLL", action = ArgAction::Append, value_parser = Namespace::parse_flag, help_heading = NAMESPACES)]
    pub exclude_namespace: Vec<Namespace>,

    /// Never copy this database. Repeatable; exclusion wins over inclusion.
    #[arg(long = "excludeDB", value_name = "DB", action = ArgAction::Append, value_parser = Namespace::parse_db_flag, help_heading = NAMESPACES)]
    pub exclude_db: Vec<String>,

    // ------------------------------------------------------------------ copy
    /// Drop every destination collection that will be copied, before copying. Never touches
    /// other collections.
    #[arg(long, help_heading = COPY)]
    pub drop: bool,

    /// Copy the data without building indexes.
    #[arg(long, help_heading = COPY)]
    pub no_index_restore: bool,

    /// How many collections to copy in parallel.
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_positive, allow_negative_numbers = true, help_heading = COPY)]
    pub num_parallel_collections: Option<u32>,

    /// Number of collections above which collStats is no longer run: -1 always runs it, 0 never.
    #[arg(long, value_name = "N", value_parser = parse_coll_stats_threshold, allow_negative_numbers = true, help_heading = COPY)]
    pub coll_stats_threshold: Option<i64>,

    /// Drop the legacy autoIndexId collection option.
    #[arg(long, help_heading = COPY)]
    pub remove_auto_index_id: bool,

    /// Allow TTL indexes: build them without expireAfterSeconds, and print the collMod commands
    /// that restore expiry at cutover (without it, TTL indexes fail preflight, as in mongomirror).
    #[arg(long = "ttlWithoutExpiry", help_heading = COPY)]
    pub ttl_without_expiry: bool,

    /// Keep collection UUIDs (only possible inside Atlas live migration; refused here).
    #[arg(long = "preserveUUIDs", help_heading = COPY)]
    pub preserve_uuids: bool,

    /// Deprecated, no effect: document validation is always bypassed.
    #[arg(long, help_heading = COPY)]
    pub bypass_document_validation: bool,

    /// Wire compressors, in order of preference, or `none`.
    #[arg(long, value_name = "LIST", value_parser = super::options::parse_compressors, help_heading = COPY)]
    pub compressors: Option<super::options::Compressors>,

    // --------------------------------------------------------- oplog/resume
    /// The bookmark file that lets a restart resume oplog sync.
    #[arg(long, value_name = "FILE", help_heading = OPLOG)]
    pub bookmark_file: Option<String>,

    /// Start over with a full initial sync even if a bookmark exists.
    #[arg(long, help_heading = OPLOG)]
    pub force_dump: bool,

    /// Directory for the on-disk oplog spool used during initial sync.
    #[arg(long, value_name = "DIR", help_heading = OPLOG)]
    pub oplog_path: Option<String>,

    /// Oplog entries applied per batch (at most 16 MB per batch).
    #[arg(long, value_name = "N", value_parser = parse_positive, allow_negative_numbers = true, help_heading = OPLOG)]
    pub oplog_batch_size: Option<u32>,

    /// How long to wait out a server that does not answer (a restart, a failover, the network)
    /// before the run ends with exit code 1; the bookmark then resumes.
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive, allow_negative_numbers = true, help_heading = OPLOG)]
    pub max_outage_seconds: Option<u32>,

    // ------------------------------------------------------------ monitoring
    /// Serve status JSON on this port (0 picks a free one). Errors are then reported there
    /// instead of ending the process.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16), help_heading = MONITORING)]
    pub http_status_port: Option<u16>,

    /// Address the status server binds.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", help_heading = MONITORING)]
    pub http_status_host: String,

    /// Run the preflight checks, print the report, and exit without writing anything.
    #[arg(long, help_heading = MONITORING)]
    pub preflight_only: bool,

    // ---------------------------------------------------------- verification
    /// Compare source and destination (catalog, indexes, every document byte for byte), print
    /// a report and exit: 0 when identical, 6 when anything differs. Writes nothing.
    #[arg(long, help_heading = VERIFY, conflicts_with_all = ["preflight_only", "drop", "force_dump"])]
    pub verify: bool,

    /// Also write the verification report (of --verify, or of a cutover) to FILE as JSON.
    #[arg(long, value_name = "FILE", help_heading = VERIFY)]
    pub verify_report: Option<String>,

    /// Differing documents listed per namespace in a verification report.
    #[arg(long, value_name = "N", value_parser = parse_positive, allow_negative_numbers = true, help_heading = VERIFY)]
    pub verify_max_differences: Option<u32>,

    // --------------------------------------------------------------- general
    /// YAML file of options: mongomirror's keys (password, destinationPassword,
    /// sslPEMKeyPassword, uri) and any flag by its long name.
    #[arg(long, value_name = "FILE", help_heading = GENERAL)]
    pub config: Option<String>,

    /// More detailed logs; repeat for more (-vv).
    #[arg(short = 'v', long, action = ArgAction::Count, help_heading = GENERAL)]
    pub verbose: u8,

    /// Log line format: `text`, mongomirror's lines, or `json`, one object per line with time,
    /// level, message and fields (namespace, counts, lag, error, hint) for log shippers.
    #[arg(long, value_name = "FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text, help_heading = GENERAL)]
    pub log_format: LogFormat,

    /// Only warnings and errors.
    #[arg(long, conflicts_with = "verbose", help_heading = GENERAL)]
    pub quiet: bool,

    /// Print the version and exit.
    #[arg(long, action = ArgAction::Version, help_heading = GENERAL)]
    pub version: Option<bool>,

    /// Print this help and exit.
    #[arg(long, action = ArgAction::Help, help_heading = GENERAL)]
    pub help: Option<bool>,
}

/// A whole number of at least 1.
fn parse_positive(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=i64::from(u32::MAX)).contains(&n) => Ok(n as u32),
        Ok(n) => Err(format!("must be a whole number of at least 1, got {n}")),
        Err(_) => Err(format!("must be a whole number of at least 1, got '{s}'")),
    }
}

/// -1 (always), 0 (never) or a positive collection count.
fn parse_coll_stats_threshold(s: &str) -> Result<i64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(format!(
            "must be -1, 0 or a positive whole number, got '{s}'"
        )),
    }
}
