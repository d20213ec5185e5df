//! Registry TLS (start pipeline step 4): the system's CA store (read once per daemon) and a
//! registry's certs.d directory in (Docker's layout, `<certs_dir>/<host[:port]>/`: `*.crt` CA
//! roots, a `*.cert` client certificate with its `*.key`), an HTTP client out that trusts the
//! system's CAs (or, if it has none, the webpki roots compiled in) plus those CAs, and keeps the
//! TLS failures hyper would drop so that a failed pull can say what went wrong.

use std::fmt;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use tokio::net::TcpStream;

/// A certs.d directory or file that cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not PEM, or holds none of what its name promises.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refuses what the file holds (not an X.509 certificate, a key it cannot use, a
    /// key that does not match its certificate).
    #[error("{}: {what}: {source}", path.display())]
    Rejected {
        /// The file.
        path: PathBuf,
        /// What it was taken for.
        what: &'static str,
        /// The cause.
        source: rustls::Error,
    },
    /// Half a client certificate pair.
    #[error(
        "{}: {} is missing (a client certificate `X.cert` needs its key `X.key`; CA \
         certificates end in .crt)",
        present.display(),
        missing.display()
    )]
    Unpaired {
        /// The file that is there.
        present: PathBuf,
        /// Its missing partner.
        missing: PathBuf,
    },
    /// More than one client certificate: which to present would be a guess.
    #[error("{}: more than one client certificate ({first}, {second}); keep one", dir.display())]
    TwoClients {
        /// The registry's directory.
        dir: PathBuf,
        /// One file name.
        first: String,
        /// Another.
        second: String,
    },
    /// rustls could not be set up at all.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// The environment variables that replace the distribution's CA store (OpenSSL's names,
/// which `rustls-native-certs` honours as Go's crypto/x509 does).
const STORE_VARS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Where the CAs that every registry is trusted with come from, before its certs.d CAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The system's CA store: the files `SSL_CERT_FILE` and `SSL_CERT_DIR` name if either is
    /// set in the daemon's environment (`env`, as `NAME=value` pairs), else the distribution's
    /// (`/etc/ssl/certs/ca-certificates.crt` and `/etc/ssl/certs` on Debian).
    System {
        /// The variables that chose the files, if any did.
        env: Option<String>,
    },
    /// The Mozilla roots compiled into rcd (webpki-roots): the system store held no usable CA.
    Webpki,
}

impl fmt::Display for Origin {
    /// A noun phrase: "a CA of {origin}".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::System { env: None } => f.write_str("the system store"),
            Origin::System { env: Some(env) } => write!(f, "the system store ({env})"),
            Origin::Webpki => f.write_str(
                "the webpki roots compiled into rcd (the system store is empty or unreadable)",
            ),
        }
    }
}

/// The CAs every registry is trusted with, before its own certs.d CAs: the system's store, or
/// the webpki roots when that has no usable CA. Shared by every client built from it.
#[derive(Debug, Clone)]
pub struct Roots {
    store: Arc<rustls::RootCertStore>,
    origin: Origin,
}

/// What a load of the system store gave, besides the roots: for the daemon's log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The CAs taken from the store.
    pub added: usize,
    /// What was skipped and why: files that could not be read, PEM blocks that could not be
    /// decoded, certificates rustls refuses as trust anchors. The rest are used.
    pub skipped: Vec<String>,
}

