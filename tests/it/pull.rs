//! Pulling with `rcd::image::registry` from the fixture registry on 127.0.0.1: OCI and Docker
//! v2s2 images, digests, platforms, tampering, basic auth, concurrency and resumption, HTTPS
//! registries trusted through certs.d (private CAs, client certificates), and pulls that unpack
//! layers into snapshots while they download.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcd::image::content::{self, ContentStore};
use rcd::image::digest::Digest;
use rcd::image::layer::Limits;
use rcd::image::pins::Pins;
use rcd::image::platform::Want;
use rcd::image::progress::Progress;
use rcd::image::reference;
use rcd::image::registry::{Client, ClientConfig, Error, Pulled};
use rcd::image::snapshot::{self, chain_ids, LayerRef, Snapshots};

use crate::registry::{
    busybox_oci_layout, multi_arch_layout, other_arch, sha256_digest, Compression, Descriptor,
    Image, Layer, OciLayout, Pki, Registry, TarBuilder, Tls, DOCKER_LAYER_GZIP, OCI_LAYER_GZIP,
};

/// A registry holding busybox pushed as `name`, with the temp dir and the layout it came from.
fn busybox_registry(name: &str) -> (Registry, tempfile::TempDir, OciLayout, Descriptor) {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, name);
    (reg, tmp, layout, desc)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

fn pull(client: &Client, store: &ContentStore, image: &str) -> Result<Pulled, Error> {
    pull_for(client, store, image, &Want::host())
}

fn pull_for(
    client: &Client,
    store: &ContentStore,
    image: &str,
    want: &Want,
) -> Result<Pulled, Error> {
    let r = reference::parse(image).unwrap();
    let progress = Progress::default();
    let pulled = runtime().block_on(client.pull(&r, store, want, &progress))?;
    // Whatever was fetched, resumed or already present, a finished pull reports it all.
    let c = progress.counts();
    assert_eq!(c.layers_done, pulled.layers.len() as u64);
    assert_eq!(
        (c.layers_total, c.bytes_done),
        (c.layers_done, c.bytes_total)
    );
    assert_eq!(
        c.bytes_total,
        pulled.layers.iter().map(|l| l.size).sum::<u64>()
    );
    Ok(pulled)
}

/// Everything the pull names is in the store and hashes to its name.
fn assert_stored(store: &ContentStore, p: &Pulled) {
    store.read(&p.manifest_digest).expect("manifest stored");
    store.read(&p.config_digest).expect("config stored");
    assert!(!p.layers.is_empty());
    for l in &p.layers {
        let bytes = std::fs::read(store.path(&l.digest)).expect("layer stored");
        assert_eq!(bytes.len() as u64, l.size);
        assert_eq!(Digest::of(&bytes), l.digest);
    }
}

fn store_in(dir: &Path) -> ContentStore {
    ContentStore::open(&dir.join("content")).unwrap()
}

/// Requests for `path` in the registry's access log.
fn requests(reg: &Registry, path: &str) -> Vec<String> {
    let needle = format!("GET {path} ");
    reg.log()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(String::from)
        .collect()
}

#[test]
fn pulls_busybox_pushed_as_oci_and_as_v2s2() {
    let (reg, tmp, layout, desc) = busybox_registry("busybox:latest");
    let v2s2 = reg.push_layout_v2s2(&layout.dir, "library/busybox:1.35");
    let store = store_in(tmp.path());
    let c = client();

    let oci = pull(&c, &store, &reg.image("busybox")).unwrap();
    assert_eq!(oci.manifest_digest.to_string(), desc.digest);
    assert_eq!(oci.index_digest, None);
    assert_eq!(oci.layers[0].media_type, OCI_LAYER_GZIP);
    assert_stored(&store, &oci);

    let docker = pull(&c, &store, &reg.image("library/busybox:1.35")).unwrap();
    assert_eq!(docker.manifest_digest.to_string(), v2s2.trim());
    assert_eq!(docker.layers[0].media_type, DOCKER_LAYER_GZIP);
    assert_stored(&store, &docker);

    for p in [&oci, &docker] {
        let cfg = p.config.config().as_ref().expect("config section");
        assert_eq!(cfg.cmd().as_deref(), Some(&["sh".to_string()][..]));
        assert!(
            cfg.env()
                .as_ref()
                .is_some_and(|e| e.iter().any(|v| v.starts_with("PATH="))),
            "{:?}",
            cfg.env()
        );
    }
}

