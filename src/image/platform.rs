//! Platform selection: an image index (or Docker manifest list) in, the one manifest for this
//! host out: same OS and architecture, and the CPU variant matched too (arm/v7 is not arm/v6),
//! which oci-client's resolver ignores (CRATES.md, trap 4).

use oci_spec::image::{Arch, Descriptor, Os};

/// The platform to pull for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// GOARCH name.
    pub arch: Arch,
    /// GOOS name.
    pub os: Os,
    /// CPU variant ("v8" for arm64, "v7" for arm), normalized.
    pub variant: Option<String>,
}

impl Want {
    /// This host: Linux on the architecture rcd was built for.
    pub fn host() -> Self {
        let arch = Arch::default();
        let variant = default_variant(&arch).map(String::from);
        Want {
            arch,
            os: Os::Linux,
            variant,
        }
    }
}

/// The variant an index entry means when it names none (containerd's normalization).
fn default_variant(arch: &Arch) -> Option<&'static str> {
    match arch {
        Arch::ARM64 => Some("v8"),
        Arch::ARM => Some("v7"),
        _ => None,
    }
}

/// Picks the entry of an index for `want`: an exact variant match first, then an entry that
/// names no variant; None if the image has no build for this platform.
pub fn choose<'a>(manifests: &'a [Descriptor], want: &Want) -> Option<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Option<String>)> = manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform().as_ref()?;
            if p.os() != &want.os || p.architecture() != &want.arch {
                return None;
            }
            let variant = p
                .variant()
                .clone()
                .or_else(|| default_variant(p.architecture()).map(String::from));
            Some((d, variant))
        })
        .collect();
    candidates
        .iter()
        .find(|(_, v)| *v == want.variant)
        .or_else(|| {
            candidates
                .iter()
                .find(|(d, _)| d.platform().as_ref().is_some_and(|p| p.variant().is_none()))
        })
        .map(|(d, _)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, arch: &str, variant: Option<&str>, os: &str) -> serde_json::Value {
        let mut platform = serde_json::json!({ "architecture": arch, "os": os });
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "size": 100 + n as u64,
            "platform": platform,
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> Vec<Descriptor> {
        serde_json::from_value(serde_json::Value::Array(entries)).unwrap()
    }

    fn want(arch: &str, variant: Option<&str>) -> Want {
        Want {
            arch: Arch::from(arch),
            os: Os::Linux,
            variant: variant.map(String::from),
        }
    }

    #[test]
    fn table() {
        let multi = index(vec![
            entry(1, "amd64", None, "linux"),
            entry(2, "arm", Some("v6"), "linux"),
            entry(3, "arm", Some("v7"), "linux"),
            entry(4, "arm64", None, "linux"),
            entry(5, "amd64", None, "windows"),
            entry(6, "unknown", None, "unknown"),
        ]);
        let cases = [
            ("amd64", None, Some(101)),
            ("arm", Some("v7"), Some(103)),
            ("arm", Some("v6"), Some(102)),
            ("arm64", Some("v8"), Some(104)),
            ("s390x", None, None),
        ];
        for (arch, variant, size) in cases {
            let got = choose(&multi, &want(arch, variant)).map(|d| d.size());
            assert_eq!(got, size, "{arch}/{variant:?}");
        }
        // Only a v6 build: a v7 host is not handed it (a different instruction set).
        let v6_only = index(vec![entry(2, "arm", Some("v6"), "linux")]);
        assert!(choose(&v6_only, &want("arm", Some("v7"))).is_none());
        // Windows-only images have no Linux build.
        let win = index(vec![entry(5, "amd64", None, "windows")]);
        assert!(choose(&win, &want("amd64", None)).is_none());
        // The host's own platform is one of the table's.
        assert_eq!(Want::host().os, Os::Linux);
    }
}
