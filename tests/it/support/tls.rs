//! Throw-away X.509 v3 certificates for TLS test servers (rustls, used by the
//! driver, rejects v1 certificates, so they are generated with rcgen).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of one test PKI, all inside the server's scratch directory.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate (`tlsCAFile`, mongomirror's `--sslCAFile`).
    pub ca_file: PathBuf,
    /// The server certificate (SANs `localhost` and `127.0.0.1`).
    pub server_cert_file: PathBuf,
    /// The server's private key.
    pub server_key_file: PathBuf,
    /// Client certificate followed by its key, in one file
    /// (`tlsCertificateKeyFile`, mongomirror's `--sslPEMKeyFile`).
    pub client_pem_file: PathBuf,
}

/// Generates a CA, a server certificate and a client certificate into `dir`.
pub(crate) fn generate(dir: &Path) -> TlsFiles {
    fs::create_dir_all(dir).expect("creating the TLS directory");
    let (ca_pem, issuer) = new_ca();
    let server = new_leaf(
        &issuer,
        "localhost",
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = new_leaf(
        &issuer,
        "mongomirror-it-client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let files = TlsFiles {
        ca_file: dir.join("ca.pem"),
        server_cert_file: dir.join("server.pem"),
        server_key_file: dir.join("server.key"),
        client_pem_file: dir.join("client.pem"),
    };
    let write = |path: &Path, contents: String| {
        fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()))
    };
    write(&files.ca_file, ca_pem);
    write(&files.server_cert_file, server.0);
    write(&files.server_key_file, server.1);
    write(&files.client_pem_file, format!("{}{}", client.0, client.1));
    files
}

fn new_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "mongomirror-it test CA");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signing the CA");
    (cert.pem(), Issuer::new(params, key))
}

/// Returns (certificate PEM, private key PEM).
fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    subject_alt_names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(subject_alt_names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("signing a leaf");
    (cert.pem(), key.serialize_pem())
}
