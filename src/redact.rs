//! Keeping credentials out of every line we print.
//!
//! Two layers: URIs are redacted structurally before they are shown ([`redact_uri`]), and every
//! secret the operator handed us (passwords, key passwords, session tokens) is registered with
//! [`register_secret`] so that [`scrub`] can remove it from any text, including error messages
//! that come back from the driver or a server.

/// Runs `f` on the registered secrets: one list for the whole process.
#[cfg(not(test))]
fn with_secrets<R>(f: impl FnOnce(&mut Vec<String>) -> R) -> R {
    use std::sync::Mutex;
    static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    f(&mut SECRETS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Unit tests run in parallel threads of one process, and many register one-letter passwords:
/// each test thread keeps its own list, so that one test's secrets cannot mask another's text.
#[cfg(test)]
fn with_secrets<R>(f: impl FnOnce(&mut Vec<String>) -> R) -> R {
    thread_local! {
        static SECRETS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SECRETS.with(|s| f(&mut s.borrow_mut()))
}

/// The text shown in place of a credential.
pub const MASK: &str = "<redacted>";

/// Remembers a secret so that [`scrub`] removes it from all output. Empty strings are ignored.
pub fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    with_secrets(|list| {
        if !list.iter().any(|s| s == secret) {
            list.push(secret.to_string());
            // Longest first, so a secret that contains another is masked whole.
            list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    });
}

/// Replaces every registered secret in `text` with [`MASK`].
pub fn scrub(text: &str) -> String {
    with_secrets(|list| {
        let mut out = text.to_string();
        for s in list.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    })
}

/// Query options of a connection string whose values are secret.
const SECRET_URI_OPTIONS: &[&str] = &[
    "password",
    "tlscertificatekeyfilepassword",
    "sslpemkeypassword",
    "authmechanismproperties",
];

/// Returns `uri` with the user information and any secret query options masked.
///
/// `mongodb://user:pw@h1,h2/db?tls=true` becomes `mongodb://<redacted>@h1,h2/db?tls=true`.
/// Text that is not a URI is returned unchanged.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let (scheme, rest) = uri.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("{MASK}@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if SECRET_URI_OPTIONS.contains(&k.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{k}={MASK}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_credentials_are_masked() {
        assert_eq!(
            redact_uri("mongodb://bob:s3cret@h1:27017,h2/admin?replicaSet=rs0"),
            "mongodb://<redacted>@h1:27017,h2/admin?replicaSet=rs0"
        );
        assert_eq!(
            redact_uri("mongodb+srv://bob:p%40ss@cluster0.example.net/?tlsCertificateKeyFilePassword=kp&w=1"),
            "mongodb+srv://<redacted>@cluster0.example.net/?tlsCertificateKeyFilePassword=<redacted>&w=1"
        );
        assert_eq!(
            redact_uri("mongodb://h1/?tls=true"),
            "mongodb://h1/?tls=true"
        );
        assert_eq!(redact_uri("rs0/h1:1,h2:2"), "rs0/h1:1,h2:2");
    }

    #[test]
    fn registered_secrets_are_scrubbed() {
        register_secret("hunter2-unit");
        register_secret("");
        assert_eq!(
            scrub("auth failed for hunter2-unit twice: hunter2-unit"),
            "auth failed for <redacted> twice: <redacted>"
        );
        assert_eq!(scrub("nothing here"), "nothing here");
    }
}
