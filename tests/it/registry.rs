//! The registry fixture: Debian's `docker-registry` on 127.0.0.1, OCI image layouts built from
//! the busybox rootfs (or from crafted tar bytes), pushed with `skopeo`, and a minimal HTTP/1.1
//! client to look at what the registry serves. Its own tests prove each part. A registry may
//! speak TLS (and require client certificates) with a throwaway PKI made by `openssl`.
//!
//! Needs `docker-registry`, `skopeo` (and `zstd` for zstd layers, `openssl` for TLS):
//! `sh scripts/setup.sh`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::rootfs;

/// Debian's registry (package `docker-registry`, distribution 2.8).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// Debian's skopeo, which pushes layouts and inspects what the registry serves.
pub const SKOPEO_BIN: &str = "/usr/bin/skopeo";
/// Debian's openssl, which makes the TLS registries' throwaway certificates.
pub const OPENSSL_BIN: &str = "/usr/bin/openssl";

/// Media types, as they appear in manifests, `Accept` and `Content-Type`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type, for an `Accept` header that takes whatever was pushed.
pub const ACCEPT_ANY_MANIFEST: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Panics with the install hint if a tool the fixture runs is missing.
pub fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: `sh scripts/setup.sh` (as root) installs docker-registry, skopeo, zstd and openssl"
    );
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// This host's architecture as OCI names it (`GOARCH`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => panic!("no OCI architecture name for {other}"),
    }
}

/// An architecture that is not this host's, for the second platform of a multi-arch index.
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// Runs `cmd` with `input` on stdin; returns its output, panicking with stderr on failure.
fn pipe(mut cmd: Command, input: Vec<u8>) -> Vec<u8> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // A writer thread: the child may fill its stdout before it has read all of stdin.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command to completion; panics with its stderr if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Layers

/// How a layer's tar is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer blob as it goes into a manifest.
#[derive(Clone, Debug)]
pub struct Layer {
    pub media_type: String,
    /// The bytes the registry stores (compressed, if the media type says so).
    pub blob: Vec<u8>,
    /// sha256 of the uncompressed tar, for the image config's `rootfs.diff_ids`.
    pub diff_id: String,
}

impl Layer {
    /// A layer from uncompressed tar bytes, compressed with the system `gzip -n` or `zstd`.
    pub fn from_tar(tar: Vec<u8>, compression: Compression) -> Layer {
        let diff_id = sha256_digest(&tar);
        let (media_type, blob) = match compression {
            Compression::None => (OCI_LAYER_TAR, tar),
            Compression::Gzip => {
                let mut c = Command::new("gzip");
                c.args(["-n", "-c"]);
                (OCI_LAYER_GZIP, pipe(c, tar))
            }
            Compression::Zstd => {
                require("/usr/bin/zstd");
                let mut c = Command::new("zstd");
                c.args(["-q", "-c"]);
                (OCI_LAYER_ZSTD, pipe(c, tar))
            }
        };
        Layer {
            media_type: media_type.to_string(),
            blob,
            diff_id,
        }
    }

    /// A layer of a directory's contents (names without a `./` prefix, sorted, mtime 0, owners
    /// numeric), so the same directory always gives the same digest.
    pub fn from_dir(dir: &Path, compression: Compression) -> Layer {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let out = run(Command::new("tar")
            .arg("-C")
            .arg(dir)
            .args([
                "--sort=name",
                "--mtime=@0",
                "--numeric-owner",
                "--format=gnu",
                "-cf",
                "-",
                "--",
            ])
            .args(&names));
        Layer::from_tar(out.stdout, compression)
    }

    /// Arbitrary bytes under any media type and diff id: a blob nothing could unpack.
    pub fn raw(blob: Vec<u8>, media_type: &str, diff_id: &str) -> Layer {
        Layer {
            media_type: media_type.to_string(),
            blob,
            diff_id: diff_id.to_string(),
        }
    }

    /// The uncompressed tar of the busybox rootfs (see `harness::rootfs`).
    pub fn busybox(compression: Compression) -> Layer {
        Layer::from_dir(&rootfs(), compression)
    }
}

/// Writes tar archives entry by entry, including entries no archiver would write (`..`,
/// absolute names, links out, devices): the material of the layer-safety tests. ustar format,
/// with the `prefix` field for names up to 255 bytes.
#[derive(Default)]
pub struct TarBuilder {
    buf: Vec<u8>,
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one header (and `data`, padded to 512 bytes). `kind` is the ustar typeflag.
    pub fn entry(&mut self, kind: u8, name: &str, mode: u32, link: &str, data: &[u8]) -> &mut Self {
        self.entry_dev(kind, name, mode, link, data, 0, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn entry_dev(
        &mut self,
        kind: u8,
        name: &str,
        mode: u32,
        link: &str,
        data: &[u8],
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = [0u8; 512];
        let (prefix, base) = if name.len() <= 100 {
            ("", name)
        } else {
            // Split at a '/' so that the prefix fits 155 bytes and the rest 100.
            let cut = name[..name.len().min(156)]
                .rfind('/')
                .filter(|&i| name.len() - i - 1 <= 100)
                .unwrap_or_else(|| panic!("tar name too long for ustar: {name}"));
            (&name[..cut], &name[cut + 1..])
        };
        assert!(link.len() <= 100, "tar link name too long: {link}");
        fn put(h: &mut [u8], at: usize, s: &[u8]) {
            h[at..at + s.len()].copy_from_slice(s);
        }
        fn octal(h: &mut [u8], at: usize, width: usize, v: u64) {
            let s = format!("{v:0w$o}", w = width - 1);
            put(h, at, s.as_bytes());
        }
        put(&mut h, 0, base.as_bytes());
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, 0);
        h[156] = kind;
        put(&mut h, 157, link.as_bytes());
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        put(&mut h, 265, b"root");
        put(&mut h, 297, b"root");
        octal(&mut h, 329, 8, u64::from(major));
        octal(&mut h, 337, 8, u64::from(minor));
        put(&mut h, 345, prefix.as_bytes());
        // The checksum is computed with its own field as spaces.
        put(&mut h, 148, b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A regular file, mode 0644.
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, 0o644, "", data)
    }

    /// A regular file with `mode` (e.g. 0o755, or setuid bits).
    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, mode, "", data)
    }

    /// A directory, mode 0755.
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(b'5', name, 0o755, "", b"")
    }

    /// A symbolic link `name` -> `target` (not checked: may point anywhere).
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'2', name, 0o777, target, b"")
    }

    /// A hard link `name` to the archive member (or any path) `target`.
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'1', name, 0o644, target, b"")
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        self.entry_dev(b'3', name, 0o666, "", b"", major, minor)
    }

    /// A block device node.
    pub fn block_device(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        self.entry_dev(b'4', name, 0o660, "", b"", major, minor)
    }

    /// A named pipe.
    pub fn fifo(&mut self, name: &str) -> &mut Self {
        self.entry(b'6', name, 0o644, "", b"")
    }

    /// An OCI whiteout: deletes `path` (e.g. `etc/motd`) from the layers below.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, base) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        self.file(&format!("{dir}.wh.{base}"), b"")
    }

    /// An OCI opaque whiteout: hides everything the layers below have in `dir`.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), b"")
    }

    /// The archive, with its two zero blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Images and OCI layouts