impl Roots {
    /// The webpki roots alone.
    pub fn webpki() -> Self {
        Roots {
            store: Arc::new(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            origin: Origin::Webpki,
        }
    }

    /// The roots from what a read of the system store gave (`certs`, and `errors` naming files
    /// that could not be read), chosen by `env` (see [`Origin::System`]). A certificate rustls
    /// refuses is skipped, not fatal; a store with no usable CA gives the webpki roots.
    pub fn from_store(
        certs: Vec<CertificateDer<'static>>,
        errors: Vec<String>,
        env: Option<String>,
    ) -> (Self, Loaded) {
        let mut store = rustls::RootCertStore::empty();
        let mut skipped = errors;
        for cert in certs {
            let fingerprint = hex::encode(sha2::Sha256::digest(cert.as_ref()));
            if let Err(e) = store.add(cert) {
                skipped.push(format!("certificate sha256:{fingerprint}: {e}"));
            }
        }
        let loaded = Loaded {
            added: store.len(),
            skipped,
        };
        if store.is_empty() {
            return (Self::webpki(), loaded);
        }
        let roots = Roots {
            store: Arc::new(store),
            origin: Origin::System { env },
        };
        (roots, loaded)
    }

    /// Where they come from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// How many CAs they are.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Never true for roots built here (an empty store falls back to the webpki roots).
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// `SSL_CERT_FILE=...`, `SSL_CERT_DIR=...` as set in this process's environment, if either is.
fn store_env() -> Option<String> {
    let set: Vec<String> = STORE_VARS
        .iter()
        .filter_map(|name| {
            std::env::var_os(name).map(|v| format!("{name}={}", Path::new(&v).display()))
        })
        .collect();
    (!set.is_empty()).then(|| set.join(", "))
}

/// The daemon's roots: the system store, read at the first call (blocking: a few hundred files
/// on a Debian host; the daemon makes that call on a blocking thread at start) and kept for the
/// life of the process. What was skipped and a fallback to the webpki roots are logged then,
/// once. A CA added to the store later is used after a daemon restart.
pub fn system_roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let started = Instant::now();
        let env = store_env();
        let result = rustls_native_certs::load_native_certs();
        let errors = result.errors.iter().map(ToString::to_string).collect();
        let (roots, loaded) = Roots::from_store(result.certs, errors, env.clone());
        let took = started.elapsed();
        for what in &loaded.skipped {
            tracing::debug!("system CA store: skipped {what}");
        }
        if *roots.origin() == Origin::Webpki {
            let why = [env, loaded.skipped.first().cloned()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            tracing::info!(
                ?took,
                "the system CA store has no usable CA{}; registries are trusted through the {} \
                 webpki roots compiled into rcd, plus each registry's certs.d CAs",
                if why.is_empty() {
                    why
                } else {
                    format!(" ({why})")
                },
                roots.len(),
            );
        } else {
            if let Some(first) = loaded.skipped.first() {
                tracing::warn!(
                    "{}: skipped {} of its entries, the other {} CAs are used (the first: \
                     {first}; RCD_LOG=rcd=debug lists them all)",
                    roots.origin(),
                    loaded.skipped.len(),
                    loaded.added,
                );
            }
            tracing::info!(
                ?took,
                "registries are trusted through the {} CAs of {}, plus each registry's certs.d CAs",
                loaded.added,
                roots.origin(),
            );
        }
        roots
    })
}

/// What a registry's directory held when it was read: names, sizes, times and inodes of the
/// files that matter. A different stamp means a file was added, removed or replaced, so the
/// trust built from it is rebuilt without a daemon restart (Docker reads certs.d per pull too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<(String, u64, i64, i64, u64)>);

/// The directory for a registry: `certs_dir/<name>` for the first of `names` (the registry as
/// references name it, then the host connected to) that is a directory, with its stamp.
pub fn find(certs_dir: &Path, names: &[&str]) -> Result<Option<(PathBuf, Stamp)>, Error> {
    for name in names {
        // Registry names come from parsed references; this only keeps a name from leaving
        // certs_dir whatever the parser lets through.
        if name.is_empty() || *name == "." || *name == ".." || name.contains('/') {
            continue;
        }
        let dir = certs_dir.join(name);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {
                let stamp = stamp(&dir)?;
                return Ok(Some((dir, stamp)));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Read { path: dir, source }),
        }
    }
    Ok(None)
}

