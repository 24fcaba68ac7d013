//! One SecantusDB test server (or a handle on a real deployment).

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::Client;
use tempfile::TempDir;

use super::process::ManagedProcess;
use super::slots::{self, Permit};
use super::tls::{self, TlsFiles};

/// User the harness creates (role `root`) on every server with auth on.
pub const ADMIN_USER: &str = "harness-admin";
/// Password of [`ADMIN_USER`].
pub const ADMIN_PASSWORD: &str = "harness-admin-password";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_LINES_KEPT: usize = 200;
const CACHE_SIZE: &str = "128M";
/// Server error code of `createUser` for an existing user.
const USER_ALREADY_EXISTS: i32 = 51003;

/// A user to create before the server is restarted with `--auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User name (created in the `admin` database).
    pub name: String,
    /// Password (SCRAM-SHA-256).
    pub password: String,
    /// `(role, db)` pairs.
    pub roles: Vec<(String, String)>,
}

impl User {
    /// A user without roles.
    pub fn new(name: &str, password: &str) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            roles: Vec::new(),
        }
    }

    /// A user with role `root` on `admin`.
    pub fn root(name: &str, password: &str) -> Self {
        Self::new(name, password).with_role("root", "admin")
    }

    /// Adds role `role` on database `db`.
    pub fn with_role(mut self, role: &str, db: &str) -> Self {
        self.roles.push((role.into(), db.into()));
        self
    }
}

/// TLS configuration of a test server; certificates are generated per server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS required; clients must trust the test CA.
    Tls,
    /// TLS required and clients must present a certificate signed by the CA.
    RequireClientCert,
}

/// Where a server keeps its data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// `:memory:` — fastest; lost on [`TestServer::restart`]. (A server with
    /// auth silently uses [`Storage::Scratch`], its users must survive.)
    #[default]
    InMemory,
    /// A directory inside the server's scratch dir; survives restarts.
    Scratch,
    /// A caller-owned directory; survives restarts and the server itself.
    Dir(PathBuf),
}

/// How to start a [`TestServer`]. The default is a plain in-memory
/// one-member replica set `secantus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Require authentication (implied by a non-empty `auth_users`). The
    /// harness always adds [`ADMIN_USER`] when auth is on.
    pub auth: bool,
    /// Users to create before auth is switched on.
    pub auth_users: Vec<User>,
    /// TLS mode, if any.
    pub tls: Option<TlsMode>,
    /// Present as a standalone server instead of a replica set.
    pub standalone: bool,
    /// Enable test-only commands such as `configureFailPoint`.
    pub test_commands: bool,
    /// Cap on the number of oplog entries.
    pub oplog_max_entries: Option<u64>,
    /// Data location.
    pub storage: Storage,
    /// Run the server as published, without the harness's fix of its tailable oplog cursor
    /// (which loses entries committed while the cursor opens): only for the self-test that
    /// shows the fix works.
    pub unfixed_oplog_cursor: bool,
}

impl ServerOptions {
    /// Turns on auth (with just [`ADMIN_USER`] unless users are added).
    pub fn with_auth(mut self) -> Self {
        self.auth = true;
        self
    }

    /// Adds a user and turns on auth.
    pub fn with_user(mut self, user: User) -> Self {
        self.auth_users.push(user);
        self.with_auth()
    }

    /// Serves TLS only.
    pub fn with_tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }

    /// Presents the server as a standalone (no replica-set fields in hello).
    pub fn standalone(mut self) -> Self {
        self.standalone = true;
        self
    }

    /// Enables `configureFailPoint` and friends.
    pub fn with_test_commands(mut self) -> Self {
        self.test_commands = true;
        self
    }

    /// Caps the oplog at `entries` entries.
    pub fn with_oplog_max_entries(mut self, entries: u64) -> Self {
        self.oplog_max_entries = Some(entries);
        self
    }

    /// Keeps data on disk in the scratch dir so it survives restarts.
    pub fn persistent(mut self) -> Self {
        self.storage = Storage::Scratch;
        self
    }

    /// Keeps data in `dir`.
    pub fn with_storage_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = Storage::Dir(dir.into());
        self
    }

    /// Runs the server without the harness's oplog-cursor fix.
    pub fn with_unfixed_oplog_cursor(mut self) -> Self {
        self.unfixed_oplog_cursor = true;
        self
    }

    /// True when the server runs with `--auth`.
    pub fn auth_enabled(&self) -> bool {
        self.auth || !self.auth_users.is_empty()
    }
}