/// A descriptor (media type, digest, size, and for index entries a platform).
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<(String, String)>,
}

impl Descriptor {
    /// The descriptor as it appears in a manifest or index.
    pub fn json(&self) -> Value {
        let mut v = json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size});
        if let Some((os, arch)) = &self.platform {
            v["platform"] = json!({"os": os, "architecture": arch});
        }
        v
    }
}

/// An image to write into a layout: its layers, platform and the config's `config` object.
#[derive(Clone, Debug)]
pub struct Image {
    pub os: String,
    pub architecture: String,
    pub layers: Vec<Layer>,
    /// The image config's `config` (Env, Cmd, Entrypoint, WorkingDir, User, ...).
    pub config: Value,
}

impl Image {
    /// Busybox for this host: one gzip layer of the rootfs, `PATH` set, `Cmd ["sh"]`.
    pub fn busybox() -> Image {
        Image {
            os: "linux".into(),
            architecture: host_arch().into(),
            layers: vec![Layer::busybox(Compression::Gzip)],
            config: json!({
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
                "WorkingDir": "/",
            }),
        }
    }

    /// An image of `layers` for another platform, with no busybox: it cannot run here.
    pub fn foreign(architecture: &str, layers: Vec<Layer>) -> Image {
        Image {
            os: "linux".into(),
            architecture: architecture.into(),
            layers,
            config: json!({"Cmd": ["/platform"]}),
        }
    }

    /// The image config JSON.
    pub fn config_json(&self) -> Value {
        json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config,
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": self.layers.iter().enumerate()
                .map(|(i, _)| json!({"created": "1970-01-01T00:00:00Z",
                                     "created_by": format!("rcd tests: layer {i}")}))
                .collect::<Vec<_>>(),
        })
    }
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
pub struct OciLayout {
    pub dir: PathBuf,
}

impl OciLayout {
    /// Creates an empty layout at `dir` (created if missing).
    pub fn create(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let layout = OciLayout {
            dir: dir.to_path_buf(),
        };
        layout.write_index(&[]);
        layout
    }

    fn write_index(&self, manifests: &[Value]) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// Path of a blob in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Stores a blob; returns its descriptor.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = sha256_digest(bytes);
        std::fs::write(self.blob_path(&digest), bytes).unwrap();
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            platform: None,
        }
    }

    /// Stores an image's layers, config and manifest; returns the manifest's descriptor, with
    /// the image's platform (for use in an index).
    pub fn add_image(&self, image: &Image) -> Descriptor {
        let layers: Vec<Value> = image
            .layers
            .iter()
            .map(|l| self.put_blob(&l.media_type, &l.blob).json())
            .collect();
        let config = self.put_blob(
            OCI_CONFIG,
            &serde_json::to_vec(&image.config_json()).unwrap(),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers,
        });
        let mut desc = self.put_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        desc.platform = Some((image.os.clone(), image.architecture.clone()));
        desc
    }

    /// Stores an image index of `manifests` (descriptors with platforms); returns its descriptor.
    pub fn add_index(&self, manifests: &[Descriptor]) -> Descriptor {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests.iter().map(Descriptor::json).collect::<Vec<_>>(),
        });
        self.put_blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    }

    /// Names `desc` as `tag` in `index.json` (replacing an older entry of that name).
    pub fn tag(&self, tag: &str, desc: &Descriptor) {
        let index: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        let mut manifests: Vec<Value> = index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag)
            .collect();
        let mut entry = desc.json();
        if let Some(o) = entry.as_object_mut() {
            o.remove("platform");
        }
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        manifests.push(entry);
        self.write_index(&manifests);
    }

    /// Writes the layout as a tar file (what `rctl image import` takes).
    pub fn to_tar(&self, file: &Path) {
        run(Command::new("tar")
            .arg("-C")
            .arg(&self.dir)
            .arg("-cf")
            .arg(file)
            .args(["oci-layout", "index.json", "blobs"]));
    }

    /// Writes the image tagged `tag` as a `docker save` tar, named `name` (e.g. `busybox:latest`).
    pub fn to_docker_archive(&self, tag: &str, file: &Path, name: &str) {
        require(SKOPEO_BIN);
        let policy = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(policy.path(), POLICY).unwrap();
        let _ = std::fs::remove_file(file);
        run(Command::new(SKOPEO_BIN)
            .arg("--policy")
            .arg(policy.path())
            .args(["copy", "-q"])
            .arg(format!("oci:{}:{tag}", self.dir.display()))
            .arg(format!("docker-archive:{}:{name}", file.display())));
    }
}