#[test]
fn pull_by_digest_and_wrong_digests_are_refused() {
    let (reg, tmp, _layout, desc) = busybox_registry("busybox:latest");
    let store = store_in(tmp.path());
    let c = client();

    let p = pull(&c, &store, &reg.image(&format!("busybox@{}", desc.digest))).unwrap();
    assert_eq!(p.manifest_digest.to_string(), desc.digest);
    assert_stored(&store, &p);

    // A digest the registry does not have: its 404, with its error body.
    let missing = Digest::of(b"no such manifest");
    let err = pull(&c, &store, &reg.image(&format!("busybox@{missing}"))).unwrap_err();
    assert!(matches!(err, Error::Status { status: 404, .. }), "{err}");
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");

    // The registry serves other bytes under the digest: refused, not stored.
    let fresh = store_in(&tmp.path().join("fresh"));
    let path = reg.blob_path(&desc.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b' ');
    std::fs::write(&path, &bytes).unwrap();
    let err = pull(&c, &fresh, &reg.image(&format!("busybox@{}", desc.digest))).unwrap_err();
    assert!(matches!(err, Error::ManifestDigest { .. }), "{err}");
    assert!(err.to_string().contains("refusing"), "{err}");
    assert!(fresh.list().unwrap().is_empty());
}

#[test]
fn a_multi_arch_index_resolves_to_the_platform() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, index, manifests) = multi_arch_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "multi:latest");
    let store = store_in(tmp.path());
    let c = client();

    let host = pull(&c, &store, &reg.image("multi")).unwrap();
    assert_eq!(
        host.index_digest.map(|d| d.to_string()),
        Some(index.digest.clone())
    );
    assert_eq!(host.manifest_digest.to_string(), manifests[0].digest);
    assert_stored(&store, &host);
    store
        .read(&host.index_digest.unwrap())
        .expect("index stored");

    // The other platform's image is the one with `/platform` naming it.
    let want = Want {
        arch: other_arch().into(),
        os: oci_spec::image::Os::Linux,
        variant: (other_arch() == "arm64").then(|| "v8".to_string()),
    };
    let other = pull_for(&c, &store, &reg.image("multi"), &want).unwrap();
    assert_eq!(other.manifest_digest.to_string(), manifests[1].digest);
    assert_eq!(other.layers.len(), 1);
    assert!(host
        .layers
        .iter()
        .all(|l| l.digest != other.layers[0].digest));
    let blob = std::fs::File::open(store.path(&other.layers[0].digest)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    let mut found = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("platform") {
            std::io::Read::read_to_string(&mut entry, &mut found).unwrap();
        }
    }
    assert_eq!(found.trim(), other_arch());

    // A platform the index lacks is a clear error.
    let want = Want {
        arch: "s390x".into(),
        os: oci_spec::image::Os::Linux,
        variant: None,
    };
    let err = pull_for(&c, &store, &reg.image("multi"), &want).unwrap_err();
    assert!(matches!(err, Error::NoPlatform { .. }), "{err}");
}