/// The files of `dir` that certs.d gives a meaning to, sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, std::fs::Metadata)>, Error> {
    let read = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !(name.ends_with(".crt") || name.ends_with(".cert") || name.ends_with(".key")) {
            continue;
        }
        let path = entry.path();
        // Followed: a symlink to a certificate elsewhere is common (Docker allows it too).
        let meta = std::fs::metadata(&path).map_err(|source| Error::Read { path, source })?;
        if meta.is_file() {
            out.push((name, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn stamp(dir: &Path) -> Result<Stamp, Error> {
    Ok(Stamp(
        entries(dir)?
            .into_iter()
            .map(|(n, m)| (n, m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
            .collect(),
    ))
}

/// A rustls client config (ring provider, safe default versions) trusting `roots`, plus, with
/// `dir`, its `*.crt` CAs and presenting its client certificate if it has one.
pub fn client_config(roots: &Roots, dir: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    // Shared as they are unless the directory adds a CA.
    let mut roots = roots.store.clone();
    let mut client: Option<(
        PathBuf,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    )> = None;
    if let Some(dir) = dir {
        let files = entries(dir)?;
        let mut clients = files.iter().filter(|(n, _)| n.ends_with(".cert"));
        if let (Some((first, _)), Some((second, _))) = (clients.next(), clients.next()) {
            return Err(Error::TwoClients {
                dir: dir.to_path_buf(),
                first: first.clone(),
                second: second.clone(),
            });
        }
        for (name, _) in &files {
            let path = dir.join(name);
            if name.ends_with(".crt") {
                for cert in certificates(&path)? {
                    Arc::make_mut(&mut roots)
                        .add(cert)
                        .map_err(|source| Error::Rejected {
                            path: path.clone(),
                            what: "not a usable CA certificate",
                            source,
                        })?;
                }
            } else if let Some(base) = name.strip_suffix(".cert") {
                let key = dir.join(format!("{base}.key"));
                if !files.iter().any(|(n, _)| *n == format!("{base}.key")) {
                    return Err(Error::Unpaired {
                        present: path,
                        missing: key,
                    });
                }
                client = Some((path.clone(), certificates(&path)?, private_key(&key)?));
            } else if let Some(base) = name.strip_suffix(".key") {
                if !files.iter().any(|(n, _)| *n == format!("{base}.cert")) {
                    let cert = dir.join(format!("{base}.cert"));
                    return Err(Error::Unpaired {
                        present: path,
                        missing: cert,
                    });
                }
            }
        }
    }
    // The provider is passed explicitly: no process-wide default is needed, so the graph
    // having another provider somewhere cannot make this panic (CRATES.md, trap 5).
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(Error::Setup)?
    .with_root_certificates(roots);
    match client {
        Some((path, chain, key)) => {
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| Error::Rejected {
                    path,
                    what: "not a usable client certificate and key",
                    source,
                })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Whether `dir` holds a client certificate (for an error's hint).
fn has_client_cert(dir: &Path) -> bool {
    entries(dir).is_ok_and(|files| files.iter().any(|(n, _)| n.ends_with(".cert")))
}

/// The certificates of a PEM file: at least one, every block well-formed.
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.to_path_buf(),
            reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| Error::Pem {
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----)".into()
            }
            e => format!("not a PEM private key file: {e}"),
        },
    })
}

/// The HTTP client registries are reached through.
pub type Http = HyperClient<Connector, Empty<Bytes>>;

/// An HTTP/1.1 client over `config`, and where the TLS failures of its connections are kept.
/// http:// URLs (insecure registries, plain token services and redirects) go through it
/// unencrypted, as the scheme chosen for them says.
pub fn http_client(config: rustls::ClientConfig) -> (Http, Failures) {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let failures = Failures::default();
    let connector = Connector {
        https,
        failures: failures.clone(),
    };
    (
        HyperClient::builder(TokioExecutor::new()).build(connector),
        failures,
    )
}

/// The last TLS failure on a client's connections after the handshake, and when. hyper drops a
/// connection's own error when the request meant for it had not gone out yet; a TLS 1.3 server
/// refuses a client certificate only after the handshake, and a quick one does so before the
/// request is sent: without this the pull would fail with "connection was not ready".
#[derive(Clone, Default)]
pub struct Failures(Arc<Mutex<Option<(Instant, rustls::Error)>>>);

impl Failures {
    fn record(&self, e: &std::io::Error) {
        if let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), tls.clone()));
        }
    }

    /// The TLS failure recorded at or after `start`, if any.
    pub fn since(&self, start: Instant) -> Option<rustls::Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| *at >= start)
            .map(|(_, e)| e.clone())
    }
}