/// Busybox with `/app/run` holding `script` (a shell script), which is the image's command: one
/// image a version, for the image update tests.
pub fn app_image(script: &str) -> Image {
    let mut img = Image::busybox();
    img.layers.push(Layer::from_tar(
        TarBuilder::new()
            .dir("app")
            .file_mode(
                "app/run",
                0o755,
                format!("#!/bin/sh\n{script}\n").as_bytes(),
            )
            .finish(),
        Compression::Gzip,
    ));
    img.config = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/app/run"],
    });
    img
}

/// Builds at `dir` an OCI layout holding busybox for this host, tagged `latest`; returns the
/// layout and the manifest's descriptor.
pub fn busybox_oci_layout(dir: &Path) -> (OciLayout, Descriptor) {
    let layout = OciLayout::create(dir);
    let desc = layout.add_image(&Image::busybox());
    layout.tag("latest", &desc);
    (layout, desc)
}

/// A layer with one file, `/platform`, naming `arch`.
pub fn platform_layer(arch: &str) -> Layer {
    Layer::from_tar(
        TarBuilder::new()
            .file_mode("platform", 0o755, format!("{arch}\n").as_bytes())
            .finish(),
        Compression::Gzip,
    )
}

/// Builds at `dir` an OCI layout whose tag `latest` is an image index of two platforms: busybox
/// for this host, and a non-runnable image for `other_arch()` whose one layer holds `/platform`.
/// Returns the layout, the index's descriptor and the two manifests' (host first).
pub fn multi_arch_layout(dir: &Path) -> (OciLayout, Descriptor, Vec<Descriptor>) {
    let layout = OciLayout::create(dir);
    let host = layout.add_image(&Image::busybox());
    let other = layout.add_image(&Image::foreign(
        other_arch(),
        vec![platform_layer(other_arch())],
    ));
    let index = layout.add_index(&[host.clone(), other.clone()]);
    layout.tag("latest", &index);
    (layout, index, vec![host, other])
}

// ---------------------------------------------------------------------------------------------
// The registry

const POLICY: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

/// The password file entry for htpasswd auth: a bcrypt hash, from libcrypt through perl
/// (`perl-base` is essential in Debian), so apache2-utils' `htpasswd` is not needed.
fn htpasswd_line(user: &str, password: &str) -> String {
    // Cost 5 keeps each authenticated request fast; the salt's last character has its unused
    // low bits clear, as bcrypt requires.
    let out = run(Command::new("perl")
        .args([
            "-e",
            "print crypt($ARGV[0], '$2y$05$' . 'rcdtestsrcdtestsrcdtee')",
        ])
        .arg(password));
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(
        hash.starts_with("$2y$05$"),
        "libcrypt without bcrypt: {hash:?}"
    );
    format!("{user}:{hash}\n")
}