#[test]
fn a_tampered_layer_fails_the_pull_and_leaves_nothing() {
    let (reg, tmp, _layout, _) = busybox_registry("busybox");
    let manifest = reg.manifest("busybox", "latest").json();
    let digest: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = reg.blob_path(&digest.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let store = store_in(tmp.path());
    let err = pull(&client(), &store, &reg.image("busybox")).unwrap_err();
    assert!(
        matches!(&err, Error::Store { source, .. } if matches!(**source, content::Error::Digest { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(!store.has(&digest));
    assert!(!store.path(&digest).exists());
    let ingest = tmp.path().join("content/ingest");
    assert_eq!(
        std::fs::read_dir(&ingest).unwrap().count(),
        0,
        "partial kept"
    );
    // The manifest is not stored either: nothing names an incomplete image.
    let manifest_digest: Digest = reg.inspect("busybox")["Digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!store.has(&manifest_digest));
}

#[test]
fn basic_auth_with_right_wrong_and_no_credentials() {
    let reg = Registry::start_with_auth("rcd", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox");
    let with = |pw: &str| {
        Client::new(ClientConfig {
            insecure: vec![],
            credentials: [(reg.addr.clone(), ("rcd".to_string(), pw.to_string()))].into(),
            ..ClientConfig::default()
        })
        .unwrap()
    };

    let store = store_in(tmp.path());
    let p = pull(&with("s3cret"), &store, &reg.image("busybox")).unwrap();
    assert_eq!(p.manifest_digest.to_string(), desc.digest);
    assert_stored(&store, &p);

    let fresh = store_in(&tmp.path().join("fresh"));
    let err = pull(&with("wrong"), &fresh, &reg.image("busybox")).unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("authentication failed (HTTP 401)"), "{msg}");
    assert!(msg.contains(&reg.addr), "{msg}");

    let err = pull(&client(), &fresh, &reg.image("busybox")).unwrap_err();
    assert!(
        err.to_string().contains("no credentials configured"),
        "{err}"
    );
    assert!(fresh.list().unwrap().is_empty());
}

/// Pulls `images` all at once through one client; with `snaps`, unpacking as they stream.
fn pull_at_once(
    c: &Arc<Client>,
    store: &ContentStore,
    snaps: Option<&Snapshots>,
    images: &[String],
) -> Vec<Result<Pulled, Error>> {
    runtime().block_on(async {
        let tasks: Vec<_> = images
            .iter()
            .map(|image| {
                let r = reference::parse(image).unwrap();
                let (c, store, snaps) = (c.clone(), store.clone(), snaps.cloned());
                let pin = Pins::default().pin(image);
                tokio::spawn(async move {
                    let p = Progress::default();
                    match &snaps {
                        Some(s) => {
                            c.pull_and_unpack(&r, &store, s, &Want::host(), &p, &pin)
                                .await
                        }
                        None => c.pull(&r, &store, &Want::host(), &p).await,
                    }
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(|t| t.unwrap())
            .collect()
    })
}

#[test]
fn concurrent_pulls_download_each_blob_once() {
    let (reg, tmp, _layout, _) = busybox_registry("busybox");
    let store = store_in(tmp.path());
    let c = Arc::new(client());

    let images = vec![reg.image("busybox"); 3];
    let results = pull_at_once(&c, &store, None, &images);
    let pulled: Vec<Pulled> = results.into_iter().map(|r| r.unwrap()).collect();
    for p in &pulled {
        assert_eq!(p.manifest_digest, pulled[0].manifest_digest);
        assert_stored(&store, p);
    }
    let p = &pulled[0];
    for digest in p.layers.iter().map(|l| l.digest).chain([p.config_digest]) {
        let gets = requests(&reg, &format!("/v2/busybox/blobs/{digest}"));
        assert_eq!(
            gets.len(),
            1,
            "{digest} fetched {} times: {gets:#?}",
            gets.len()
        );
    }
}

#[test]
fn an_interrupted_pull_resumes_and_a_bad_partial_restarts() {
    let (reg, tmp, _layout, _) = busybox_registry("busybox");
    let manifest = reg.manifest("busybox", "latest").json();
    let digest: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Read from storage, not over HTTP: the access log must hold only the pull's requests.
    let blob = std::fs::read(reg.blob_path(&digest.to_string())).unwrap();
    let c = client();

    // Half the layer from an earlier, broken-off attempt: only the rest is asked for.
    let store = store_in(tmp.path());
    let half = blob.len() / 2;
    std::fs::write(
        tmp.path().join("content/ingest").join(digest.hex()),
        &blob[..half],
    )
    .unwrap();
    let p = pull(&c, &store, &reg.image("busybox")).unwrap();
    assert_stored(&store, &p);
    let gets = requests(&reg, &format!("/v2/busybox/blobs/{digest}"));
    assert_eq!(gets.len(), 1, "{gets:#?}");
    assert!(gets[0].contains(" 206 "), "not a range request: {gets:#?}");

    // A partial that is not a prefix of the blob: caught at commit, downloaded again whole.
    let other = store_in(&tmp.path().join("other"));
    let mut bad = blob[..half].to_vec();
    bad[0] ^= 0xff;
    std::fs::write(
        tmp.path().join("other/content/ingest").join(digest.hex()),
        &bad,
    )
    .unwrap();
    let p = pull(&c, &other, &reg.image("busybox")).unwrap();
    assert_stored(&other, &p);
    let gets = requests(&reg, &format!("/v2/busybox/blobs/{digest}"));
    assert_eq!(gets.len(), 3, "{gets:#?}");
    assert!(gets[2].contains(" 200 "), "{gets:#?}");
}

/// A token-auth front for the anonymous fixture registry, as Docker Hub is: `/v2/` answers 401
/// with a Bearer challenge; `/token` hands out a token for basic credentials; blob downloads are
/// redirected to the registry itself (another host, as a CDN would be).
struct TokenFront {
    registry: String,
    front: String,
    /// Every request to `/token`, with its query.
    token_requests: std::sync::Mutex<Vec<String>>,
}

async fn token_front(
    axum::extract::State(s): axum::extract::State<Arc<TokenFront>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    // Read what is needed before any await: the request's body is not Sync.
    let (auth, accept) = {
        let header_of = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (header_of(header::AUTHORIZATION), header_of(header::ACCEPT))
    };
    drop(req);
    if path.starts_with("/token") {
        s.token_requests.lock().unwrap().push(path.clone());
        let good = format!("Basic {}", crate::registry::base64(b"rcd:s3cret"));
        if auth != good {
            return (
                StatusCode::UNAUTHORIZED,
                "{\"details\":\"bad credentials\"}",
            )
                .into_response();
        }
        return (StatusCode::OK, "{\"token\":\"T0KEN\",\"expires_in\":300}").into_response();
    }
    if auth != "Bearer T0KEN" {
        let challenge = format!(
            "Bearer realm=\"http://{}/token\",service=\"fixture\",scope=\"repository:busybox:pull\"",
            s.front
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
        )
            .into_response();
    }
    if path.ends_with("/manifests/huge") {
        // More than the 4 MiB a manifest may be.
        let body = vec![b' '; 5 << 20];
        return (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json",
            )],
            body,
        )
            .into_response();
    }
    if path.contains("/blobs/") {
        let to = format!("http://{}{path}", s.registry);
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    let registry = s.registry.clone();
    let r = tokio::task::spawn_blocking(move || {
        crate::registry::http(&registry, "GET", &path, &[("Accept", accept)], b"")
    })
    .await
    .unwrap()
    .unwrap();
    let content_type = r.header("content-type").unwrap_or("").to_string();
    (
        StatusCode::from_u16(r.status).unwrap(),
        [(header::CONTENT_TYPE, content_type)],
        r.body,
    )
        .into_response()
}

#[test]
fn bearer_token_auth_and_redirected_blobs() {
    let (reg, tmp, _layout, desc) = busybox_registry("busybox");

    let rt = runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let front_addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(TokenFront {
        registry: reg.addr.clone(),
        front: front_addr.clone(),
        token_requests: Default::default(),
    });
    let app = axum::Router::new()
        .fallback(token_front)
        .with_state(state.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    let image = reference::parse(&format!("{front_addr}/busybox")).unwrap();
    let with = |pw: &str| {
        Client::new(ClientConfig {
            insecure: vec![],
            credentials: [(front_addr.clone(), ("rcd".to_string(), pw.to_string()))].into(),
            ..ClientConfig::default()
        })
        .unwrap()
    };

    let store = store_in(tmp.path());
    let p = rt
        .block_on(with("s3cret").pull(&image, &store, &Want::host(), &Progress::default()))
        .unwrap();
    assert_eq!(p.manifest_digest.to_string(), desc.digest);
    assert_stored(&store, &p);
    {
        let tokens = state.token_requests.lock().unwrap();
        // One token, reused for the manifest, the config and the layers.
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        assert_eq!(
            tokens[0],
            "/token?service=fixture&scope=repository%3Abusybox%3Apull"
        );
    }
    // The blobs came from the registry after the redirect.
    let gets = requests(&reg, &format!("/v2/busybox/blobs/{}", p.layers[0].digest));
    assert_eq!(gets.len(), 1, "{gets:#?}");

    let huge = reference::parse(&format!("{front_addr}/busybox:huge")).unwrap();
    let err = rt
        .block_on(with("s3cret").pull(&huge, &store, &Want::host(), &Progress::default()))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");

    let fresh = store_in(&tmp.path().join("fresh"));
    let err = rt
        .block_on(with("wrong").pull(&image, &fresh, &Want::host(), &Progress::default()))
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad credentials"), "{err}");
    assert!(fresh.list().unwrap().is_empty());
}

#[test]
fn a_silent_registry_fails_the_pull_after_the_idle_timeout() {
    // Accepts connections, never answers: the pull must not wait forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(4).flatten() {
            held.push(s);
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    });
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let client = Client::new(ClientConfig {
        idle_timeout: Some(std::time::Duration::from_millis(500)),
        ..ClientConfig::default()
    })
    .unwrap();
    let t = std::time::Instant::now();
    let err = pull(&client, &store, &format!("{addr}/busybox:latest")).unwrap_err();
    assert!(matches!(err, Error::Stalled { .. }), "{err}");
    assert!(err.to_string().contains("nothing received"), "{err}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        t.elapsed()
    );
    drop(keep);
}

// ---------------------------------------------------------------------------------------------
// HTTPS registries and certs.d

/// A TLS registry holding busybox as `busybox`, the PKI that signs it, the temp dir (a
/// `certs.d` inside it is empty), and the pushed manifest.
fn busybox_tls_registry(tls: Tls) -> (Registry, Pki, tempfile::TempDir, Descriptor) {
    let pki = Pki::generate();
    let reg = Registry::start_tls(&pki, tls);
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox");
    std::fs::create_dir(tmp.path().join("certs.d")).unwrap();
    (reg, pki, tmp, desc)
}

/// A client whose certs.d is `certs_dir`.
fn client_with_certs(certs_dir: &Path) -> Client {
    Client::new(ClientConfig {
        certs_dir: Some(certs_dir.to_path_buf()),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Puts `files` (source, name) into the registry's certs.d directory `certs/127.0.0.1:PORT/`,
/// creating it; returns it.
fn certs_for(certs: &Path, reg: &Registry, files: &[(&Path, &str)]) -> PathBuf {
    let dir = certs.join(&reg.addr);
    std::fs::create_dir_all(&dir).unwrap();
    for (from, name) in files {
        std::fs::copy(from, dir.join(name)).unwrap();
    }
    dir
}

/// The requests rcd made, from the registry's access log (skopeo's pushes are there too).
fn rcd_requests(reg: &Registry) -> Vec<String> {
    reg.log()
        .lines()
        .filter(|l| l.ends_with("\"rcd\""))
        .map(String::from)
        .collect()
}

/// The registry's log lines about failed TLS handshakes (Go's `http: TLS handshake error`).
fn handshake_errors(reg: &Registry) -> Vec<String> {
    reg.log()
        .lines()
        .filter(|l| l.contains("TLS handshake error"))
        .map(String::from)
        .collect()
}

/// As `handshake_errors`, once there is at least one: the registry logs a failed handshake
/// after the client has already given up on it. A moment more lets any later attempt show.
fn handshake_errors_settled(reg: &Registry) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while handshake_errors(reg).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    handshake_errors(reg)
}

#[test]
fn https_registry_trusted_through_its_ca_in_certs_d() {
    let (reg, pki, tmp, desc) = busybox_tls_registry(Tls::Server);
    let certs = tmp.path().join("certs.d");
    let store = store_in(tmp.path());
    let c = client_with_certs(&certs);

    // No certs.d directory for it: a loopback registry is spoken to in plain HTTP, which this
    // one refuses.
    let err = pull(&c, &store, &reg.image("busybox")).unwrap_err();
    assert!(matches!(err, Error::Status { status: 400, .. }), "{err}");
    assert!(
        err.to_string().contains("HTTP request to an HTTPS server"),
        "{err}"
    );

    // Its CA in certs.d/127.0.0.1:PORT/ca.crt: HTTPS, verified; the same client sees the new
    // directory without a restart.
    certs_for(&certs, &reg, &[(&pki.ca(), "ca.crt")]);
    let p = pull(&c, &store, &reg.image("busybox")).unwrap();
    assert_eq!(p.manifest_digest.to_string(), desc.digest);
    assert_stored(&store, &p);
    assert_eq!(requests(&reg, "/v2/busybox/manifests/latest").len(), 1);
    assert!(
        handshake_errors(&reg).is_empty(),
        "{:?}",
        handshake_errors(&reg)
    );
}

#[test]
fn an_untrusted_certificate_fails_the_pull_and_is_not_retried_over_http() {
    let (reg, _pki, tmp, _desc) = busybox_tls_registry(Tls::Server);
    let certs = tmp.path().join("certs.d");
    let store = store_in(tmp.path());
    // A certs.d directory (so HTTPS), but with another CA than the one that signed the registry.
    let stranger = Pki::generate();
    let dir = certs_for(&certs, &reg, &[(&stranger.ca(), "ca.crt")]);
    let c = client_with_certs(&certs);

    let err = pull(&c, &store, &reg.image("busybox")).unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    let msg = err.to_string();
    for words in [
        &format!("https://{}/v2/busybox/manifests/latest", reg.addr),
        "TLS handshake failed",
        "invalid peer certificate: UnknownIssuer",
        // (This process's store: SSL_CERT_FILE or SSL_CERT_DIR may name it, in parentheses.)
        "signed by neither a CA of the system store",
        &format!(" nor a CA in {}", dir.display()),
    ] {
        assert!(msg.contains(words), "{words:?} not in: {msg}");
    }
    // One handshake, refused; nothing else reached the registry: no request over HTTPS, no
    // second try over plain HTTP (which the registry would have answered with a 400).
    let refused = handshake_errors_settled(&reg);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("unknown certificate authority"),
        "{refused:?}"
    );
    assert!(rcd_requests(&reg).is_empty(), "{}", reg.log());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn mutual_tls_pulls_with_the_client_certificate_and_fails_clearly_without() {
    let (reg, pki, tmp, desc) = busybox_tls_registry(Tls::Mutual);
    let certs = tmp.path().join("certs.d");
    let store = store_in(tmp.path());
    let dir = certs_for(&certs, &reg, &[(&pki.ca(), "ca.crt")]);
    let c = client_with_certs(&certs);

    // The CA alone: the server is trusted, but the registry wants a client certificate.
    let err = pull(&c, &store, &reg.image("busybox")).unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("TLS handshake failed: received fatal alert"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "the registry may want a client certificate: client.cert and client.key in {}",
            dir.display()
        )),
        "{msg}"
    );

    // A client certificate from another CA: refused, and said so.
    let stranger = Pki::generate();
    certs_for(
        &certs,
        &reg,
        &[
            (&stranger.client_cert(), "client.cert"),
            (&stranger.client_key(), "client.key"),
        ],
    );
    let err = pull(&c, &store, &reg.image("busybox")).unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "the registry refused the client certificate in {}",
            dir.display()
        )),
        "{err}"
    );
    assert!(rcd_requests(&reg).is_empty(), "{}", reg.log());

    // The right pair (Docker's names): the pull goes through.
    certs_for(
        &certs,
        &reg,
        &[
            (&pki.client_cert(), "client.cert"),
            (&pki.client_key(), "client.key"),
        ],
    );
    let p = pull(&c, &store, &reg.image("busybox")).unwrap();
    assert_eq!(p.manifest_digest.to_string(), desc.digest);
    assert_stored(&store, &p);
}

#[test]
fn a_garbage_ca_crt_fails_the_pull_naming_the_file() {
    let (reg, pki, tmp, desc) = busybox_tls_registry(Tls::Server);
    let certs = tmp.path().join("certs.d");
    let store = store_in(tmp.path());
    let dir = certs_for(&certs, &reg, &[]);
    std::fs::write(dir.join("ca.crt"), "this is not a certificate\n").unwrap();
    let c = client_with_certs(&certs);

    let err = pull(&c, &store, &reg.image("busybox")).unwrap_err();
    assert!(matches!(err, Error::Certs { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{}: holds no PEM certificate",
            dir.join("ca.crt").display()
        )),
        "{msg}"
    );
    // Refused before any connection: neither a handshake nor a request reached the registry.
    assert!(handshake_errors(&reg).is_empty(), "{}", reg.log());
    assert!(rcd_requests(&reg).is_empty(), "{}", reg.log());

    // A PEM block that is no certificate: named too.
    std::fs::write(
        dir.join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = pull(&c, &store, &reg.image("busybox")).unwrap_err();
    assert!(matches!(err, Error::Certs { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&dir.join("ca.crt").display().to_string()),
        "{err}"
    );

    // Fixed in place, the same client uses it: errors are not cached.
    std::fs::copy(pki.ca(), dir.join("ca.crt")).unwrap();
    let p = pull(&c, &store, &reg.image("busybox")).unwrap();
    assert_eq!(p.manifest_digest.to_string(), desc.digest);
}

// ---------------------------------------------------------------------------------------------
// Pulling and unpacking in one pass (`Client::pull_and_unpack`)

fn snapshots_in(dir: &Path) -> Snapshots {
    Snapshots::open(&dir.join("snapshots"), Limits::default()).unwrap()
}

fn pull_unpacking(
    client: &Client,
    store: &ContentStore,
    snaps: &Snapshots,
    image: &str,
) -> Result<Pulled, Error> {
    let r = reference::parse(image).unwrap();
    let progress = Progress::default();
    let pin = Pins::default().pin(image);
    let pulled = runtime().block_on(client.pull_and_unpack(
        &r,
        store,
        snaps,
        &Want::host(),
        &progress,
        &pin,
    ))?;
    let c = progress.counts();
    assert_eq!(
        (c.layers_done, c.bytes_done),
        (c.layers_total, c.bytes_total)
    );
    Ok(pulled)
}

/// The pulled image's layers as the snapshotter names them.
fn layer_refs(p: &Pulled) -> Vec<LayerRef> {
    p.layers
        .iter()
        .zip(p.config.rootfs().diff_ids())
        .map(|(l, d)| LayerRef {
            blob: l.digest,
            diff_id: d.parse().unwrap(),
        })
        .collect()
}

/// What the snapshot root holds: (chain-id directories, anything else such as staging).
fn snapshot_root(dir: &Path) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.into_iter().partition(|n| n.len() == 64)
}

/// Busybox under two more layers: a zstd one and a plain tar one.
fn three_layer_image(top: &str) -> Image {
    let mut img = Image::busybox();
    img.layers.push(Layer::from_tar(
        TarBuilder::new()
            .dir("app")
            .file("app/top", top.as_bytes())
            .whiteout("etc/motd")
            .finish(),
        Compression::Zstd,
    ));
    img.layers.push(Layer::from_tar(
        TarBuilder::new()
            .file("app/data", &vec![b'd'; 300_000])
            .finish(),
        Compression::None,
    ));
    img
}

fn push_image(reg: &Registry, dir: &Path, img: &Image, name: &str) {
    let layout = OciLayout::create(dir);
    let desc = layout.add_image(img);
    layout.tag("latest", &desc);
    reg.push_layout(&layout.dir, name);
}

#[test]
fn pull_and_unpack_leaves_every_layer_ready() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    push_image(
        &reg,
        &tmp.path().join("layout"),
        &three_layer_image("one"),
        "app:latest",
    );
    let (store, snaps) = (store_in(tmp.path()), snapshots_in(tmp.path()));

    let p = pull_unpacking(&client(), &store, &snaps, &reg.image("app")).unwrap();
    assert_stored(&store, &p);
    assert_eq!(p.layers.len(), 3);
    let refs = layer_refs(&p);
    let chains = chain_ids(&refs.iter().map(|r| r.diff_id).collect::<Vec<_>>());
    let (dirs, others) = snapshot_root(tmp.path());
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    assert!(others.is_empty(), "staging left: {others:?}");
    assert!(snaps.path(&chains[0]).join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read(snaps.path(&chains[1]).join("app/top")).unwrap(),
        b"one"
    );
    let wh = std::fs::symlink_metadata(snaps.path(&chains[1]).join("etc/motd")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()),
        "whiteout converted"
    );
    assert_eq!(
        std::fs::metadata(snaps.path(&chains[2]).join("app/data"))
            .unwrap()
            .len(),
        300_000
    );
    for l in &p.layers {
        let gets = requests(&reg, &format!("/v2/app/blobs/{}", l.digest));
        assert_eq!(gets.len(), 1, "{gets:#?}");
    }

    // The start pipeline's prepare finds them all and unpacks nothing again.
    let marker = snaps.path(&chains[0]).join("marker");
    std::fs::write(&marker, "").unwrap();
    let lowers = snaps.prepare(&refs, &store).unwrap();
    assert_eq!(
        lowers,
        chains
            .iter()
            .rev()
            .map(|c| snaps.path(c))
            .collect::<Vec<_>>()
    );
    assert!(marker.exists());
}

#[test]
fn a_layer_that_is_not_its_diff_id_leaves_no_snapshot() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut img = Image::busybox();
    let mut bad = Layer::from_tar(
        TarBuilder::new().file("app/x", b"real").finish(),
        Compression::Gzip,
    );
    bad.diff_id = sha256_digest(b"what the config claims");
    img.layers.push(bad);
    push_image(&reg, &tmp.path().join("layout"), &img, "liar:latest");
    let (store, snaps) = (store_in(tmp.path()), snapshots_in(tmp.path()));

    let err = pull_unpacking(&client(), &store, &snaps, &reg.image("liar")).unwrap_err();
    assert!(
        matches!(&err, Error::Unpack { source, .. } if matches!(**source, snapshot::Error::DiffId { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("DiffID"), "{err}");
    let diff_ids: Vec<Digest> = img
        .layers
        .iter()
        .map(|l| l.diff_id.parse().unwrap())
        .collect();
    let chains = chain_ids(&diff_ids);
    assert!(
        !snaps.path(&chains[1]).exists(),
        "no snapshot for the bad layer"
    );
    let (_, others) = snapshot_root(tmp.path());
    assert!(others.is_empty(), "staging left: {others:?}");
    // Nothing names the image as complete.
    let manifest_digest: Digest = reg.inspect("liar")["Digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!store.has(&manifest_digest));
}

#[test]
fn a_tampered_layer_leaves_no_snapshot() {
    let (reg, tmp, _layout, _) = busybox_registry("busybox");
    let manifest = reg.manifest("busybox", "latest").json();
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = reg.blob_path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    // Past the gzip header, in the data: it still unpacks into something, just not this blob.
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (store, snaps) = (store_in(tmp.path()), snapshots_in(tmp.path()));

    let err = pull_unpacking(&client(), &store, &snaps, &reg.image("busybox")).unwrap_err();
    // Either check may see it first (the digest at the end, or the damaged deflate stream);
    // both refuse the layer.
    assert!(
        matches!(&err, Error::Store { .. } | Error::Unpack { .. }),
        "{err}"
    );
    let (dirs, others) = snapshot_root(tmp.path());
    assert!(dirs.is_empty(), "{dirs:?}");
    assert!(others.is_empty(), "{others:?}");
    assert!(!store.has(&digest.parse().unwrap()));
}

#[test]
fn an_unsafe_layer_fails_the_pull_and_writes_nothing_outside() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut img = Image::busybox();
    img.layers.push(Layer::from_tar(
        TarBuilder::new()
            .symlink("out", "/")
            .file("out/tmp/rcd-pull-escape", b"x")
            .finish(),
        Compression::Gzip,
    ));
    push_image(&reg, &tmp.path().join("layout"), &img, "evil:latest");
    let (store, snaps) = (store_in(tmp.path()), snapshots_in(tmp.path()));

    let err = pull_unpacking(&client(), &store, &snaps, &reg.image("evil")).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
    assert!(!Path::new("/tmp/rcd-pull-escape").exists());
    let (dirs, others) = snapshot_root(tmp.path());
    assert!(dirs.len() <= 1, "only busybox may be there: {dirs:?}");
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn concurrent_unpacking_pulls_of_images_sharing_a_base_do_each_layer_once() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    push_image(
        &reg,
        &tmp.path().join("a"),
        &three_layer_image("a"),
        "a:latest",
    );
    push_image(
        &reg,
        &tmp.path().join("b"),
        &three_layer_image("b"),
        "b:latest",
    );
    let (store, snaps) = (store_in(tmp.path()), snapshots_in(tmp.path()));
    let c = Arc::new(client());

    let images: Vec<String> = ["a", "b", "a", "b"].iter().map(|n| reg.image(n)).collect();
    let results = pull_at_once(&c, &store, Some(&snaps), &images);
    let pulled: Vec<Pulled> = results.into_iter().map(|r| r.unwrap()).collect();
    // busybox, a's and b's middle layers, and the data layer twice (same blob, two chains).
    let (dirs, others) = snapshot_root(tmp.path());
    assert_eq!(dirs.len(), 5, "{dirs:?}");
    assert!(others.is_empty(), "{others:?}");
    for p in &pulled {
        for dir in snaps.prepare(&layer_refs(p), &store).unwrap() {
            assert!(dir.is_dir());
        }
    }
    let base = pulled[0].layers[0].digest;
    let gets = requests(&reg, &format!("/v2/a/blobs/{base}")).len()
        + requests(&reg, &format!("/v2/b/blobs/{base}")).len();
    assert_eq!(gets, 1, "the shared base is downloaded once");
}

#[test]
fn a_resumed_layer_is_unpacked_after_its_download() {
    let (reg, tmp, _layout, _) = busybox_registry("busybox");
    let manifest = reg.manifest("busybox", "latest").json();
    let digest: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let blob = std::fs::read(reg.blob_path(&digest.to_string())).unwrap();
    let (store, snaps) = (store_in(tmp.path()), snapshots_in(tmp.path()));
    std::fs::write(
        tmp.path().join("content/ingest").join(digest.hex()),
        &blob[..blob.len() / 2],
    )
    .unwrap();

    let p = pull_unpacking(&client(), &store, &snaps, &reg.image("busybox")).unwrap();
    let gets = requests(&reg, &format!("/v2/busybox/blobs/{digest}"));
    assert!(gets[0].contains(" 206 "), "not a range request: {gets:#?}");
    let chain = layer_refs(&p)[0].diff_id;
    assert!(snaps.path(&chain).join("bin/busybox").is_file());
    let (dirs, others) = snapshot_root(tmp.path());
    assert_eq!((dirs.len(), others.len()), (1, 0));
}