/// A connected [`Client`] for `uri` with a short server-selection timeout,
/// so that an unreachable server fails a test quickly.
pub async fn client_for(uri: &str) -> Client {
    let mut options = ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("cannot parse test URI {uri}: {e}"));
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(20));
    options
        .app_name
        .get_or_insert_with(|| "mongomirror-it".into());
    Client::with_options(options)
        .unwrap_or_else(|e| panic!("cannot create a client for {uri}: {e}"))
}

/// A test server: a SecantusDB process owned by the test (SIGKILLed on
/// drop, even when the test panics: call [`TestServer::stop`] first if a
/// caller-owned storage dir must be shut down cleanly) or a real deployment
/// (see [`crate::support::real_deployment`]). Holds one server slot.
pub struct TestServer {
    backend: Backend,
    _permit: Permit,
}

enum Backend {
    Local(Box<LocalServer>),
    External(String),
}

impl TestServer {
    /// Starts a server (waits for a free slot first; provisions SecantusDB
    /// on first use — both block the calling thread). Against real
    /// deployments it is the destination deployment, emptied of user
    /// databases, and it holds every slot so that scenarios stay serial.
    pub async fn start(options: ServerOptions) -> TestServer {
        if let Some(real) = super::real::real_deployment() {
            assert!(
                options == ServerOptions::default(),
                "special server options cannot be honoured by real deployments; \
                 start the test with `if skip_on_real_deployment(..) {{ return; }}`"
            );
            let server = TestServer::external(real.destination_uri.clone(), slots::acquire(2));
            super::pair::drop_user_databases(&server).await;
            return server;
        }
        let permit = slots::acquire(1);
        Self::launch(options, permit).await
    }

    pub(crate) async fn launch(options: ServerOptions, permit: Permit) -> TestServer {
        TestServer {
            backend: Backend::Local(Box::new(LocalServer::launch(options).await)),
            _permit: permit,
        }
    }

    pub(crate) fn external(uri: String, permit: Permit) -> TestServer {
        TestServer {
            backend: Backend::External(uri),
            _permit: permit,
        }
    }

    /// True for a real deployment, false for a harness-started server.
    pub fn is_external(&self) -> bool {
        matches!(self.backend, Backend::External(_))
    }

    /// Connection string without credentials (with TLS parameters when the
    /// server uses TLS, including the client certificate for
    /// [`TlsMode::RequireClientCert`]).
    pub fn uri(&self) -> String {
        match &self.backend {
            Backend::Local(local) => local.uri(None),
            Backend::External(uri) => uri.clone(),
        }
    }

    /// Connection string authenticating as `user` (against `admin`).
    /// Harness-started servers only.
    pub fn uri_with_credentials(&self, user: &str, password: &str) -> String {
        self.local("uri_with_credentials")
            .uri(Some((user, password)))
    }

    /// Connection string with full privileges: as [`ADMIN_USER`] when auth
    /// is on; a real deployment's URI as given.
    pub fn admin_uri(&self) -> String {
        match &self.backend {
            Backend::Local(local) if local.options.auth_enabled() => {
                local.uri(Some((ADMIN_USER, ADMIN_PASSWORD)))
            }
            _ => self.uri(),
        }
    }

    /// `host:port` (for a real deployment: the host list of its URI).
    pub fn host_port(&self) -> String {
        match &self.backend {
            Backend::Local(local) => format!("127.0.0.1:{}", local.port),
            Backend::External(uri) => hosts_of(uri),
        }
    }

    /// The port of a harness-started server.
    pub fn port(&self) -> u16 {
        self.local("port").port
    }

    /// The options the server was started with (default for a real one).
    pub fn options(&self) -> ServerOptions {
        match &self.backend {
            Backend::Local(local) => local.options.clone(),
            Backend::External(_) => ServerOptions::default(),
        }
    }

