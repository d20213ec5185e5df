//! Pulling (start pipeline step 4): a reference in, verified blobs in the content store out.
//! An OCI distribution client: manifests (OCI and Docker v2 schema 2, indexes and manifest
//! lists resolved to this host's platform), the config and the layers, every one checked
//! against its digest and size before anything uses it. Anonymous, Bearer-token and basic auth.
//! HTTPS trusts the system's CA store (or, if it has none, the webpki roots) plus the registry's
//! certs.d CAs, and presents its client certificate if it has one ([`super::tls`]); plain HTTP
//! only for registries marked insecure and loopback ones without a certs.d directory, and never
//! as a fallback from HTTPS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use tokio_util::sync::CancellationToken;

use super::content::{self, ContentStore};
use super::digest::{self, Digest};
use super::pins::Pin;
use super::platform::{self, Want};
use super::progress::Progress;
use super::reference::{self, Reference};
use super::snapshot::{self, LayerRef, Snapshots, Streaming};
use super::tls::{self, Failures, Http};

/// The largest manifest or index rcd accepts (containerd's limit too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config rcd accepts.
pub const MAX_CONFIG: u64 = 8 << 20;
/// The largest token-endpoint answer read.
const MAX_TOKEN: u64 = 1 << 20;
/// The largest error body kept for a message.
const MAX_ERROR_BODY: usize = 1024;
/// Redirects followed for one request (blob downloads are often redirected to a CDN).
const MAX_REDIRECTS: usize = 5;

/// Manifest media types.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A pull that failed; each names the registry and repository, and what the registry said.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed (refused, reset, DNS; TLS failures are `Handshake`).
    #[error("registry {registry}: {url}: {}", with_causes(source))]
    Connect {
        /// The registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// The cause.
        source: hyper_util::client::legacy::Error,
    },
    /// The registry sent nothing for the idle timeout.
    #[error("registry {registry}: {url}: nothing received for {after:?}; gave up")]
    Stalled {
        /// The registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// The idle timeout.
        after: Duration,
    },
    /// The response body broke off.
    #[error(
        "registry {registry}: {url}: reading the response: {}",
        with_causes(source)
    )]
    Body {
        /// The registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// The cause.
        source: hyper::Error,
    },
    /// The registry answered with an error status.
    #[error("registry {registry}: {repository}: {what}: HTTP {status}: {body}")]
    Status {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What was asked for (`manifest latest`, `blob sha256:...`).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the registry's error body.
        body: String,
    },
    /// The registry asks to slow down (HTTP 429 or 503), perhaps saying for how long.
    #[error("registry {registry}: {repository}: {what}: HTTP {status}: too many requests{}",
        retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What was asked for.
        what: String,
        /// 429 or 503.
        status: u16,
        /// Its `Retry-After`, in seconds.
        retry_after: Option<Duration>,
    },
    /// The registry refused the credentials (or wants some and none are configured).
    #[error(
        "registry {registry}: {repository}: authentication failed (HTTP {status}){hint}: {body}"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// 401 or 403.
        status: u16,
        /// "; no credentials configured for it" when there are none.
        hint: &'static str,
        /// The start of the registry's (or token service's) error body.
        body: String,
    },
    /// The token service could not be used.
    #[error("registry {registry}: token from {realm}: {reason}")]
    Token {
        /// The registry host.
        registry: String,
        /// The token service's URL.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// A manifest or config is larger than rcd accepts.
    #[error(
        "registry {registry}: {repository}: {what} is {size} bytes, more than the {limit} allowed"
    )]
    TooLarge {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What it is.
        what: String,
        /// Its size (or the size read so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest's content does not have the digest it was asked for by.
    #[error(
        "registry {registry}: {repository}: manifest {expected} has digest {actual}; refusing it"
    )]
    ManifestDigest {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what was served.
        actual: Digest,
    },
    /// A digest in a reference or manifest is not one rcd accepts.
    #[error("registry {registry}: {repository}: {source}")]
    BadDigest {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The cause.
        source: digest::ParseError,
    },
    /// A manifest that cannot be used (unparsable, an unsupported type, a size mismatch).
    #[error("registry {registry}: {repository}: manifest {digest}: {reason}")]
    Manifest {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The manifest's digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// The image has no build for this host.
    #[error("registry {registry}: {repository}: index {digest} has no image for {want}")]
    NoPlatform {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The index's digest.
        digest: Digest,
        /// The platform wanted (`linux/amd64`).
        want: String,
    },
    /// A blob failed verification or could not be stored.
    #[error("registry {registry}: {repository}: {}", blob_cause(digest, source))]
    Store {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: Digest,
        /// The cause (a digest or size mismatch, an I/O error).
        source: Box<content::Error>,
    },
    /// A layer could not be unpacked into a snapshot (unsafe, malformed, not its DiffID, or
    /// the disk is full).
    #[error("registry {registry}: {repository}: unpack into {}: {source}", dir.display())]
    Unpack {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The snapshots directory, so that "No space left on device" says which filesystem.
        dir: PathBuf,
        /// The cause; it names the layer.
        source: Box<snapshot::Error>,
    },
    /// Another layer of the same pull failed first; that error is the one a pull returns.
    #[error("registry {registry}: {repository}: blob {digest}: stopped, another layer failed")]
    Cancelled {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob whose download stopped.
        digest: Digest,
    },
    /// The HTTPS client could not be set up.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The TLS handshake failed: the registry's certificate is not trusted or not for its name,
    /// or it wants a client certificate. Never retried over plain HTTP.
    #[error("registry {registry}: {url}: TLS handshake failed: {source}{hint}")]
    Handshake {
        /// The registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// rustls' reason.
        source: Box<rustls::Error>,
        /// What the operator can do about it ("; to trust a private CA, put it in ..."), or "".
        hint: String,
    },
    /// The registry's certs.d directory cannot be used.
    #[error("registry {registry}: certs.d: {source}")]
    Certs {
        /// The registry host.
        registry: String,
        /// The cause, naming the file.
        source: Box<tls::Error>,
    },
    /// A URL that cannot be requested (a bad realm, a bad redirect).
    #[error("registry {registry}: invalid URL {url:?}")]
    Url {
        /// The registry host.
        registry: String,
        /// The URL.
        url: String,
    },
}