/// hyper-rustls' connector, its connections wrapped to record their TLS failures.
#[derive(Clone)]
pub struct Connector {
    https: HttpsConnector<HttpConnector>,
    failures: Failures,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Recorded;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Recorded, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.https.call(dst);
        let failures = self.failures.clone();
        Box::pin(async move {
            Ok(Recorded {
                io: connecting.await?,
                failures,
            })
        })
    }
}

/// A connection whose I/O errors are offered to its client's `Failures`.
pub struct Recorded {
    io: MaybeHttpsStream<TokioIo<TcpStream>>,
    failures: Failures,
}

impl Recorded {
    fn note<T>(&self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            self.failures.record(e);
        }
        r
    }
}

impl hyper::rt::Read for Recorded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.note(r)
    }
}

impl hyper::rt::Write for Recorded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.note(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.note(r)
    }
}

impl Connection for Recorded {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

/// The rustls error behind a failed request, if TLS is what failed. tokio-rustls hands it up
/// inside an `io::Error`, whose `source()` skips it, hence the look inside.
pub fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = find_rustls(inner) {
                return Some(tls);
            }
        }
        cause = e.source();
    }
    None
}

/// What the operator can do about a TLS failure: where a private CA or a client certificate
/// goes (`suggested`, the registry's directory under certs_dir), or what was already used
/// (`origin`, the CAs every registry is trusted with, and `used`, the directory the registry's
/// own trust came from). Starts with "; ", or is empty.
pub fn hint(
    e: &rustls::Error,
    origin: &Origin,
    used: Option<&Path>,
    suggested: Option<PathBuf>,
) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            match (used, suggested) {
                (Some(dir), _) => format!(
                    "; it is signed by neither a CA of {origin} nor a CA in {}",
                    dir.display()
                ),
                (None, Some(dir)) => format!(
                    "; it is signed by no CA of {origin}; to trust a private CA, add it to the \
                     system store (update-ca-certificates) or put it in {}",
                    dir.join("ca.crt").display()
                ),
                (None, None) => format!(
                    "; it is signed by no CA of {origin}; to trust a private CA, add it to the \
                     system store (update-ca-certificates)"
                ),
            }
        }
        rustls::Error::AlertReceived(
            A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown,
        ) => match used {
            Some(dir) if has_client_cert(dir) => format!(
                "; the registry refused the client certificate in {}",
                dir.display()
            ),
            Some(dir) => format!(
                "; the registry may want a client certificate: client.cert and client.key in {}",
                dir.display()
            ),
            None => match suggested {
                Some(dir) => format!(
                    "; the registry may want a client certificate: client.cert and client.key \
                     in {}",
                    dir.display()
                ),
                None => "; the registry may want a client certificate".into(),
            },
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_found_and_explained() {
        use rustls::{AlertDescription, CertificateError};
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // As tokio-rustls and hyper hand it up: inside an io::Error, inside another error.
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let wrapped = Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            unknown.clone(),
        ));
        assert_eq!(find_rustls(&wrapped), Some(&unknown));
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(find_rustls(&refused), None);

        let dir = Path::new("/etc/rcd/certs.d/r:5000");
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("client.cert"), "").unwrap();
        let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        let system = Origin::System { env: None };
        // (the failure, the roots' origin, the directory used, the one suggested; the hint)
        type Case<'a> = (
            &'a rustls::Error,
            &'a Origin,
            Option<&'a Path>,
            Option<PathBuf>,
            &'a str,
        );
        let cases: [Case; 10] = [
            (
                &unknown,
                &system,
                None,
                Some(dir.into()),
                "; it is signed by no CA of the system store; to trust a private CA, add it to \
                 the system store (update-ca-certificates) or put it in \
                 /etc/rcd/certs.d/r:5000/ca.crt",
            ),
            (
                &unknown,
                &system,
                Some(dir),
                Some(dir.into()),
                "; it is signed by neither a CA of the system store nor a CA in \
                 /etc/rcd/certs.d/r:5000",
            ),
            (
                &unknown,
                &Origin::System {
                    env: Some("SSL_CERT_FILE=/tmp/bundle.pem".into()),
                },
                Some(dir),
                None,
                "; it is signed by neither a CA of the system store \
                 (SSL_CERT_FILE=/tmp/bundle.pem) nor a CA in /etc/rcd/certs.d/r:5000",
            ),
            (
                &unknown,
                &Origin::Webpki,
                Some(dir),
                None,
                "; it is signed by neither a CA of the webpki roots compiled into rcd (the \
                 system store is empty or unreadable) nor a CA in /etc/rcd/certs.d/r:5000",
            ),
            (
                &unknown,
                &system,
                None,
                None,
                "; it is signed by no CA of the system store; to trust a private CA, add it to \
                 the system store (update-ca-certificates)",
            ),
            (
                &required,
                &system,
                None,
                Some(dir.into()),
                "; the registry may want a client certificate: client.cert and client.key in \
                 /etc/rcd/certs.d/r:5000",
            ),
            (
                &required,
                &system,
                Some(dir),
                None,
                "; the registry may want a client certificate: client.cert and client.key in \
                 /etc/rcd/certs.d/r:5000",
            ),
            (
                &required,
                &system,
                Some(tmp.path()),
                None,
                "; the registry refused the client certificate in ",
            ),
            (
                &rustls::Error::InvalidCertificate(CertificateError::Expired),
                &system,
                Some(dir),
                None,
                "",
            ),
            (
                &rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                &Origin::Webpki,
                None,
                None,
                "; it is signed by no CA of the webpki roots compiled into rcd (the system \
                 store is empty or unreadable); to trust",
            ),
        ];
        for (e, origin, used, suggested, want) in cases {
            let hint = hint(e, origin, used, suggested);
            assert!(hint.starts_with(want), "{e:?} {used:?}: {hint}");
        }
    }

    /// A PEM block whose base64 is fine but whose content is not a certificate.
    const NOT_DER: &str =
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("r:5000")).unwrap();
        for (name, text) in files {
            std::fs::write(tmp.path().join("r:5000").join(name), text).unwrap();
        }
        tmp
    }

    #[test]
    fn finds_the_registry_directory_first_then_the_host() {
        let tmp = dir_with(&[]);
        std::fs::create_dir(tmp.path().join("host")).unwrap();
        std::fs::write(tmp.path().join("plainfile"), "").unwrap();
        let found = |names: &[&str]| find(tmp.path(), names).unwrap().map(|(d, _)| d);
        assert_eq!(found(&["r:5000", "host"]), Some(tmp.path().join("r:5000")));
        assert_eq!(found(&["other", "host"]), Some(tmp.path().join("host")));
        assert_eq!(found(&["other", "plainfile"]), None);
        assert_eq!(found(&["..", ".", "", "a/../r:5000"]), None);
        assert_eq!(
            find(&tmp.path().join("missing"), &["r:5000"]).unwrap(),
            None
        );
    }

    #[test]
    fn the_stamp_changes_when_a_file_does() {
        let tmp = dir_with(&[("ca.crt", "one"), ("README", "ignored")]);
        let dir = tmp.path().join("r:5000");
        let before = stamp(&dir).unwrap();
        assert_eq!(before.0.len(), 1, "{before:?}");
        std::fs::write(dir.join("README"), "still ignored").unwrap();
        assert_eq!(stamp(&dir).unwrap(), before);
        // Replaced by rename, as editors and config management do.
        std::fs::write(dir.join("new"), "two").unwrap();
        std::fs::rename(dir.join("new"), dir.join("ca.crt")).unwrap();
        assert_ne!(stamp(&dir).unwrap(), before);
    }

    #[test]
    fn an_empty_directory_adds_nothing_to_the_roots() {
        let tmp = dir_with(&[]);
        for roots in [Roots::webpki(), store_of(&[CA])] {
            let config = client_config(&roots, Some(&tmp.path().join("r:5000"))).unwrap();
            assert!(!config.client_auth_cert_resolver.has_certs());
            client_config(&roots, None).unwrap();
        }
    }

    /// A CA certificate (EC P-256, CA:TRUE, valid until 2126; its key was thrown away): what a
    /// system store holds.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUTzqWkvGHGNbE0JHJdmiL+4fEhgYwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcmNkIHVuaXQgdGVzdCBDQTAgFw0yNjEyMDQxMTM3NDRaGA8y
