//! Importing images without a registry (`rctl image import FILE`): an OCI image layout tar or a
//! `docker save` tar in, verified blobs in the content store and image records out.

use std::collections::HashMap;
use std::io::Read;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::content::{self, ContentStore};
use super::digest::Digest;
use super::platform::{self, Want};
use super::reference;
use super::store::{self, Image, ImageStore, Layer};

/// Largest JSON document (index, manifest, config) read into memory.
const MAX_JSON: u64 = 8 * 1024 * 1024;
/// Largest blob accepted from an archive.
const MAX_BLOB: u64 = 64 * 1024 * 1024 * 1024;

/// An archive that could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive is not a tar, or a document in it is not what it should be.
    #[error("import: {0}")]
    Format(String),
    /// A blob failed verification or could not be stored.
    #[error("import: {0}")]
    Content(#[from] content::Error),
    /// An image record could not be written.
    #[error("import: {0}")]
    Store(#[from] store::Error),
}

fn format(msg: impl Into<String>) -> Error {
    Error::Format(msg.into())
}

/// `docker save`'s manifest.json entry.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Imports every image of an archive. `name` names an image the archive leaves unnamed (an OCI
/// layout whose entries carry no reference annotation). Returns the images recorded.
pub fn import(
    input: impl Read,
    content: &ContentStore,
    images: &ImageStore,
    want: &Want,
    name: Option<&str>,
) -> Result<Vec<Image>, Error> {
    let mut archive = tar::Archive::new(input);
    // Path in the archive -> the blob it was stored as; small documents kept in memory.
    let mut blobs: HashMap<String, Digest> = HashMap::new();
    let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format(format!("bad tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| format(format!("bad path: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            // Newer `docker save` links layer.tar files to blobs/sha256/...
            if let Ok(Some(target)) = entry.link_name() {
                let resolved = resolve(&path, &target.to_string_lossy());
                links.push((path, resolved));
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.header().size().map_err(|e| format(e.to_string()))?;
        if matches!(
            path.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            if size > MAX_JSON {
                return Err(format(format!("{path} is larger than {MAX_JSON} bytes")));
            }
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| format(format!("{path}: {e}")))?;
            docs.insert(path, data);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            // The name is the digest: the content store holds it to that.
            let digest: Digest = format!("sha256:{hex}")
                .parse()
                .map_err(|e| format(format!("{path}: {e}")))?;
            if !content.has(&digest) {
                let mut ingest = content.ingest(&digest, size)?;
                ingest.restart()?;
                std::io::copy(&mut entry, &mut ingest)
                    .map_err(|e| format(format!("{path}: {e}")))?;
                ingest.commit()?;
            }
            blobs.insert(path, digest);
        } else {
            let (digest, _) = content.put_stream(&mut entry, MAX_BLOB)?;
            blobs.insert(path, digest);
        }
    }
    for (path, target) in links {
        if let Some(d) = blobs.get(&target).copied() {
            blobs.insert(path, d);
        }
    }
    let found = if let Some(index) = docs.get("index.json") {
        from_layout(index, content, want, name)?
    } else if let Some(manifest) = docs.get("manifest.json") {
        from_docker_save(manifest, &blobs, content)?
    } else {
        return Err(format(
            "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
        ));
    };
    if found.is_empty() {
        return Err(format("the archive holds no image for this platform"));
    }
    for image in &found {
        images.put(image)?;
    }
    Ok(found)
}

/// A symlink target relative to the link's directory, as an archive path.
fn resolve(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for p in target.split('/') {
        match p {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, data: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(data).map_err(|e| format(format!("{what}: {e}")))
}

/// The stored image for a verified manifest and its config.
fn image_of(
    name: String,
    manifest_digest: Digest,
    manifest: &ImageManifest,
    content: &ContentStore,
) -> Result<Image, Error> {
    let config_digest: Digest = manifest
        .config()
        .digest()
        .to_string()
        .parse()
        .map_err(|e| format(format!("config digest: {e}")))?;
    let config: ImageConfiguration = parse_json("image config", &content.read(&config_digest)?)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(format(format!(
            "image {name}: {} layers but {} DiffIDs in its config",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (l, diff) in manifest.layers().iter().zip(diff_ids) {
        let blob: Digest = l
            .digest()
            .to_string()
            .parse()
            .map_err(|e| format(format!("layer digest: {e}")))?;
        if !content.has(&blob) {
            return Err(format(format!(
                "image {name}: layer {blob} is not in the archive"
            )));
        }
        layers.push(Layer {
            blob,
            diff_id: diff.parse().map_err(|e| format(format!("DiffID: {e}")))?,
            size: l.size(),
            media_type: l.media_type().to_string(),
        });
    }
    Ok(Image {
        name,
        manifest: manifest_digest,
        config: config_digest,
        digest: None,
        layers,
        stored_ms: crate::clock::now_ms(),
    })
}

fn from_layout(
    index: &[u8],
    content: &ContentStore,
    want: &Want,
    name: Option<&str>,
) -> Result<Vec<Image>, Error> {
    let index: ImageIndex = parse_json("index.json", index)?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        let given = annotations
            .get("io.containerd.image.name")
            .or_else(|| annotations.get("org.opencontainers.image.ref.name"))
            .map(String::as_str)
            .or(name)
            .ok_or_else(|| format("an image in the layout has no name: give one (--name)"))?;
        // A bare tag ("latest") names a tag of the image the caller named, unless the caller
        // gave a tag (or digest) of its own.
        let caller_tagged = name.is_some_and(|n| {
            n.rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':') || last.contains('@'))
        });
        let full = match (given.contains('/') || given.contains(':'), name) {
            (false, Some(n)) if caller_tagged => n.to_string(),
            (false, Some(n)) => {
                let r = reference::parse(n).map_err(|e| format(e.to_string()))?;
                format!("{}/{}:{given}", r.registry(), r.repository())
            }
            _ => given.to_string(),
        };
        let normalized = reference::parse(&full)
            .map_err(|e| format(e.to_string()))?
            .whole();
        let mut digest: Digest = desc
            .digest()
            .to_string()
            .parse()
            .map_err(|e| format(format!("manifest digest: {e}")))?;
        let mut doc = content.read(&digest)?;
        // A multi-platform entry: pick this host's manifest.
        if desc.media_type().to_string().contains("index")
            || desc.media_type().to_string().contains("manifest.list")
        {
            let nested: ImageIndex = parse_json("image index", &doc)?;
            let Some(chosen) = platform::choose(nested.manifests(), want) else {
                continue;
            };
            digest = chosen
                .digest()
                .to_string()
                .parse()
                .map_err(|e| format(format!("manifest digest: {e}")))?;
            doc = content.read(&digest)?;
        }
        let manifest: ImageManifest = parse_json("image manifest", &doc)?;
        out.push(image_of(normalized, digest, &manifest, content)?);
    }
    Ok(out)
}

fn from_docker_save(
    manifest: &[u8],
    blobs: &HashMap<String, Digest>,
    content: &ContentStore,
) -> Result<Vec<Image>, Error> {
    let entries: Vec<SaveEntry> = parse_json("manifest.json", manifest)?;
    let mut out = Vec::new();
    for e in entries {
        let blob = |p: &str| {
            blobs.get(p).copied().ok_or_else(|| {
                format(format!(
                    "{p} is named in manifest.json but not in the archive"
                ))
            })
        };
        let config = blob(&e.config)?;
        let config_bytes = content.read(&config)?;
        let mut layers = Vec::new();
        for p in &e.layers {
            let d = blob(p)?;
            let size = std::fs::metadata(content.path(&d))
                .map(|m| m.len())
                .unwrap_or(0);
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                "digest": d.to_string(),
                "size": size,
            }));
        }
        // `docker save` has no manifest blob of its own: write the Docker v2 manifest it implies,
        // so every stored image is a manifest, a config and layers.
        let doc = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        }))
        .map_err(|e| format(e.to_string()))?;
        let digest = Digest::of(&doc);
        content.put(&digest, &doc)?;
        let manifest: ImageManifest = parse_json("image manifest", &doc)?;
        if e.repo_tags.is_empty() {
            return Err(format("an image in the archive has no RepoTags"));
        }
        for tag in &e.repo_tags {
            let name = reference::parse(tag)
                .map_err(|e| format(e.to_string()))?
                .whole();
            out.push(image_of(name, digest, &manifest, content)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::Limits;
    use crate::image::snapshot::Snapshots;
    use std::io::Write;

    fn header(size: usize) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            b.append_data(&mut header(data.len()), name, &data[..])
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A one-layer image: (layer tar, config json).
    fn image_parts() -> (Vec<u8>, Vec<u8>) {
        let layer = tar_of(&[("hello", b"world".to_vec())]);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": { "Cmd": ["sh"], "Env": ["PATH=/bin"] },
            "rootfs": { "type": "layers", "diff_ids": [Digest::of(&layer).to_string()] },
        }))
        .unwrap();
        (layer, config)
    }

    fn oci_layout(tamper: bool, ref_name: &str) -> Vec<u8> {
        let (layer, config) = image_parts();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).unwrap();
        let blob = gz.finish().unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": Digest::of(&config).to_string(), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                         "digest": Digest::of(&blob).to_string(), "size": blob.len() }],
        }))
        .unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
                            "annotations": { "org.opencontainers.image.ref.name": ref_name } }],
        }))
        .unwrap();
        let mut stored_blob = blob.clone();
        if tamper {
            stored_blob[20] ^= 0xff;
        }
        let path = |d: &[u8]| format!("blobs/sha256/{}", Digest::of(d).hex());
        tar_of(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json", index),
            (&path(&manifest), manifest.clone()),
            (&path(&config), config.clone()),
            (&path(&blob), stored_blob),
        ])
    }

    fn stores() -> (tempfile::TempDir, ContentStore, ImageStore) {
        let d = tempfile::tempdir().unwrap();
        let c = ContentStore::open(&d.path().join("content")).unwrap();
        let i = ImageStore::open(&d.path().join("images")).unwrap();
        (d, c, i)
    }

    fn unpacks(image: &Image, content: &ContentStore, dir: &std::path::Path) {
        let snaps = Snapshots::open(&dir.join("snapshots"), Limits::default()).unwrap();
        let refs = image.layer_refs();
        let dirs = snaps.prepare(&refs, content).unwrap();
        assert_eq!(std::fs::read(dirs[0].join("hello")).unwrap(), b"world");
    }

    #[test]
    fn an_oci_layout_imports_and_unpacks() {
        let (d, content, images) = stores();
        let got = import(
            &oci_layout(false, "busybox:1.36")[..],
            &content,
            &images,
            &Want::host(),
            None,
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "docker.io/library/busybox:1.36");
        assert_eq!(
            images.get("docker.io/library/busybox:1.36").unwrap(),
            Some(got[0].clone())
        );
        unpacks(&got[0], &content, d.path());
        // A bare tag takes the name the operator gives.
        let got = import(
            &oci_layout(false, "v2")[..],
            &content,
            &images,
            &Want::host(),
            Some("127.0.0.1:5000/app"),
        )
        .unwrap();
        assert_eq!(got[0].name, "127.0.0.1:5000/app:v2");
    }

    #[test]
    fn a_tampered_blob_fails_the_import_and_stores_nothing_under_its_name() {
        let (_d, content, images) = stores();
        let err = import(
            &oci_layout(true, "busybox:1.36")[..],
            &content,
            &images,
            &Want::host(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Content(content::Error::Digest { .. })),
            "{err}"
        );
        assert!(images.list().unwrap().is_empty());
    }

    #[test]
    fn a_docker_save_archive_imports() {
        let (d, content, images) = stores();
        let (layer, config) = image_parts();
        let config_name = format!("{}.json", Digest::of(&config).hex());
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["busybox:latest", "registry.example.com/tools/bb:1"],
            "Layers": ["abc/layer.tar"],
        }]))
        .unwrap();
        let archive = tar_of(&[
            ("manifest.json", manifest),
            (&config_name, config),
            ("abc/layer.tar", layer),
            ("abc/VERSION", b"1.0".to_vec()),
        ]);
        let got = import(&archive[..], &content, &images, &Want::host(), None).unwrap();
        let names: Vec<_> = got.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/busybox:latest",
                "registry.example.com/tools/bb:1"
            ]
        );
        unpacks(&got[0], &content, d.path());
        // The manifest rcd wrote for it is in the store and verifies.
        assert!(content.read(&got[0].manifest).is_ok());
    }

    #[test]
    fn not_an_image_archive() {
        let (_d, content, images) = stores();
        let junk = tar_of(&[("README", b"hi".to_vec())]);
        let err = import(&junk[..], &content, &images, &Want::host(), None).unwrap_err();
        assert!(
            err.to_string().contains("neither an OCI image layout"),
            "{err}"
        );
        assert!(resolve("abc/layer.tar", "../blobs/sha256/ff") == "blobs/sha256/ff");
    }
}