/// Minimal base64 (standard alphabet, padded), for `Authorization: Basic`.
pub fn base64(input: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An HTTP response: status, headers (names lower-cased) and the body (de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the start of the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }

    /// The body as (lossy) UTF-8, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request to `addr` (127.0.0.1 only) with `Connection: close`.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    assert!(
        addr.starts_with("127.0.0.1:"),
        "tests talk to 127.0.0.1 only"
    );
    let sock = addr.parse().expect("socket address");
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: rcd-tests\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size + 2 {
                return Err(bad("short chunk"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A throwaway PKI made with `openssl` in a temporary directory: a CA, a server certificate for
/// IP 127.0.0.1 (a SAN, which is what clients check) and a client certificate (for mutual TLS),
/// both signed by the CA. EC P-256 keys, valid for two days.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A new CA and its two certificates.
    pub fn generate() -> Pki {
        require(OPENSSL_BIN);
        let dir = tempfile::Builder::new()
            .prefix("rcd-pki")
            .tempdir()
            .expect("tempdir");
        let pki = Pki { dir };
        let openssl = |args: &[&str]| {
            run(Command::new(OPENSSL_BIN)
                .current_dir(pki.dir.path())
                .args(args));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        // Each CA its own name: a client that finds a CA of the right name but the wrong key
        // reports a bad signature, not the unknown issuer a stranger's CA is.
        let subject = format!(
            "/CN=rcd test CA {}",
            pki.dir.path().file_name().unwrap().to_string_lossy()
        );
        // The CA: self-signed, with Debian's openssl.cnf `v3_ca` extensions (CA:TRUE).
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt"],
                &["-days", "2", "-subj", &subject],
            ]
            .concat(),
        );
        for (name, usage, san) in [
            ("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
            ("client", "clientAuth", ""),
        ] {
            let ext = format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\n{san}"
            );
            std::fs::write(pki.dir.path().join(format!("{name}.ext")), ext).unwrap();
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let subject = format!("/CN=rcd test {name}");
            openssl(
                &[
                    &["req", "-new"][..],
                    &ec,
                    &["-keyout", &key, "-out", &csr, "-subj", &subject],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &crt,
            ]);
        }
        pki
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server certificate, for 127.0.0.1.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The client certificate.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    /// The client's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}

/// How a registry speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// HTTPS with the PKI's server certificate.
    Server,
    /// As `Server`, and every client must present a certificate signed by the PKI's CA
    /// (`http.tls.clientcas`).
    Mutual,
}

/// How `Registry::push` writes the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// As it is in the layout (OCI manifests and indexes).
    Oci,
    /// Converted by skopeo to Docker v2 schema 2 (manifests and manifest lists; gzip layers).
    V2s2,
}

/// A `docker-registry` on 127.0.0.1 with its own port and storage; killed and its directory
/// removed on drop (also when a test panics).
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Basic-auth user and password, if started with auth.
    pub credentials: Option<(String, String)>,
    /// The storage root (`storage.filesystem.rootdirectory`).
    pub storage: PathBuf,
    /// How it speaks TLS, if it does.
    pub tls: Option<Tls>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Self::start_inner(None, None)
    }

    /// A registry with htpasswd (HTTP basic) auth: every request needs `user:password`.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), password.to_string())), None)
    }

    /// An anonymous registry speaking HTTPS only, with `pki`'s certificates (copied: `pki` may
    /// go). skopeo still pushes to it (unverified, and with the client certificate if `Mutual`);
    /// the plain-HTTP helpers (`request`, `get`, `manifest`, ...) do not reach it.
    pub fn start_tls(pki: &Pki, tls: Tls) -> Registry {
        Self::start_inner(None, Some((pki, tls)))
    }

    fn start_inner(credentials: Option<(String, String)>, tls: Option<(&Pki, Tls)>) -> Registry {
        require(REGISTRY_BIN);
        require(SKOPEO_BIN);
        let mut last_log = String::new();
        // A port picked by binding :0 can be taken before the registry binds it: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind 127.0.0.1:0")
                .port();
            let dir = tempfile::Builder::new()
                .prefix("rcd-registry")
                .tempdir()
                .expect("tempdir");
            let mut reg = Registry {
                addr: format!("127.0.0.1:{port}"),
                credentials: credentials.clone(),
                storage: dir.path().join("storage"),
                tls: tls.map(|(_, t)| t),
                child: None,
                dir,
            };
            if let Some((pki, _)) = tls {
                reg.copy_pki(pki);
            }
            reg.write_config();
            let log = std::fs::File::create(reg.log_path()).unwrap();
            let mut cmd = Command::new(REGISTRY_BIN);
            cmd.arg("serve")
                .arg(reg.dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // REGISTRY_* variables override the config file; none of the caller's may leak in.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            reg.child = Some(cmd.spawn().expect("spawn docker-registry"));
            match reg.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return reg,
                Err(log) => last_log = log, // `reg` dropped: killed, directory removed
            }
        }
        panic!("docker-registry did not start in 5 tries; last log:\n{last_log}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// What the registry has logged (stdout and stderr, including its access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The registry's certificates in its own directory, and the client pair as skopeo's
    /// `--cert-dir` wants it (`client.cert`, `client.key`).
    fn copy_pki(&self, pki: &Pki) {
        let d = self.dir.path();
        std::fs::create_dir(d.join("client")).unwrap();
        for (from, to) in [
            (pki.ca(), d.join("ca.crt")),
            (pki.server_cert(), d.join("server.crt")),
            (pki.server_key(), d.join("server.key")),
            (pki.ca(), d.join("client/ca.crt")),
            (pki.client_cert(), d.join("client/client.cert")),
            (pki.client_key(), d.join("client/client.key")),
        ] {
            std::fs::copy(&from, &to)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
        }
    }

    fn write_config(&self) {
        let auth = match &self.credentials {
            Some((user, password)) => {
                let file = self.dir.path().join("htpasswd");
                std::fs::write(&file, htpasswd_line(user, password)).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: rcd-tests\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let d = self.dir.path();
        let tls = match self.tls {
            None => String::new(),
            Some(tls) => {
                let mut t = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    d.join("server.crt").display(),
                    d.join("server.key").display()
                );
                if tls == Tls::Mutual {
                    t.push_str(&format!(
                        "    clientcas:\n      - {}\n",
                        d.join("ca.crt").display()
                    ));
                }
                t
            }
        };
        // docker-registry 2.8: `version` is required; there is no log-to-file option (stderr is
        // redirected instead); a fixed `http.secret` silences the per-start warning; upload
        // purging and the storage health check are off so that nothing runs in the background.
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: rcd-tests-secret\n\
             {tls}\
             {auth}",
            storage = self.storage.display(),
            addr = self.addr,
        );
        std::fs::write(self.dir.path().join("config.yml"), config).unwrap();
        std::fs::write(self.dir.path().join("policy.json"), POLICY).unwrap();
        std::fs::write(self.dir.path().join("registries.conf"), "").unwrap();
    }

    /// Waits until this process (not another on the same port) listens and `/v2/` answers.
    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let listening = format!("listening on {}", self.addr);
        // Go answers plain HTTP on a TLS port with 400 "Client sent an HTTP request to an
        // HTTPS server": that it does says this process serves TLS there.
        let expected = match (&self.credentials, self.tls) {
            (_, Some(_)) => 400,
            (Some(_), None) => 401,
            (None, None) => 200,
        };
        while Instant::now() < deadline {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("exited with {st}\n{}", self.log()));
            }
            if self.log().contains(&listening) {
                if let Ok(r) = http(&self.addr, "GET", "/v2/", &[], b"") {
                    if r.status == expected {
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not ready within {within:?}\n{}", self.log()))
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The temporary directory (config, storage, log) removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:PORT/name` for a repository `name[:tag]` in this registry.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// Where the registry stores a blob: overwrite it to serve tampered content.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn skopeo(&self) -> Command {
        let mut c = Command::new(SKOPEO_BIN);
        c.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("--registries-conf")
            .arg(self.dir.path().join("registries.conf"))
            // No credentials from the caller's auth files, only those passed here.
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("no-auth.json"))
            .env("TMPDIR", self.dir.path());
        c
    }

    fn creds_arg(&self, flag: &str) -> Vec<String> {
        match &self.credentials {
            Some((u, p)) => vec![format!("{flag}={u}:{p}")],
            None => vec![],
        }
    }

    /// skopeo's client certificate for a registry that wants one (its `--cert-dir` reads
    /// `*.cert`/`*.key` pairs, Docker's certs.d convention).
    fn cert_dir_arg(&self, flag: &str) -> Vec<String> {
        match self.tls {
            Some(Tls::Mutual) => vec![format!("{flag}={}", self.client_cert_dir().display())],
            _ => vec![],
        }
    }

    /// A directory with this registry's CA as `ca.crt` and the client pair as `client.cert` and
    /// `client.key` (if it speaks TLS): a certs.d directory that trusts it and is trusted.
    pub fn client_cert_dir(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// Pushes an image of the layout to `127.0.0.1:PORT/reference` (`name[:tag]`), every
    /// platform of an index included (`--all`), as it is: digests preserved, uncompressed and
    /// non-tar layers left alone. The source is the layout's only entry, or if it has several,
    /// the one named as the reference's tag. Returns the pushed top-level manifest's digest.
    pub fn push_layout(&self, layout: &Path, reference: &str) -> String {
        self.push(layout, reference, Format::Oci)
    }

    /// Pushes `image` as `reference` (`name:tag`) through a layout of its own; returns what a
    /// unit names (`127.0.0.1:PORT/name:tag`).
    pub fn push_image(&self, reference: &str, image: &Image) -> String {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(&dir.path().join("layout"));
        let desc = layout.add_image(image);
        layout.tag("latest", &desc);
        self.push_layout(&layout.dir, reference);
        self.image(reference)
    }

    /// As `push_layout`, converted to Docker v2 schema 2.
    pub fn push_layout_v2s2(&self, layout: &Path, reference: &str) -> String {
        self.push(layout, reference, Format::V2s2)
    }

    /// Pushes with skopeo; see `push_layout`.
    pub fn push(&self, layout: &Path, reference: &str, format: Format) -> String {
        let out = self.try_push(layout, reference, format);
        assert!(
            out.status.success(),
            "skopeo copy {} -> {reference} failed: {}\n--- registry log ---\n{}",
            layout.display(),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let digest_file = self.dir.path().join("push.digest");
        std::fs::read_to_string(digest_file).expect("skopeo --digestfile")
    }

    /// Pushes with skopeo; returns its output, success or not (for pushes meant to fail).
    pub fn try_push(&self, layout: &Path, reference: &str, format: Format) -> Output {
        let index: Value = serde_json::from_slice(
            &std::fs::read(layout.join("index.json")).expect("layout index.json"),
        )
        .expect("index.json is JSON");
        let source = if index["manifests"].as_array().map_or(0, Vec::len) == 1 {
            format!("oci:{}", layout.display())
        } else {
            format!("oci:{}:{}", layout.display(), tag_of(reference))
        };
        let digest_file = self.dir.path().join("push.digest");
        let _ = std::fs::remove_file(&digest_file);
        let mut cmd = self.skopeo();
        cmd.args(["copy", "-q", "--all", "--dest-tls-verify=false"])
            .arg("--digestfile")
            .arg(&digest_file)
            .args(self.creds_arg("--dest-creds"))
            .args(self.cert_dir_arg("--dest-cert-dir"));
        match format {
            Format::Oci => cmd.arg("--preserve-digests"),
            Format::V2s2 => cmd.args(["--format", "v2s2"]),
        };
        cmd.arg(source)
            .arg(format!("docker://{}", self.image(reference)))
            .stdin(Stdio::null())
            .output()
            .expect("spawn skopeo")
    }

    /// `skopeo inspect` of `reference` in this registry (`--raw` with `raw`), with this
    /// registry's credentials; the command's output, success or not.
    pub fn skopeo_inspect(&self, reference: &str, raw: bool, with_credentials: bool) -> Output {
        let mut cmd = self.skopeo();
        cmd.args(["inspect", "--tls-verify=false"])
            .args(self.cert_dir_arg("--cert-dir"));
        if raw {
            cmd.arg("--raw");
        }
        if with_credentials {
            cmd.args(self.creds_arg("--creds"));
        }
        cmd.arg(format!("docker://{}", self.image(reference)))
            .stdin(Stdio::null())
            .output()
            .expect("spawn skopeo")
    }

    /// `skopeo inspect` as JSON; panics if it fails.
    pub fn inspect(&self, reference: &str) -> Value {
        let out = self.skopeo_inspect(reference, false, true);
        assert!(
            out.status.success(),
            "skopeo inspect {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("skopeo inspect json")
    }

    /// An HTTP request to the registry, with its credentials if it has any.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, String)]) -> Response {
        self.send(method, path, headers, b"")
    }

    /// As `request`, with a body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Response {
        let mut all: Vec<(&str, String)> = headers.to_vec();
        if let Some((u, p)) = &self.credentials {
            all.push((
                "Authorization",
                format!("Basic {}", base64(format!("{u}:{p}").as_bytes())),
            ));
        }
        http(&self.addr, method, path, &all, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// GET with an `Accept` header of `accept` (none if empty).
    pub fn get(&self, path: &str, accept: &[&str]) -> Response {
        let headers: Vec<(&str, String)> = if accept.is_empty() {
            vec![]
        } else {
            vec![("Accept", accept.join(", "))]
        };
        self.request("GET", path, &headers)
    }

    /// `GET /v2/<name>/manifests/<reference>` accepting every manifest type; asserts 200.
    pub fn manifest(&self, name: &str, reference: &str) -> Response {
        let r = self.get(
            &format!("/v2/{name}/manifests/{reference}"),
            ACCEPT_ANY_MANIFEST,
        );
        assert_eq!(r.status, 200, "manifest {name}:{reference}: {}", r.text());
        r
    }

    /// Uploads `bytes` as a blob of repository `name` with the distribution API (POST, then PUT
    /// with the digest), bypassing skopeo; returns its digest.
    pub fn upload_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let r = self.send("POST", &format!("/v2/{name}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "start upload: {}", r.text());
        let location = r.header("location").expect("upload location").to_string();
        // The location may be absolute; keep the path and query.
        let path = match location.find("/v2/") {
            Some(i) => location[i..].to_string(),
            None => location,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = self.send(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream".into())],
            bytes,
        );
        assert_eq!(r.status, 201, "finish upload: {}", r.text());
        digest
    }

    /// PUTs a manifest as raw bytes (anything: skopeo would refuse some); returns the response.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.send(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Content-Type", media_type.to_string())],
            body,
        )
    }

    /// The status of `GET /v2/<name>/manifests/<reference>` (200, 404, 401, ...).
    pub fn manifest_status(&self, name: &str, reference: &str) -> u16 {
        self.get(
            &format!("/v2/{name}/manifests/{reference}"),
            ACCEPT_ANY_MANIFEST,
        )
        .status
    }

    /// `GET /v2/<name>/blobs/<digest>`; asserts 200.
    pub fn blob(&self, name: &str, digest: &str) -> Vec<u8> {
        let r = self.get(&format!("/v2/{name}/blobs/{digest}"), &[]);
        assert_eq!(r.status, 200, "blob {name}@{digest}: {}", r.text());
        r.body
    }
}

/// The tag of `name[:tag]` (`latest` if none; a port colon is not a tag).
fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- docker-registry log ({}) ---\n{}",
                self.addr,
                self.log()
            );
        }
        // `dir` (config, storage, log) is removed when the TempDir field drops, after this.
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture's own tests

/// Unpacks a layer blob with the system tar (`-z` / `--zstd` / plain by media type).
fn unpack(blob: &[u8], media_type: &str, into: &Path) {
    let flag = match media_type {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => "-z",
        OCI_LAYER_ZSTD => "--zstd",
        _ => "--no-auto-compress",
    };
    let mut c = Command::new("tar");
    c.arg("-C").arg(into).args(["-x", flag, "-f", "-"]);
    pipe(c, blob.to_vec());
}

/// Fetches a single-platform manifest, its config and layers, checks every digest, unpacks the
/// layers and runs the unpacked busybox. Returns the manifest.
fn fetch_and_check_busybox(reg: &Registry, name: &str, reference: &str, want: &str) -> Value {
    let r = reg.manifest(name, reference);
    assert_eq!(r.header("content-type"), Some(want));
    let digest = sha256_digest(&r.body);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let manifest = r.json();
    assert_eq!(manifest["mediaType"], want);

    let cfg = &manifest["config"];
    let config_blob = reg.blob(name, cfg["digest"].as_str().unwrap());
    assert_eq!(sha256_digest(&config_blob), cfg["digest"]);
    assert_eq!(config_blob.len() as u64, cfg["size"].as_u64().unwrap());
    let config: Value = serde_json::from_slice(&config_blob).unwrap();
    assert_eq!(config["architecture"], host_arch());
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"], json!(["sh"]));

    let rootfs = tempfile::tempdir().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    for (i, l) in layers.iter().enumerate() {
        let blob = reg.blob(name, l["digest"].as_str().unwrap());
        assert_eq!(sha256_digest(&blob), l["digest"], "layer digest");
        assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
        let media_type = l["mediaType"].as_str().unwrap();
        let mut c = Command::new(if media_type.ends_with("gzip") {
            "gzip"
        } else {
            "cat"
        });
        if media_type.ends_with("gzip") {
            c.arg("-dc");
        }
        let tar = pipe(c, blob.clone());
        assert_eq!(
            sha256_digest(&tar),
            config["rootfs"]["diff_ids"][i],
            "diff_id"
        );
        unpack(&blob, media_type, rootfs.path());
    }
    let out = run(Command::new(rootfs.path().join("bin/busybox")).args(["echo", "hello"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(rootfs.path().join("bin/sh").is_symlink());
    manifest
}

#[test]
fn registry_starts_answers_and_is_gone_after_drop() {
    let reg = Registry::start();
    let r = reg.get("/v2/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    // A missing repository is the distribution spec's error body.
    let r = reg.manifest_status("nothing", "latest");
    assert_eq!(r, 404);
    let (pid, dir, addr) = (reg.pid(), reg.dir().to_path_buf(), reg.addr.clone());
    assert!(crate::harness::pid_alive(i64::from(pid)));
    drop(reg);
    assert!(
        !crate::harness::pid_alive(i64::from(pid)),
        "registry still running"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        http(&addr, "GET", "/v2/", &[], b"").is_err(),
        "port still answers"
    );
}

#[test]
fn busybox_pushed_as_oci_is_served_and_runs() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    // The layout's own files are consistent.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], desc.digest);
    assert!(layout.blob_path(&desc.digest).exists());

    let digest = reg.push_layout(&layout.dir, "busybox:latest");
    assert_eq!(digest, desc.digest, "OCI push keeps the manifest as built");
    let manifest = fetch_and_check_busybox(&reg, "busybox", "latest", OCI_MANIFEST);
    assert_eq!(manifest["layers"][0]["mediaType"], OCI_LAYER_GZIP);
    // By digest too.
    assert_eq!(
        sha256_digest(&reg.manifest("busybox", &digest).body),
        digest
    );

    let inspected = reg.inspect("busybox:latest");
    assert_eq!(inspected["Digest"], digest);
    assert_eq!(inspected["Architecture"], host_arch());
}

#[test]
fn busybox_pushed_as_docker_v2s2_is_served_and_runs() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    let digest = reg.push_layout_v2s2(&layout.dir, "library/busybox:1.35");
    assert_ne!(digest, desc.digest, "converted manifest");
    let manifest = fetch_and_check_busybox(&reg, "library/busybox", "1.35", DOCKER_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(manifest["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
    assert_eq!(reg.inspect("library/busybox:1.35")["Digest"], digest);
}

#[test]
fn multi_arch_index_is_pushed_whole() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, index_desc, manifests) = multi_arch_layout(&tmp.path().join("layout"));

    let digest = reg.push_layout(&layout.dir, "multi:latest");
    assert_eq!(digest, index_desc.digest);
    let r = reg.manifest("multi", "latest");
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert_eq!(sha256_digest(&r.body), digest);
    let index = r.json();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for (entry, want) in entries.iter().zip(&manifests) {
        assert_eq!(entry["digest"], want.digest);
        assert_eq!(
            entry["platform"]["architecture"],
            want.platform.as_ref().unwrap().1
        );
        // Each platform's manifest is there by digest, with its blobs.
        let m = reg.manifest("multi", &want.digest).json();
        for l in m["layers"].as_array().unwrap() {
            let blob = reg.blob("multi", l["digest"].as_str().unwrap());
            assert_eq!(sha256_digest(&blob), l["digest"]);
        }
    }
    // The host's entry runs; the other platform's is only `/platform`.
    fetch_and_check_busybox(&reg, "multi", &manifests[0].digest, OCI_MANIFEST);
    let other = reg.manifest("multi", &manifests[1].digest).json();
    let dir = tempfile::tempdir().unwrap();
    let blob = reg.blob("multi", other["layers"][0]["digest"].as_str().unwrap());
    unpack(&blob, OCI_LAYER_GZIP, dir.path());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("platform")).unwrap(),
        format!("{}\n", other_arch())
    );
    // skopeo resolves the index to this host's platform.
    let inspected = reg.inspect("multi:latest");
    assert_eq!(inspected["Architecture"], host_arch());

    // As Docker v2s2 the index becomes a manifest list.
    let digest = reg.push_layout_v2s2(&layout.dir, "multi-docker:latest");
    let r = reg.manifest("multi-docker", "latest");
    assert_eq!(r.header("content-type"), Some(DOCKER_LIST));
    assert_eq!(sha256_digest(&r.body), digest);
    let host = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == host_arch())
        .cloned()
        .expect("host platform in list");
    fetch_and_check_busybox(
        &reg,
        "multi-docker",
        host["digest"].as_str().unwrap(),
        DOCKER_MANIFEST,
    );
}

#[test]
fn crafted_layers_are_pushed_byte_for_byte() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout"));
    let evil = TarBuilder::new()
        .dir("etc")
        .file("../escape", b"out")
        .file("/abs", b"abs")
        .symlink("etc/link", "../../../../tmp")
        .file("etc/link/through", b"via symlink")
        .hardlink("etc/hard", "/etc/shadow")
        .char_device("dev-null", 1, 3)
        .fifo("fifo")
        .whiteout("bin/gone")
        .opaque("etc")
        .file(&format!("{}/long", "d".repeat(150)), b"prefix field")
        .finish();
    let layers = vec![
        Layer::busybox(Compression::Gzip),
        Layer::from_tar(evil.clone(), Compression::Gzip),
        Layer::from_tar(evil.clone(), Compression::Zstd),
        Layer::from_tar(evil.clone(), Compression::None),
        Layer::raw(
            b"not a tar at all".to_vec(),
            OCI_LAYER_GZIP,
            &sha256_digest(b"x"),
        ),
    ];
    let mut image = Image::busybox();
    image.layers = layers.clone();
    let desc = layout.add_image(&image);
    layout.tag("evil", &desc);
    reg.push_layout(&layout.dir, "evil:evil");

    let manifest = reg.manifest("evil", "evil").json();
    let got = manifest["layers"].as_array().unwrap();
    assert_eq!(got.len(), layers.len());
    for (l, want) in got.iter().zip(&layers) {
        assert_eq!(l["mediaType"], want.media_type);
        let blob = reg.blob("evil", l["digest"].as_str().unwrap());
        assert!(blob == want.blob, "{} changed in transit", want.media_type);
    }
    // The crafted tar says what it was told to, as GNU tar reads it.
    let mut c = Command::new("tar");
    c.args(["-tv", "--zstd", "-f", "-"]);
    let listing = String::from_utf8(pipe(c, layers[2].blob.clone())).unwrap();
    assert!(evil.windows(12).any(|w| w == b"/etc/shadow\0"));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("crw-rw-rw-") && l.contains(" 1,3 ") && l.ends_with("dev-null")),
        "{listing}"
    );
    for want in [
        "../escape",
        "/abs",
        "etc/link -> ../../../../tmp",
        // GNU tar shows a hard link's target without its leading '/'; the bytes have it.
        "etc/hard link to etc/shadow",
        "bin/.wh.gone",
        "etc/.wh..wh..opq",
        &format!("{}/long", "d".repeat(150)),
    ] {
        assert!(listing.contains(want), "{want:?} not in\n{listing}");
    }
}

#[test]
fn htpasswd_registry_wants_credentials() {
    let reg = Registry::start_with_auth("rcd", "s3cret");
    let r = http(&reg.addr, "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic realm=\"rcd-tests\"")),
        "{:?}",
        r.headers
    );
    let wrong = format!("Basic {}", base64(b"rcd:wrong"));
    let r = http(&reg.addr, "GET", "/v2/", &[("Authorization", wrong)], b"").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(reg.get("/v2/", &[]).status, 200);

    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    assert_eq!(reg.push_layout(&layout.dir, "busybox"), desc.digest);
    fetch_and_check_busybox(&reg, "busybox", "latest", OCI_MANIFEST);
    assert_eq!(reg.inspect("busybox")["Digest"], desc.digest);
    let anonymous = reg.skopeo_inspect("busybox", true, false);
    assert!(!anonymous.status.success(), "anonymous inspect succeeded");
}

#[test]
fn tampered_blob_in_storage_is_served_as_is() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox");
    let manifest = reg.manifest("busybox", "latest").json();
    let digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let path = reg.blob_path(digest);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(sha256_digest(&bytes), digest);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let served = reg.blob("busybox", digest);
    assert_eq!(
        served.len() as u64,
        manifest["layers"][0]["size"].as_u64().unwrap()
    );
    assert_ne!(sha256_digest(&served), digest, "tampering not visible");
}

#[test]
fn layout_tar_and_docker_archive_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    let tar = tmp.path().join("layout.tar");
    layout.to_tar(&tar);
    let listing = run(Command::new("tar").arg("-tf").arg(&tar)).stdout;
    let listing = String::from_utf8(listing).unwrap();
    assert!(listing.contains("oci-layout"));
    assert!(listing.contains(&format!(
        "blobs/sha256/{}",
        desc.digest.trim_start_matches("sha256:")
    )));

    let archive = tmp.path().join("docker.tar");
    layout.to_docker_archive("latest", &archive, "busybox:latest");
    let out = run(Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("manifest.json"))
    .stdout;
    let m: Value = serde_json::from_slice(&out).unwrap();
    // skopeo writes the name normalized, as `docker save` would.
    assert_eq!(
        m[0]["RepoTags"],
        json!(["docker.io/library/busybox:latest"])
    );
}

#[test]
fn tar_builder_and_base64_basics() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"rcd:s3cret"), "cmNkOnMzY3JldA==");
    assert_eq!(tag_of("busybox"), "latest");
    assert_eq!(tag_of("team/app:1.2"), "1.2");
    // A benign crafted archive unpacks with GNU tar as written.
    let dir = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new()
        .dir("a")
        .file_mode("a/x", 0o755, b"hi")
        .symlink("a/l", "x")
        .finish();
    let mut c = Command::new("tar");
    c.arg("-C").arg(dir.path()).args(["-xf", "-"]);
    pipe(c, tar);
    assert_eq!(std::fs::read(dir.path().join("a/l")).unwrap(), b"hi");
}

#[test]
fn raw_api_upload_takes_manifests_skopeo_would_not_write() {
    let reg = Registry::start();
    let layer = Layer::from_tar(
        TarBuilder::new().file("hello", b"hi\n").finish(),
        Compression::Gzip,
    );
    let layer_digest = reg.upload_blob("raw", &layer.blob);
    assert_eq!(reg.blob("raw", &layer_digest), layer.blob);
    let mut image = Image::foreign(host_arch(), vec![layer.clone()]);
    image.config = json!({"Cmd": ["/hello"]});
    let config = serde_json::to_vec(&image.config_json()).unwrap();
    let config_digest = reg.upload_blob("raw", &config);
    // A descriptor whose size lies: the registry takes it; a client must not.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.blob.len() + 7}],
    }))
    .unwrap();
    let r = reg.put_manifest("raw", "lying-size", OCI_MANIFEST, &manifest);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha256_digest(&manifest).as_str())
    );
    let got = reg.manifest("raw", "lying-size");
    assert_eq!(got.body, manifest);
    // A manifest naming a blob the registry lacks is refused.
    let missing = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(b"absent"), "size": 6}],
    }))
    .unwrap();
    let r = reg.put_manifest("raw", "missing", OCI_MANIFEST, &missing);
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn tls_registries_serve_https_to_clients_they_trust() {
    let pki = Pki::generate();
    let other = Pki::generate();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    // certs.d-style directories for skopeo's --cert-dir: the CA alone; another CA's pair.
    let only_ca = tmp.path().join("only-ca");
    let stranger = tmp.path().join("stranger");
    for d in [&only_ca, &stranger] {
        std::fs::create_dir(d).unwrap();
        std::fs::copy(pki.ca(), d.join("ca.crt")).unwrap();
    }
    std::fs::copy(other.client_cert(), stranger.join("client.cert")).unwrap();
    std::fs::copy(other.client_key(), stranger.join("client.key")).unwrap();
    let untrusting = tmp.path().join("untrusting");
    std::fs::create_dir(&untrusting).unwrap();

    for tls in [Tls::Server, Tls::Mutual] {
        let reg = Registry::start_tls(&pki, tls);
        let r = http(&reg.addr, "GET", "/v2/", &[], b"").unwrap();
        assert_eq!(r.status, 400, "{tls:?}: plain HTTP answered: {}", r.text());
        assert!(r.text().contains("HTTPS server"), "{}", r.text());
        assert_eq!(reg.push_layout(&layout.dir, "busybox"), desc.digest);
        let inspect = |cert_dir: &Path| {
            let mut c = reg.skopeo();
            c.args(["inspect", "--raw", "--tls-verify=true", "--cert-dir"])
                .arg(cert_dir)
                .arg(format!("docker://{}", reg.image("busybox")))
                .stdin(Stdio::null())
                .output()
                .expect("spawn skopeo")
        };
        let verified = inspect(&reg.client_cert_dir());
        assert!(
            verified.status.success(),
            "{tls:?}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
        assert_eq!(sha256_digest(&verified.stdout), desc.digest);
        let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
        let without_ca = inspect(&untrusting);
        assert!(
            !without_ca.status.success(),
            "{tls:?}: verified without the CA"
        );
        assert!(
            stderr(&without_ca).contains("certificate"),
            "{}",
            stderr(&without_ca)
        );
        for (dir, what) in [
            (&only_ca, "no client certificate"),
            (&stranger, "a stranger's"),
        ] {
            let out = inspect(dir);
            assert_eq!(
                out.status.success(),
                tls == Tls::Server,
                "{tls:?} with {what}: {}",
                stderr(&out)
            );
        }
    }
}