    /// The generated certificates of a TLS server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        match &self.backend {
            Backend::Local(local) => local.tls.as_ref(),
            Backend::External(_) => None,
        }
    }

    /// A client with full privileges (see [`TestServer::admin_uri`]).
    pub async fn client(&self) -> Client {
        client_for(&self.admin_uri()).await
    }

    /// A client authenticating as `user`. Authentication happens on first
    /// use, so a wrong password surfaces as an error of the first operation.
    pub async fn client_as(&self, user: &str, password: &str) -> Client {
        client_for(&self.uri_with_credentials(user, password)).await
    }

    /// Gracefully stops the server (if running) and starts it again on the
    /// same storage, trying the same port first ([`TestServer::port`] is
    /// updated if it changes). In-memory data does not survive.
    pub async fn restart(&mut self) {
        let local = self.local_mut("restart");
        local.stop().await;
        let port = local.port;
        local
            .spawn_or_panic(local.options.auth_enabled(), port)
            .await;
    }

    /// Gracefully stops the server (SIGTERM, waits for a clean shutdown;
    /// SIGKILL after 30 s). [`TestServer::restart`] starts it again.
    pub async fn stop(&mut self) {
        self.local_mut("stop").stop().await;
    }

    /// Kills the server with SIGKILL. SecantusDB loses writes from the last
    /// moments before a SIGKILL even with on-disk storage.
    pub async fn kill(&mut self) {
        let local = self.local_mut("kill");
        if let Some(process) = local.process.take() {
            process.kill_and_wait().await;
        }
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.local("pid").process.as_ref().map(|p| p.pid())
    }

    /// The last lines the server logged (empty for a real deployment).
    pub fn log_tail(&self) -> String {
        match &self.backend {
            Backend::Local(local) => local
                .process
                .as_ref()
                .map(|p| p.tail(LOG_LINES_KEPT))
                .unwrap_or_default(),
            Backend::External(_) => String::new(),
        }
    }

    fn local(&self, what: &str) -> &LocalServer {
        match &self.backend {
            Backend::Local(local) => local,
            Backend::External(_) => panic!("{what} is not available on a real deployment; guard the test with skip_on_real_deployment"),
        }
    }

    fn local_mut(&mut self, what: &str) -> &mut LocalServer {
        match &mut self.backend {
            Backend::Local(local) => local,
            Backend::External(_) => panic!("{what} is not available on a real deployment; guard the test with skip_on_real_deployment"),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The host list of a connection string.
fn hosts_of(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// A SecantusDB process with its scratch directory. Field order matters:
/// the process is killed before the scratch directory is removed.
struct LocalServer {
    process: Option<ManagedProcess>,
    port: u16,
    options: ServerOptions,
    tls: Option<TlsFiles>,
    data_dir: Option<PathBuf>,
    scratch: TempDir,
}

impl LocalServer {
    async fn launch(options: ServerOptions) -> LocalServer {
        let scratch = tempfile::Builder::new()
            .prefix("mongomirror-it-")
            .tempdir()
            .expect("creating a scratch directory");
        // `:memory:` storage lives in a mkdtemp dir: keep it in our scratch
        // dir so it is removed even when the server is SIGKILLed.
        fs::create_dir_all(scratch.path().join("tmp")).expect("creating scratch/tmp");
        // An explicit (empty) config file disables the auto-discovery of
        // ./secantusd.toml, ~/.secantus/secantusd.toml and /etc/secantus.
        fs::write(scratch.path().join("secantusd.toml"), "").expect("writing secantusd.toml");
        let tls = options
            .tls
            .map(|_| tls::generate(&scratch.path().join("tls")));
        let data_dir = match &options.storage {
            Storage::InMemory if !options.auth_enabled() => None,
            Storage::InMemory | Storage::Scratch => Some(scratch.path().join("data")),
            Storage::Dir(dir) => Some(dir.clone()),
        };
        let mut server = LocalServer {
            process: None,
            port: 0,
            options,
            tls,
            data_dir,
            scratch,
        };
        if server.options.auth_enabled() {
            // Users must exist before --auth: create them, stop cleanly (a
            // SIGKILL can lose them), restart with --auth on the same data.
            server.spawn_or_panic(false, 0).await;
            server.create_users().await;
            server.stop().await;
        }
        server
            .spawn_or_panic(server.options.auth_enabled(), 0)
            .await;
        server
    }

    fn uri(&self, credentials: Option<(&str, &str)>) -> String {
        let mut uri = String::from("mongodb://");
        if let Some((user, password)) = credentials {
            uri.push_str(&format!(
                "{}:{}@",
                percent_encode(user),
                percent_encode(password)
            ));
        }
        uri.push_str(&format!("127.0.0.1:{}/?directConnection=true", self.port));
        if credentials.is_some() {
            uri.push_str("&authSource=admin");
        }
        if let Some(files) = &self.tls {
            uri.push_str(&format!("&tls=true&tlsCAFile={}", files.ca_file.display()));
            if self.options.tls == Some(TlsMode::RequireClientCert) {
                uri.push_str(&format!(
                    "&tlsCertificateKeyFile={}",
                    files.client_pem_file.display()
                ));
            }
        }
        uri
    }

    /// Starts the process on `port` (0 = any); if a fixed port cannot be
    /// had, falls back to any port.
    async fn spawn_or_panic(&mut self, auth: bool, port: u16) {
        let mut result = self.spawn(auth, port).await;
        if result.is_err() && port != 0 {
            result = self.spawn(auth, 0).await;
        }
        if let Err(message) = result {
            panic!("SecantusDB test server failed to start: {message}");
        }
    }

    async fn spawn(&mut self, auth: bool, port: u16) -> Result<(), String> {
        let launcher = super::provision::secantusd();
        let mut cmd = if self.options.unfixed_oplog_cursor {
            launcher.unfixed_command()
        } else {
            launcher.command()
        };
        let scratch = self.scratch.path();
        let storage = match &self.data_dir {
            Some(dir) => dir.clone().into_os_string(),
            None => ":memory:".into(),
        };
        cmd.arg("--config")
            .arg(scratch.join("secantusd.toml"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--storage-path")
            .arg(storage)
            .args(["--cache-size", CACHE_SIZE])
            .current_dir(scratch)
            .env("TMPDIR", scratch.join("tmp"));
        let flags = [
            (auth, "--auth"),
            (self.options.standalone, "--standalone"),
            (self.options.test_commands, "--enable-test-commands"),
        ];
        cmd.args(flags.iter().filter(|(on, _)| *on).map(|(_, flag)| flag));
        if let Some(entries) = self.options.oplog_max_entries {
            cmd.arg("--oplog-max-entries").arg(entries.to_string());
        }
        if let Some(files) = &self.tls {
            cmd.arg("--tls-cert-file").arg(&files.server_cert_file);
            cmd.arg("--tls-key-file").arg(&files.server_key_file);
            cmd.arg("--tls-ca-file").arg(&files.ca_file);
            if self.options.tls == Some(TlsMode::RequireClientCert) {
                cmd.arg("--tls-require-client-cert");
            }
        }
        let shown = format!("{cmd:?}");
        let process = ManagedProcess::spawn(cmd, Some(LOG_LINES_KEPT))
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        let (_, line) = process
            .wait_for_line(0, &"listening on ", START_TIMEOUT)
            .await
            .map_err(|e| format!("{shown}\n{e}"))?;
        self.port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("cannot find the port in {line:?}"))?;
        self.process = Some(process);
        Ok(())
    }

    async fn create_users(&self) {
        let admin = ("root".to_string(), "admin".to_string());
        let harness = User {
            name: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
            roles: vec![admin],
        };
        let client = client_for(&self.uri(None)).await;
        for user in std::iter::once(&harness).chain(&self.options.auth_users) {
            let roles: Vec<Document> = user
                .roles
                .iter()
                .map(|(role, db)| doc! { "role": role, "db": db })
                .collect();
            let command = doc! { "createUser": &user.name, "pwd": &user.password, "roles": roles };
            if let Err(e) = client.database("admin").run_command(command).await {
                // A caller-owned storage dir may already hold the user.
                if !matches!(*e.kind, ErrorKind::Command(ref c) if c.code == USER_ALREADY_EXISTS) {
                    panic!("createUser {} failed: {e}", user.name);
                }
            }
        }
        client.shutdown().await;
    }

    async fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.signal("TERM");
            if !process.wait_exit(STOP_TIMEOUT).await {
                process.kill_and_wait().await;
            }
        }
    }
}