/// What the client may do beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Registries (`host[:port]`) reached over plain HTTP, besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials by registry as references name it (`docker.io`, `host:5000`): user, password.
    pub credentials: HashMap<String, (String, String)>,
    /// How long a registry may send nothing (no headers, no body bytes) before the pull fails;
    /// None is `DEFAULT_IDLE`. A pull is never cut while bytes flow, however long it takes.
    pub idle_timeout: Option<Duration>,
    /// Docker's certs.d: `<certs_dir>/<host[:port]>/*.crt` are extra CA roots for that registry,
    /// and a `X.cert` + `X.key` pair (Docker: `client.cert`, `client.key`) its client certificate.
    /// A registry with a directory here is reached over HTTPS, even on loopback. None: no extra
    /// trust (the daemon's default is `/etc/rcd/certs.d`).
    pub certs_dir: Option<PathBuf>,
}

/// How long a silent registry is waited for.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// One layer of a pulled image, stored and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type (gzip, zstd, plain tar; OCI or Docker names).
    pub media_type: String,
}

/// A pulled image: everything named here is in the content store and verified.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The index or manifest list the tag named, if it named one.
    pub index_digest: Option<Digest>,
    /// The image manifest for this platform.
    pub manifest_digest: Digest,
    /// The image config blob.
    pub config_digest: Digest,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The parsed image config.
    pub config: ImageConfiguration,
}

/// How one registry is reached: the scheme, and the HTTP client holding its TLS trust.
struct Route {
    scheme: &'static str,
    /// Every request of a pull from the registry goes through it, its token service and
    /// redirects included, as Docker uses one transport per registry.
    http: Http,
    failures: Failures,
    /// The registry's certs.d directory, if it has one and it is used.
    certs: Option<PathBuf>,
}

/// A registry's HTTP client, and the certs.d directory (with its stamp) it was built from.
struct Cached {
    certs: Option<(PathBuf, tls::Stamp)>,
    http: Http,
    failures: Failures,
}

/// Where requests for one repository go.
struct Target<'a> {
    /// The registry as references name it (credentials are keyed by it).
    registry: &'a str,
    /// The host to connect to.
    host: &'a str,
    repository: &'a str,
    route: Route,
}

impl Target<'_> {
    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}/v2/{}/{}",
            self.route.scheme, self.host, self.repository, path
        )
    }
}

/// A registry client. Cheap to share (`Arc`); concurrent pulls through one client download
/// each blob once.
pub struct Client {
    /// HTTP clients by registry, built at its first pull and again whenever its certs.d
    /// directory's files change.
    routes: Mutex<HashMap<String, Cached>>,
    config: ClientConfig,
    /// Credentials by registry; replaceable while pulls run.
    credentials: RwLock<HashMap<String, (String, String)>>,
    /// `Authorization` values by `host/repository`, learnt from challenges.
    auth: Mutex<HashMap<String, HeaderValue>>,
    /// One lock per blob being fetched: the second puller waits and then finds it stored.
    blob_locks: crate::keyed::Keyed<Digest, tokio::sync::Mutex<()>>,
}