MTI2MTExMDExMzc0NFowGzEZMBcGA1UEAwwQcmNkIHVuaXQgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABEDEDkXYuVkaWW1zYJxmiBJ1Vk8VAEgsh6ZM
HcNzpxxP49KI9SjH50fo4OdPVm8rPiJnEVKYnyYLHWzcW6vAYTajUzBRMB0GA1Ud
DgQWBBSSKtKaFb7/jOdhy4O37IjpDCWTpTAfBgNVHSMEGDAWgBSSKtKaFb7/jOdh
y4O37IjpDCWTpTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDD
Ld0UlcwnOD/PJIu0a+UXNfe4t7CvpE1pJgZFo+d48AIgKYjYciUM4SOcRMVspE3D
npJ4b6fDx7SNiUvxUeSYhOE=
-----END CERTIFICATE-----
";

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// System roots of the PEM certificates `pems`.
    fn store_of(pems: &[&str]) -> Roots {
        let (roots, loaded) =
            Roots::from_store(pems.iter().map(|p| der(p)).collect(), vec![], None);
        assert!(loaded.skipped.is_empty(), "{loaded:?}");
        roots
    }

    #[test]
    fn the_system_store_is_used_and_its_bad_entries_skipped() {
        let webpki = webpki_roots::TLS_SERVER_ROOTS.len();
        let fingerprint = hex::encode(sha2::Sha256::digest(der(NOT_DER).as_ref()));
        let unreadable = "failed to read PEM from file: denied at '/etc/ssl/certs/x.pem'";
        let env = Some("SSL_CERT_FILE=/b.pem".to_string());
        // (certificates, load errors, env; the origin, how many roots, what was skipped)
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            Option<String>,
            Origin,
            usize,
            &'a [&'a str],
        );
        let cases: [Case; 6] = [
            (&[CA], &[], None, Origin::System { env: None }, 1, &[]),
            (
                &[CA],
                &[],
                env.clone(),
                Origin::System { env: env.clone() },
                1,
                &[],
            ),
            // A certificate rustls refuses and a file that cannot be read: skipped, the rest used.
            (
                &[NOT_DER, CA],
                &[unreadable],
                None,
                Origin::System { env: None },
                1,
                &[unreadable, &format!("certificate sha256:{fingerprint}: ")],
            ),
            // Nothing usable: the webpki roots, whatever the environment named.
            (&[], &[], None, Origin::Webpki, webpki, &[]),
            (
                &[],
                &[unreadable],
                env.clone(),
                Origin::Webpki,
                webpki,
                &[unreadable],
            ),
            (
                &[NOT_DER],
                &[],
                None,
                Origin::Webpki,
                webpki,
                &["certificate sha256:"],
            ),
        ];
        for (certs, errors, env, origin, len, skipped) in cases {
            let (roots, loaded) = Roots::from_store(
                certs.iter().map(|p| der(p)).collect(),
                errors.iter().map(ToString::to_string).collect(),
                env,
            );
            assert_eq!(roots.origin(), &origin, "{certs:?} {errors:?}");
            assert_eq!(roots.len(), len, "{certs:?} {errors:?}");
            let added = if origin == Origin::Webpki { 0 } else { len };
            assert_eq!(loaded.added, added, "{certs:?} {errors:?}");
            assert_eq!(loaded.skipped.len(), skipped.len(), "{loaded:?}");
            for (got, want) in loaded.skipped.iter().zip(skipped) {
                assert!(
                    got.starts_with(want),
                    "{got:?} does not start with {want:?}"
                );
            }
        }
    }

    #[test]
    fn a_bundle_with_broken_entries_keeps_the_rest() {
        // Read as the daemon reads SSL_CERT_FILE, by rustls-native-certs: a block that is not
        // base64, one that is no certificate, text between blocks, then a good CA.
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle.pem");
        let garbled = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        std::fs::write(&bundle, format!("{garbled}{NOT_DER}\nsome comment\n{CA}")).unwrap();
        let result = rustls_native_certs::load_certs_from_paths(Some(&bundle), None);
        let errors = result.errors.iter().map(ToString::to_string).collect();
        let (roots, loaded) = Roots::from_store(result.certs, errors, None);
        assert_eq!(roots.origin(), &Origin::System { env: None });
        assert_eq!((roots.len(), loaded.added), (1, 1), "{loaded:?}");
        assert_eq!(loaded.skipped.len(), 2, "{loaded:?}");
        assert!(loaded.skipped[0].contains("base64"), "{loaded:?}");
        assert!(loaded.skipped[1].contains("BadEncoding"), "{loaded:?}");

        // A file that is not there: nothing usable, the webpki roots.
        let result =
            rustls_native_certs::load_certs_from_paths(Some(&tmp.path().join("missing")), None);
        let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
        assert!(errors[0].contains("missing"), "{errors:?}");
        let (roots, _) = Roots::from_store(result.certs, errors, None);
        assert_eq!(roots.origin(), &Origin::Webpki);
    }

    #[test]
    fn a_registry_ca_goes_into_a_copy_of_the_shared_roots() {
        let roots = store_of(&[CA]);
        let tmp = dir_with(&[]);
        let dir = tmp.path().join("r:5000");
        // Without a CA of its own a registry's config shares the roots...
        let config = client_config(&roots, Some(&dir)).unwrap();
        assert_eq!(Arc::strong_count(&roots.store), 2);
        drop(config);
        // ... with one, it has its own copy, and the shared roots stay as they were.
        std::fs::write(dir.join("ca.crt"), CA).unwrap();
        let config = client_config(&roots, Some(&dir)).unwrap();
        assert_eq!(Arc::strong_count(&roots.store), 1);
        assert_eq!(roots.len(), 1);
        drop(config);
    }

    #[test]
    fn origins_read_as_what_a_ca_is_of() {
        let cases = [
            (Origin::System { env: None }, "the system store"),
            (
                Origin::System {
                    env: Some("SSL_CERT_FILE=/b.pem, SSL_CERT_DIR=/d".into()),
                },
                "the system store (SSL_CERT_FILE=/b.pem, SSL_CERT_DIR=/d)",
            ),
            (
                Origin::Webpki,
                "the webpki roots compiled into rcd (the system store is empty or unreadable)",
            ),
        ];
        for (origin, want) in cases {
            assert_eq!(origin.to_string(), want);
        }
    }

    #[test]
    fn bad_files_are_errors_naming_them() {
        // (files in the directory, the file the error names, words in it)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 6] = [
            (
                &[("ca.crt", "garbage\n")],
                "ca.crt",
                "holds no PEM certificate",
            ),
            (
                &[(
                    "ca.crt",
                    "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                )],
                "ca.crt",
                "not a PEM certificate file",
            ),
            (
                &[("extra.crt", NOT_DER)],
                "extra.crt",
                "not a usable CA certificate",
            ),
            (
                &[("client.cert", NOT_DER)],
                "client.cert",
                "client.key is missing",
            ),
            (
                &[("client.key", "x")],
                "client.key",
                "client.cert is missing",
            ),
            (
                &[("client.cert", NOT_DER), ("client.key", "no key here")],
                "client.key",
                "holds no PEM private key",
            ),
        ];
        for (files, file, words) in cases {
            let tmp = dir_with(files);
            let err = client_config(&Roots::webpki(), Some(&tmp.path().join("r:5000")))
                .expect_err(file)
                .to_string();
            let path = tmp.path().join("r:5000").join(file);
            assert!(
                err.starts_with(&path.display().to_string()) && err.contains(words),
                "{files:?}: {err}"
            );
        }
        let tmp = dir_with(&[("a.cert", ""), ("a.key", ""), ("b.cert", ""), ("b.key", "")]);
        let err = client_config(&Roots::webpki(), Some(&tmp.path().join("r:5000"))).unwrap_err();
        assert!(matches!(err, Error::TwoClients { .. }), "{err}");
        assert!(err.to_string().contains("a.cert, b.cert"), "{err}");
    }
}