impl Client {
    /// A client; HTTPS through rustls with the ring provider, the system's CA store (read at
    /// the first HTTPS connection unless the daemon read it before, see
    /// [`tls::system_roots`]) and, per registry, its certs.d CAs and client certificate.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        Ok(Client {
            routes: Mutex::new(HashMap::new()),
            credentials: RwLock::new(config.credentials.clone()),
            config,
            auth: Mutex::new(HashMap::new()),
            blob_locks: crate::keyed::Keyed::default(),
        })
    }

    /// Where `reference` lives, and how to reach it.
    fn target<'r>(&self, reference: &'r Reference) -> Result<Target<'r>, Error> {
        let registry = reference.registry();
        let host = api_host(reference);
        Ok(Target {
            registry,
            host,
            repository: reference.repository(),
            route: self.route(registry, host)?,
        })
    }

    /// The digest `reference`'s tag names now (an index's, or a manifest's), from one HEAD
    /// request: nothing is downloaded. A registry that sends no `Docker-Content-Digest` is
    /// asked with a GET, and the manifest hashed.
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest, Error> {
        let target = self.target(reference)?;
        let by = reference.tag().unwrap_or("latest").to_string();
        let url = target.url(&format!("manifests/{by}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        let what = format!("manifest {by}");
        let resp = self
            .call(http::Method::HEAD, &target, &url, &headers, &what)
            .await?;
        let named = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        match named {
            Some(d) => Ok(d),
            None => self.manifest(&target, &by, None).await.map(|(_, d, _)| d),
        }
    }

    /// Pulls `reference` for `want` into `store`: manifest(s), config and layers, each verified.
    /// Blobs already in the store are not fetched again.
    pub async fn pull(
        &self,
        reference: &Reference,
        store: &ContentStore,
        want: &Want,
        progress: &Progress,
    ) -> Result<Pulled, Error> {
        self.pull_into(reference, store, None, want, progress, None)
            .await
    }

    /// Pulls as [`Client::pull`] does and also leaves every layer unpacked in `snapshots`. Each
    /// layer unpacks while it downloads, all layers at once: its bytes go both to the content
    /// store and to an unpacker, and its snapshot is admitted only once the blob's digest and
    /// size and the unpacked stream's DiffID all match. Layers already stored (or resumed from
    /// a partial download) are unpacked from the store afterwards. Every blob and snapshot
    /// the pull uses is added to `pin` before the pull looks whether it is there, so that
    /// garbage collection running meanwhile leaves it.
    pub async fn pull_and_unpack(
        &self,
        reference: &Reference,
        store: &ContentStore,
        snapshots: &Snapshots,
        want: &Want,
        progress: &Progress,
        pin: &Pin,
    ) -> Result<Pulled, Error> {
        self.pull_into(reference, store, Some(snapshots), want, progress, Some(pin))
            .await
    }

    async fn pull_into(
        &self,
        reference: &Reference,
        store: &ContentStore,
        snapshots: Option<&Snapshots>,
        want: &Want,
        progress: &Progress,
        pin: Option<&Pin>,
    ) -> Result<Pulled, Error> {
        let pin_blob = |d: &Digest| {
            if let Some(p) = pin {
                p.blob(d);
            }
        };
        let target = self.target(reference)?;
        let registry = target.registry;
        let bad_digest = |source| Error::BadDigest {
            registry: registry.to_string(),
            repository: target.repository.to_string(),
            source,
        };
        let pinned: Option<Digest> = reference
            .digest()
            .map(str::parse)
            .transpose()
            .map_err(bad_digest)?;
        let by = match (&pinned, reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };

        let (body, digest, kind) = self.manifest(&target, &by, pinned.as_ref()).await?;
        pin_blob(&digest);
        let (index_digest, manifest, manifest_digest, manifest_body) = match kind {
            Kind::Manifest => (
                None,
                self.parse_manifest(&target, &digest, &body)?,
                digest,
                body,
            ),
            Kind::Index => {
                let index: ImageIndex = serde_json::from_slice(&body)
                    .map_err(|e| self.manifest_err(&target, &digest, format!("bad index: {e}")))?;
                let chosen =
                    platform::choose(index.manifests(), want).ok_or_else(|| Error::NoPlatform {
                        registry: registry.to_string(),
                        repository: target.repository.to_string(),
                        digest,
                        want: describe(want),
                    })?;
                let child: Digest = chosen.digest().to_string().parse().map_err(bad_digest)?;
                pin_blob(&child);
                let (child_body, _, child_kind) = self
                    .manifest(&target, &child.to_string(), Some(&child))
                    .await?;
                if child_body.len() as u64 != chosen.size() {
                    return Err(self.manifest_err(
                        &target,
                        &child,
                        format!(
                            "is {} bytes, the index says {}",
                            child_body.len(),
                            chosen.size()
                        ),
                    ));
                }
                if child_kind != Kind::Manifest {
                    return Err(self.manifest_err(
                        &target,
                        &child,
                        "an index inside an index is not supported".into(),
                    ));
                }
                self.put(&target, store, &digest, &body)?;
                let manifest = self.parse_manifest(&target, &child, &child_body)?;
                (Some(digest), manifest, child, child_body)
            }
        };

        // The config: bounded, stored verified, then parsed from what the store holds.
        let cfg = manifest.config();
        let config_digest: Digest = cfg.digest().to_string().parse().map_err(bad_digest)?;
        if cfg.size() > MAX_CONFIG {
            return Err(Error::TooLarge {
                registry: registry.to_string(),
                repository: target.repository.to_string(),
                what: format!("config {config_digest}"),
                size: cfg.size(),
                limit: MAX_CONFIG,
            });
        }
        let mut layers = Vec::new();
        for l in manifest.layers() {
            layers.push(Layer {
                digest: l.digest().to_string().parse().map_err(bad_digest)?,
                size: l.size(),
                media_type: l.media_type().to_string(),
            });
        }
        pin_blob(&config_digest);
        for l in &layers {
            pin_blob(&l.digest);
        }
        self.blob(
            &target,
            store,
            &config_digest,
            cfg.size(),
            None,
            None,
            &CancellationToken::new(),
        )
        .await?;
        let config_bytes = store
            .read(&config_digest)
            .map_err(|e| self.store_err(&target, &config_digest, e))?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|e| {
            self.manifest_err(
                &target,
                &manifest_digest,
                format!("config {config_digest} is not an image config: {e}"),
            )
        })?;

        let unpack = match snapshots {
            Some(s) => self
                .unpack_plan(&target, &manifest_digest, &config, &layers)?
                .into_iter()
                .map(|(layer, chain)| {
                    Some(UnpackTo {
                        snapshots: s,
                        layer,
                        chain,
                    })
                })
                .collect(),
            None => vec![None; layers.len()],
        };
        if let Some(p) = pin {
            for to in unpack.iter().flatten() {
                p.chain(&to.chain);
            }
        }

        // Layers in parallel; each blob under its own lock. The first failure stops the others
        // (at their next chunk), and the pull returns once they have cleaned up.
        progress.begin(&layers.iter().map(|l| l.size).collect::<Vec<_>>());
        let cancel = CancellationToken::new();
        let results = futures_util::future::join_all(layers.iter().zip(&unpack).map(|(l, to)| {
            let (target, cancel) = (&target, &cancel);
            async move {
                let r = self
                    .layer(target, store, l, to.as_ref(), progress, cancel)
                    .await;
                if r.is_err() {
                    cancel.cancel();
                }
                r
            }
        }))
        .await;
        let mut errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            // The failure that stopped the others, not one of the stops.
            let first = errors
                .iter()
                .position(|e| !matches!(e, Error::Cancelled { .. }))
                .unwrap_or(0);
            return Err(errors.swap_remove(first));
        }

        // The manifest last: its presence says the image is complete.
        self.put(&target, store, &manifest_digest, &manifest_body)?;
        Ok(Pulled {
            index_digest,
            manifest_digest,
            config_digest,
            layers,
            config,
        })
    }

    fn manifest_err(&self, t: &Target<'_>, digest: &Digest, reason: String) -> Error {
        Error::Manifest {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            digest: *digest,
            reason,
        }
    }

    fn store_err(&self, t: &Target<'_>, digest: &Digest, source: content::Error) -> Error {
        Error::Store {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            digest: *digest,
            source: Box::new(source),
        }
    }

    fn unpack_err(&self, t: &Target<'_>, to: &UnpackTo<'_>, source: snapshot::Error) -> Error {
        Error::Unpack {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            dir: to.snapshots.dir().to_path_buf(),
            source: Box::new(source),
        }
    }

    fn cancelled(&self, t: &Target<'_>, digest: &Digest) -> Error {
        Error::Cancelled {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            digest: *digest,
        }
    }

    /// Each layer with its DiffID from the config and its chain id: where it unpacks to.
    fn unpack_plan(
        &self,
        t: &Target<'_>,
        manifest: &Digest,
        config: &ImageConfiguration,
        layers: &[Layer],
    ) -> Result<Vec<(LayerRef, Digest)>, Error> {
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(self.manifest_err(
                t,
                manifest,
                format!(
                    "{} layers but {} DiffIDs in its config",
                    layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let diff_ids = diff_ids
            .iter()
            .map(|d| d.parse())
            .collect::<Result<Vec<Digest>, _>>()
            .map_err(|source| Error::BadDigest {
                registry: t.registry.to_string(),
                repository: t.repository.to_string(),
                source,
            })?;
        let chains = snapshot::chain_ids(&diff_ids);
        Ok(layers
            .iter()
            .zip(diff_ids)
            .zip(chains)
            .map(|((l, diff_id), chain)| {
                (
                    LayerRef {
                        blob: l.digest,
                        diff_id,
                    },
                    chain,
                )
            })
            .collect())
    }

    /// One layer: its blob stored and, if asked, its snapshot made (while it streams, or from
    /// the store when the blob was there already or the download resumed a partial one).
    async fn layer(
        &self,
        t: &Target<'_>,
        store: &ContentStore,
        l: &Layer,
        to: Option<&UnpackTo<'_>>,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let streamed = self
            .blob(t, store, &l.digest, l.size, Some(progress), to, cancel)
            .await?;
        let Some(to) = to.filter(|_| !streamed) else {
            return Ok(());
        };
        if to.snapshots.path(&to.chain).is_dir() {
            return Ok(());
        }
        let (snapshots, layer, chain, s) =
            (to.snapshots.clone(), to.layer, to.chain, store.clone());
        tokio::task::spawn_blocking(move || snapshots.ensure(&layer, &chain, &s))
            .await
            .map_err(|e| {
                self.unpack_err(
                    t,
                    to,
                    snapshot::Error::Lost {
                        blob: l.digest,
                        reason: e.to_string(),
                    },
                )
            })?
            .map_err(|e| self.unpack_err(t, to, e))?;
        Ok(())
    }

    fn put(
        &self,
        t: &Target<'_>,
        store: &ContentStore,
        digest: &Digest,
        body: &[u8],
    ) -> Result<(), Error> {
        if !store.has(digest) {
            store
                .put(digest, body)
                .map_err(|e| self.store_err(t, digest, e))?;
        }
        Ok(())
    }

    fn parse_manifest(
        &self,
        t: &Target<'_>,
        digest: &Digest,
        body: &[u8],
    ) -> Result<ImageManifest, Error> {
        serde_json::from_slice(body)
            .map_err(|e| self.manifest_err(t, digest, format!("bad image manifest: {e}")))
    }

    /// GETs a manifest by tag or digest: bounded, hashed, checked against `expected`.
    async fn manifest(
        &self,
        t: &Target<'_>,
        by: &str,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest, Kind), Error> {
        let what = format!("manifest {by}");
        let url = t.url(&format!("manifests/{by}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        let resp = self.get(t, &url, &headers, &what).await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let body = self
            .read_limited(t, &url, resp, MAX_MANIFEST, &what)
            .await?;
        let actual = Digest::of(&body);
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(Error::ManifestDigest {
                    registry: t.registry.to_string(),
                    repository: t.repository.to_string(),
                    expected: *expected,
                    actual,
                });
            }
        }
        let kind = manifest_kind(content_type.as_deref(), &body)
            .map_err(|reason| self.manifest_err(t, &actual, reason))?;
        Ok((body, actual, kind))
    }

    /// Makes sure blob `digest` of `size` bytes is in the store, downloading (or resuming) it
    /// once however many pulls want it at the same time. With `unpack`, a download from the
    /// first byte also unpacks it; true when that made the snapshot.
    #[allow(clippy::too_many_arguments)]
    async fn blob(
        &self,
        t: &Target<'_>,
        store: &ContentStore,
        digest: &Digest,
        size: u64,
        progress: Option<&Progress>,
        unpack: Option<&UnpackTo<'_>>,
        cancel: &CancellationToken,
    ) -> Result<bool, Error> {
        let lock = self.blob_locks.enter(digest);
        let result = async {
            let _held = tokio::select! {
                held = lock.lock() => held,
                () = cancel.cancelled() => return Err(self.cancelled(t, digest)),
            };
            if store.has(digest) {
                if let Some(p) = progress {
                    p.add_bytes(size);
                }
                Ok(false)
            } else {
                let go = || self.download(t, store, digest, size, progress, unpack, cancel);
                match go().await {
                    // A resumed download that fails verification may owe it to the earlier
                    // attempt's bytes: the partial is gone now, so one clean try remains.
                    Err(Resumed(true, _)) => go().await.map_err(|Resumed(_, e)| e),
                    other => other.map_err(|Resumed(_, e)| e),
                }
            }
        }
        .await;
        if let (Ok(_), Some(p)) = (&result, progress) {
            p.layer_done();
        }
        drop(lock);
        result
    }

    /// One attempt at a blob; the bytes it reports to `progress` are taken back if it fails.
    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        t: &Target<'_>,
        store: &ContentStore,
        digest: &Digest,
        size: u64,
        progress: Option<&Progress>,
        unpack: Option<&UnpackTo<'_>>,
        cancel: &CancellationToken,
    ) -> Result<bool, Resumed> {
        let counted = AtomicU64::new(0);
        let count = |n: i64| {
            if let Some(p) = progress {
                if n >= 0 {
                    p.add_bytes(n as u64);
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                } else {
                    p.sub_bytes(n.unsigned_abs());
                    counted.fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
                }
            }
        };
        let result = self
            .attempt(t, store, digest, size, &count, unpack, cancel)
            .await;
        if let (Err(_), Some(p)) = (&result, progress) {
            p.sub_bytes(counted.load(Ordering::Relaxed));
        }
        result
    }

    /// Downloads the rest of a blob into `ingest` and commits it; with `unpack`, and when the
    /// download starts from the first byte, tees every chunk into a streaming unpack and admits
    /// the snapshot only if the blob verifies. True when the snapshot was made here.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        t: &Target<'_>,
        store: &ContentStore,
        digest: &Digest,
        size: u64,
        count: &(dyn Fn(i64) + Sync),
        unpack: Option<&UnpackTo<'_>>,
        cancel: &CancellationToken,
    ) -> Result<bool, Resumed> {
        let fail = |e| Resumed(false, e);
        let (s, d) = (store.clone(), *digest);
        let mut ingest = tokio::task::spawn_blocking(move || s.ingest(&d, size))
            .await
            .map_err(|e| fail(self.store_err(t, digest, io_join(e))))?
            .map_err(|e| fail(self.store_err(t, digest, e)))?;
        let offset = ingest.offset();
        count(offset as i64);
        let (resumed, streaming) = if offset < size {
            self.receive(t, store, digest, count, &mut ingest, unpack, cancel)
                .await?
        } else {
            // The earlier attempt had it all; commit verifies it.
            (true, None)
        };
        let d = *digest;
        let committed = tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| Resumed(resumed, self.store_err(t, &d, io_join(e))))
            .and_then(|r| r.map_err(|e| Resumed(resumed, self.store_err(t, &d, e))));
        let (Some(streaming), Some(to)) = (streaming, unpack) else {
            return committed.map(|_| false);
        };
        let unpacked = streaming.finish(committed.is_ok()).await;
        committed?;
        unpacked.map_err(|e| fail(self.unpack_err(t, to, e)))?;
        Ok(true)
    }

    /// GETs blob `digest` from `ingest`'s offset and writes the body into it (and into a
    /// streaming unpack, when one is asked for and the body starts at the first byte). Returns
    /// whether the body resumed an earlier attempt, and the unpack to finish.
    #[allow(clippy::too_many_arguments)]
    async fn receive(
        &self,
        t: &Target<'_>,
        store: &ContentStore,
        digest: &Digest,
        count: &(dyn Fn(i64) + Sync),
        ingest: &mut content::Ingest,
        unpack: Option<&UnpackTo<'_>>,
        cancel: &CancellationToken,
    ) -> Result<(bool, Option<Streaming>), Resumed> {
        let fail = |e| Resumed(false, e);
        let offset = ingest.offset();
        let resumed = offset > 0;
        let what = format!("blob {digest}");
        let url = t.url(&format!("blobs/{digest}"));
        let mut headers = HeaderMap::new();
        if resumed {
            let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                .map_err(|_| fail(self.url_err(t, &url)))?;
            headers.insert(header::RANGE, range);
        }
        let mut resp = tokio::select! {
            resp = self.get(t, &url, &headers, &what) => resp.map_err(fail)?,
            () = cancel.cancelled() => return Err(fail(self.cancelled(t, digest))),
        };
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        let range_ok = resp
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
        if !(resumed && partial && range_ok) {
            // A full body (the registry ignored the range, or none was asked): start over.
            if partial {
                return Err(fail(Error::Status {
                    registry: t.registry.to_string(),
                    repository: t.repository.to_string(),
                    what,
                    status: 206,
                    body: "unexpected partial content".into(),
                }));
            }
            ingest
                .restart()
                .map_err(|e| fail(self.store_err(t, digest, e)))?;
            count(-(offset as i64));
        }
        let resumed = resumed && partial && range_ok;
        // A resumed body lacks the blob's start, which is on disk: that layer unpacks from the
        // store once the blob is complete.
        let mut streaming = unpack
            .filter(|_| !resumed)
            .map(|u| u.snapshots.stream(u.layer, u.chain));
        let body = resp.body_mut();
        let result = async {
            loop {
                let frame = tokio::select! {
                    frame = tokio::time::timeout(self.idle(), body.frame()) => frame,
                    () = cancel.cancelled() => return Err(fail(self.cancelled(t, digest))),
                };
                let Some(frame) = frame.map_err(|_| fail(self.stalled(t, &url)))? else {
                    return Ok(());
                };
                let frame = frame.map_err(|source| {
                    fail(Error::Body {
                        registry: t.registry.to_string(),
                        url: url.clone(),
                        source,
                    })
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                count(data.len() as i64);
                crate::meters::get().received(data.len() as u64);
                if let Err(e) = std::io::Write::write_all(ingest, &data) {
                    // More than announced: nothing of it is worth resuming.
                    let _ = ingest.restart();
                    return Err(Resumed(
                        resumed,
                        self.store_err(t, digest, io_err(store, digest, e)),
                    ));
                }
                if let (Some(s), Some(to)) = (&mut streaming, unpack) {
                    if let Err(e) = s.feed(data).await {
                        // The layer cannot become a snapshot: no point in downloading the rest,
                        // nor in keeping it to resume (the same bytes fail the same way), nor
                        // in holding the space of a full disk.
                        let _ = ingest.restart();
                        return Err(fail(self.unpack_err(t, to, e)));
                    }
                }
            }
        }
        .await;
        match result {
            Ok(()) => Ok((resumed, streaming)),
            Err(e) => {
                // Waited for, so that nothing of the unpack is left when the pull returns.
                if let Some(s) = streaming {
                    let _ = s.finish(false).await;
                }
                Err(e)
            }
        }
    }

    /// The scheme and HTTP client for a registry, from its certs.d directory as it is now.
    fn route(&self, registry: &str, host: &str) -> Result<Route, Error> {
        let certs_err = |e| Error::Certs {
            registry: registry.to_string(),
            source: Box::new(e),
        };
        let found = match &self.config.certs_dir {
            Some(dir) => tls::find(dir, &[registry, host]).map_err(certs_err)?,
            None => None,
        };
        let scheme = scheme(registry, host, &self.config.insecure, found.is_some());
        // Plain HTTP has no use for the directory: it is not even read.
        let found = found.filter(|_| scheme == "https");
        let route = |c: &Cached| Route {
            scheme,
            http: c.http.clone(),
            failures: c.failures.clone(),
            certs: c.certs.as_ref().map(|(dir, _)| dir.clone()),
        };
        if let Some(c) = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(registry)
            .filter(|c| c.certs == found)
        {
            return Ok(route(c));
        }
        // Read outside the lock; two first pulls at once both build, the last one is kept.
        let config = tls::client_config(
            tls::system_roots(),
            found.as_ref().map(|(dir, _)| dir.as_path()),
        )
        .map_err(certs_err)?;
        let (http, failures) = tls::http_client(config);
        let cached = Cached {
            certs: found,
            http,
            failures,
        };
        let r = route(&cached);
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_string(), cached);
        Ok(r)
    }

    /// A failed request's error: a TLS failure (in the error, or on the connection since the
    /// request began) says so, with what the operator can do.
    fn connect_err(
        &self,
        t: &Target<'_>,
        url: &Uri,
        started: Instant,
        source: hyper_util::client::legacy::Error,
    ) -> Error {
        let failed = tls::find_rustls(&source)
            .cloned()
            .or_else(|| t.route.failures.since(started));
        match failed {
            Some(e) => Error::Handshake {
                registry: t.registry.to_string(),
                url: url.to_string(),
                hint: tls::hint(
                    &e,
                    tls::system_roots().origin(),
                    t.route.certs.as_deref(),
                    self.config.certs_dir.as_deref().map(|d| d.join(t.registry)),
                ),
                source: Box::new(e),
            },
            None => Error::Connect {
                registry: t.registry.to_string(),
                url: url.to_string(),
                source,
            },
        }
    }

    fn idle(&self) -> Duration {
        self.config.idle_timeout.unwrap_or(DEFAULT_IDLE)
    }

    fn stalled(&self, t: &Target<'_>, url: &str) -> Error {
        Error::Stalled {
            registry: t.registry.to_string(),
            url: url.to_string(),
            after: self.idle(),
        }
    }

    fn url_err(&self, t: &Target<'_>, url: &str) -> Error {
        Error::Url {
            registry: t.registry.to_string(),
            url: url.to_string(),
        }
    }

    /// A GET with this repository's credentials, answering auth challenges once and following
    /// redirects; an error unless 200 or 206.
    async fn get(
        &self,
        t: &Target<'_>,
        url: &str,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<hyper::Response<Incoming>, Error> {
        self.call(http::Method::GET, t, url, headers, what).await
    }

    /// One request, answering an auth challenge once; an error status is an error.
    async fn call(
        &self,
        method: http::Method,
        t: &Target<'_>,
        url: &str,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<hyper::Response<Incoming>, Error> {
        let key = format!("{}/{}", t.host, t.repository);
        let mut challenged = false;
        loop {
            let auth = self
                .auth
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            let resp = self.send(&method, t, url, headers, auth.as_ref()).await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                let retry_after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(Error::Throttled {
                    registry: t.registry.to_string(),
                    repository: t.repository.to_string(),
                    what: what.to_string(),
                    status: status.as_u16(),
                    retry_after,
                });
            }
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = self.error_body(resp).await;
            if status == StatusCode::UNAUTHORIZED && !challenged {
                if let Some(challenge) = challenge {
                    challenged = true;
                    let value = self.answer(t, &challenge, &body).await?;
                    self.auth
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), value);
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.unauthorized(t, status.as_u16(), body));
            }
            return Err(Error::Status {
                registry: t.registry.to_string(),
                repository: t.repository.to_string(),
                what: what.to_string(),
                status: status.as_u16(),
                body,
            });
        }
    }

    fn credentials(&self, t: &Target<'_>) -> Option<(String, String)> {
        let creds = self.credentials.read().unwrap_or_else(|e| e.into_inner());
        creds.get(t.registry).or_else(|| creds.get(t.host)).cloned()
    }

    /// Replaces the credentials (the operator edited the credentials file); what was learnt
    /// from challenges with the old ones is forgotten.
    pub fn set_credentials(&self, credentials: HashMap<String, (String, String)>) {
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = credentials;
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn unauthorized(&self, t: &Target<'_>, status: u16, body: String) -> Error {
        Error::Unauthorized {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            status,
            hint: if self.credentials(t).is_some() {
                ""
            } else {
                "; no credentials configured for it"
            },
            body,
        }
    }

    /// The `Authorization` value that answers a `WWW-Authenticate` challenge.
    async fn answer(
        &self,
        t: &Target<'_>,
        challenge: &str,
        body: &str,
    ) -> Result<HeaderValue, Error> {
        let creds = self.credentials(t);
        let basic = creds.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let value = basic.ok_or_else(|| self.unauthorized(t, 401, body.to_string()))?;
            return HeaderValue::from_str(&value).map_err(|_| self.unauthorized(t, 401, "".into()));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.unauthorized(
                t,
                401,
                format!("unsupported auth scheme {scheme:?}: {body}"),
            ));
        }
        let realm = params.get("realm").cloned().unwrap_or_default();
        let token_err = |reason: String| Error::Token {
            registry: t.registry.to_string(),
            realm: realm.clone(),
            reason,
        };
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", t.repository));
        let mut query = vec![format!("scope={}", encode(&scope))];
        if let Some(service) = params.get("service") {
            query.insert(0, format!("service={}", encode(service)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(token_err("the realm is not an http(s) URL".into()));
        }
        let mut headers = HeaderMap::new();
        let auth = basic
            .map(|b| HeaderValue::from_str(&b))
            .transpose()
            .map_err(|_| token_err("credentials are not a valid header".into()))?;
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let resp = self
            .send(&http::Method::GET, t, &url, &headers, auth.as_ref())
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = self.error_body(resp).await;
            return Err(
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    self.unauthorized(t, status.as_u16(), body)
                } else {
                    token_err(format!("HTTP {}: {body}", status.as_u16()))
                },
            );
        }
        let body = self.read_limited(t, &url, resp, MAX_TOKEN, "token").await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let tok: Token =
            serde_json::from_slice(&body).map_err(|e| token_err(format!("bad answer: {e}")))?;
        let tok = tok
            .token
            .or(tok.access_token)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| token_err("the answer holds no token".into()))?;
        HeaderValue::from_str(&format!("Bearer {tok}"))
            .map_err(|_| token_err("the token is not a valid header".into()))
    }

    /// One request (GET or HEAD), following redirects; credentials go only to the registry's
    /// own host.
    async fn send(
        &self,
        method: &http::Method,
        t: &Target<'_>,
        url: &str,
        headers: &HeaderMap,
        auth: Option<&HeaderValue>,
    ) -> Result<hyper::Response<Incoming>, Error> {
        let mut uri: Uri = url.parse().map_err(|_| self.url_err(t, url))?;
        let origin = uri.authority().cloned();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = Request::builder().method(method.clone()).uri(uri.clone());
            if let Some(h) = req.headers_mut() {
                h.extend(headers.clone());
                if let Some(a) = auth.filter(|_| uri.authority() == origin.as_ref()) {
                    h.insert(header::AUTHORIZATION, a.clone());
                }
                h.insert(header::USER_AGENT, HeaderValue::from_static("rcd"));
            }
            let req = req
                .body(Empty::new())
                .map_err(|_| self.url_err(t, &uri.to_string()))?;
            let started = Instant::now();
            let resp = tokio::time::timeout(self.idle(), t.route.http.request(req))
                .await
                .map_err(|_| self.stalled(t, &uri.to_string()))?
                .map_err(|source| self.connect_err(t, &uri, started, source))?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.url_err(t, &uri.to_string()))?;
            uri = resolve(&uri, location).ok_or_else(|| self.url_err(t, location))?;
        }
        Err(Error::Status {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            what: url.to_string(),
            status: 310,
            body: "too many redirects".into(),
        })
    }

    /// Reads a whole body, refusing it once it passes `limit`.
    async fn read_limited(
        &self,
        t: &Target<'_>,
        url: &str,
        resp: hyper::Response<Incoming>,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let too_large = |size| Error::TooLarge {
            registry: t.registry.to_string(),
            repository: t.repository.to_string(),
            what: what.to_string(),
            size,
            limit,
        };
        if let Some(len) = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limit {
                return Err(too_large(len));
            }
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = tokio::time::timeout(self.idle(), body.frame())
            .await
            .map_err(|_| self.stalled(t, url))?
        {
            let frame = frame.map_err(|source| Error::Body {
                registry: t.registry.to_string(),
                url: url.to_string(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                if (out.len() + data.len()) as u64 > limit {
                    return Err(too_large((out.len() + data.len()) as u64));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    /// The start of an error response's body, as text, for a message.
    async fn error_body(&self, resp: hyper::Response<Incoming>) -> String {
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while out.len() < MAX_ERROR_BODY {
            match tokio::time::timeout(self.idle(), body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        out.truncate(MAX_ERROR_BODY);
        readable_body(String::from_utf8_lossy(&out).trim())
    }
}

/// A distribution-spec error body (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest
/// unknown",...}]}`) as "manifest unknown (MANIFEST_UNKNOWN)"; any other body as it is.
fn readable_body(raw: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(body) = serde_json::from_str::<Body>(raw) else {
        return raw.to_string();
    };
    let entries: Vec<String> = body
        .errors
        .iter()
        .map(|e| match (e.message.is_empty(), e.code.is_empty()) {
            (false, false) => format!("{} ({})", e.message, e.code),
            (false, true) => e.message.clone(),
            _ => e.code.clone(),
        })
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        raw.to_string()
    } else {
        entries.join("; ")
    }
}

/// An error and its causes: hyper's own messages ("client error (Connect)") leave out the one
/// an operator needs ("Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A blob's store error, naming the blob once (digest and size mismatches already name it).
fn blob_cause(digest: &Digest, source: &content::Error) -> String {
    match source {
        content::Error::Digest { .. } | content::Error::Size { .. } => source.to_string(),
        content::Error::Io { .. } => format!("blob {digest}: {source}"),
    }
}

/// A download's error, and whether it began from an earlier attempt's bytes.
struct Resumed(bool, Error);

fn io_join(e: tokio::task::JoinError) -> content::Error {
    content::Error::Io {
        path: "(blocking task)".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn io_err(store: &ContentStore, digest: &Digest, source: std::io::Error) -> content::Error {
    content::Error::Io {
        path: store.path(digest),
        source,
    }
}

/// Where one layer of a pull unpacks to.
#[derive(Clone, Copy)]
struct UnpackTo<'a> {
    snapshots: &'a Snapshots,
    layer: LayerRef,
    chain: Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// Whether a manifest body is an image manifest or an index, from its content type or, when the
/// registry sends a generic one, from its own `mediaType` and shape.
fn manifest_kind(content_type: Option<&str>, body: &[u8]) -> Result<Kind, String> {
    let by_type = |t: &str| match t {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        _ => None,
    };
    if let Some(k) = content_type.and_then(by_type) {
        return Ok(k);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(t) = v.get("mediaType").and_then(|m| m.as_str()) {
        return by_type(t).ok_or_else(|| format!("unsupported media type {t}"));
    }
    if v.get("manifests").is_some() {
        Ok(Kind::Index)
    } else if v.get("layers").is_some() && v.get("config").is_some() {
        Ok(Kind::Manifest)
    } else {
        Err(format!(
            "unsupported manifest (content type {})",
            content_type.unwrap_or("none")
        ))
    }
}

/// The host to connect to for a reference's registry: Docker Hub's API is not on `docker.io`.
pub fn api_host(r: &Reference) -> &str {
    match reference::api_host(r) {
        "index.docker.io" if r.registry() == "docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Plain HTTP for registries marked insecure (the operator said so, whatever else is there),
/// then HTTPS for those with a certs.d directory (having certs for it says the operator wants
/// TLS), plain HTTP for the remaining loopback ones (as Docker by default), HTTPS for all else.
fn scheme(registry: &str, host: &str, insecure: &[String], has_certs: bool) -> &'static str {
    if insecure.iter().any(|i| i == registry || i == host) {
        "http"
    } else if has_certs {
        "https"
    } else if reference::is_loopback(registry) {
        "http"
    } else {
        "https"
    }
}

fn describe(want: &Want) -> String {
    match &want.variant {
        Some(v) => format!("{}/{}/{v}", want.os, want.arch),
        None => format!("{}/{}", want.os, want.arch),
    }
}

/// Resolves a `Location` against the URL that answered with it.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}").parse().ok();
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}").parse().ok();
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{authority}{dir}{location}")
        .parse()
        .ok()
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits `Bearer realm="..",service="..",scope=".."` into the scheme and its parameters.
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.insert(key, value);
    }
    (scheme.to_string(), params)
}

/// A credentials file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("credentials file: {0}")]
pub struct CredentialsError(String);

/// Reads Docker's `config.json` format (`{"auths":{"host":{"auth":"base64(user:pw)"}}}`, or
/// `username`/`password` fields) into credentials by registry, keys normalized as references
/// name registries (`https://index.docker.io/v1/` is `docker.io`).
pub fn credentials_from_docker_config(
    json: &str,
) -> Result<HashMap<String, (String, String)>, CredentialsError> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let file: File = serde_json::from_str(json).map_err(|e| CredentialsError(e.to_string()))?;
    let mut out = HashMap::new();
    for (key, entry) in file.auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let host = match host {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            h => h,
        };
        let pair = match (
            entry.auth.filter(|a| !a.is_empty()),
            entry.username,
            entry.password,
        ) {
            (Some(auth), _, _) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| CredentialsError(format!("{key}: auth is not base64: {e}")))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| CredentialsError(format!("{key}: auth is not UTF-8")))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| CredentialsError(format!("{key}: auth is not user:password")))?;
                (u.to_string(), p.to_string())
            }
            (None, Some(u), Some(p)) => (u, p),
            // An entry without credentials (a credential helper's placeholder) names no one.
            _ => continue,
        };
        out.insert(host.to_string(), pair);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="rcd-tests""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "rcd-tests"));
        let (s, p) = parse_challenge("Bearer realm=http://x/t, service=reg");
        assert_eq!(s, "Bearer");
        assert_eq!(
            (p["realm"].as_str(), p["service"].as_str()),
            ("http://x/t", "reg")
        );
    }

    #[test]
    fn docker_config_credentials() {
        let json = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000":{"username":"u","password":"p"},
            "helper.example":{}
        }}"#;
        let c = credentials_from_docker_config(json).unwrap();
        assert_eq!(c["docker.io"], ("user".to_string(), "pa:ss".to_string()));
        assert_eq!(c["127.0.0.1:5000"], ("u".to_string(), "p".to_string()));
        assert_eq!(c.len(), 2);
        assert!(credentials_from_docker_config(r#"{"auths":{"x":{"auth":"%%"}}}"#).is_err());
        assert!(credentials_from_docker_config("{}").unwrap().is_empty());
    }

    #[test]
    fn scheme_decisions() {
        let insecure = ["10.0.0.1:5000".to_string(), "127.0.0.1:5001".to_string()];
        // (registry, host connected to, has a certs.d directory, scheme)
        let cases = [
            // Loopback: plain HTTP unless certs.d says the operator wants TLS.
            ("127.0.0.1:5000", "127.0.0.1:5000", false, "http"),
            ("127.0.0.1:5000", "127.0.0.1:5000", true, "https"),
            ("localhost", "localhost", false, "http"),
            ("localhost:5000", "localhost:5000", true, "https"),
            ("[::1]:5000", "[::1]:5000", false, "http"),
            ("[::1]:5000", "[::1]:5000", true, "https"),
            // Insecure: plain HTTP, certs.d or not, by registry or by the host connected to.
            ("10.0.0.1:5000", "10.0.0.1:5000", false, "http"),
            ("10.0.0.1:5000", "10.0.0.1:5000", true, "http"),
            ("127.0.0.1:5001", "127.0.0.1:5001", true, "http"),
            ("alias.example", "10.0.0.1:5000", false, "http"),
            // Everything else: HTTPS, with or without extra trust.
            ("10.0.0.1", "10.0.0.1", false, "https"),
            ("10.0.0.1:5001", "10.0.0.1:5001", true, "https"),
            ("docker.io", "registry-1.docker.io", false, "https"),
            (
                "registry.example.com:5000",
                "registry.example.com:5000",
                false,
                "https",
            ),
            (
                "registry.example.com:5000",
                "registry.example.com:5000",
                true,
                "https",
            ),
        ];
        for (registry, host, has_certs, want) in cases {
            assert_eq!(
                scheme(registry, host, &insecure, has_certs),
                want,
                "{registry} via {host}, certs.d: {has_certs}"
            );
        }
    }

    #[test]
    fn connect_errors_show_their_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            with_causes(&refused),
            "client error (Connect): connection refused"
        );
    }

    #[test]
    fn kinds_and_hosts() {
        let cases: [(Option<&str>, &str, Result<Kind, ()>); 6] = [
            (Some(OCI_INDEX), "{}", Ok(Kind::Index)),
            (Some(DOCKER_MANIFEST), "{}", Ok(Kind::Manifest)),
            (
                None,
                r#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#,
                Ok(Kind::Index),
            ),
            (
                Some("application/json"),
                r#"{"manifests":[]}"#,
                Ok(Kind::Index),
            ),
            (None, r#"{"config":{},"layers":[]}"#, Ok(Kind::Manifest)),
            (
                None,
                r#"{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#,
                Err(()),
            ),
        ];
        for (ct, body, want) in cases {
            assert_eq!(
                manifest_kind(ct, body.as_bytes()).map_err(|_| ()),
                want,
                "{ct:?} {body}"
            );
        }
        let r = reference::parse("busybox").unwrap();
        assert_eq!(api_host(&r), "registry-1.docker.io");
        let r = reference::parse("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(api_host(&r), "127.0.0.1:5000");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        let base: Uri = "http://h:1/v2/r/blobs/x".parse().unwrap();
        assert_eq!(resolve(&base, "/o").unwrap().to_string(), "http://h:1/o");
        assert_eq!(
            resolve(&base, "y").unwrap().to_string(),
            "http://h:1/v2/r/blobs/y"
        );
        assert_eq!(
            resolve(&base, "https://cdn/z").unwrap().to_string(),
            "https://cdn/z"
        );
    }

    #[test]
    fn error_bodies_read_as_messages() {
        let cases = [
            (
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#,
                "manifest unknown (MANIFEST_UNKNOWN)",
            ),
            (
                r#"{"errors":[{"code":"DENIED"},{"message":"and more"}]}"#,
                "DENIED; and more",
            ),
            (r#"{"errors":[]}"#, r#"{"errors":[]}"#),
            ("404 page not found", "404 page not found"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(readable_body(raw), want, "{raw}");
        }
    }
}
