//! Image references as Docker users write them (`busybox`, `registry:5000/team/app:1.2`,
//! `name@sha256:...`), normalized by oci-spec's parser, plus where and how to reach them.

use std::net::IpAddr;

use oci_spec::distribution::ParseError;
pub use oci_spec::distribution::Reference;

/// A reference that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct Error {
    /// What was given.
    pub input: String,
    /// The parser's reason.
    pub reason: String,
}

/// Parses and normalizes: `busybox` is `docker.io/library/busybox:latest`.
pub fn parse(input: &str) -> Result<Reference, Error> {
    let refused = |e: ParseError| Error {
        input: input.to_string(),
        reason: e.to_string(),
    };
    let r = input.parse::<Reference>().map_err(refused)?;
    // Docker refuses upper case in repository names. oci-spec's grammar does too, except in a
    // first component that matches as a registry host (`Team/app`) but has no '.' or ':' and
    // so stays in the Docker Hub path: printed, that reference would not parse again.
    if r.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(refused(ParseError::NameContainsUppercase));
    }
    Ok(r)
}

/// The repository of a reference as written, without its tag or digest:
/// `127.0.0.1:5000/app:1` and `127.0.0.1:5000/app@sha256:...` are `127.0.0.1:5000/app` (a
/// colon before the last `/` is a registry's port).
pub fn repository_of(name: &str) -> &str {
    let repo = name.split('@').next().unwrap_or(name);
    match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    }
}

/// `name` (normalized) pinned to `digest`: `127.0.0.1:5000/app:1` is `127.0.0.1:5000/app@DIGEST`.
pub fn by_digest(name: &str, digest: &super::digest::Digest) -> String {
    format!("{}@{digest}", repository_of(name))
}

/// The registry host to connect to (Docker Hub's API lives on another name than its refs).
pub fn api_host(r: &Reference) -> &str {
    r.resolve_registry()
}

/// True if Docker would speak plain HTTP to this registry without configuration: a registry on
/// the loopback network (127.0.0.0/8, ::1) or `localhost`.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        // "[::1]:5000" or "host:port"; a bare IPv6 address has more than one colon.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_to_a_digest() {
        let d = super::super::digest::Digest::of(b"x");
        for name in [
            "127.0.0.1:5000/app:1",
            "127.0.0.1:5000/app",
            &format!(
                "127.0.0.1:5000/app@{}",
                super::super::digest::Digest::of(b"y")
            ),
        ] {
            assert_eq!(by_digest(name, &d), format!("127.0.0.1:5000/app@{d}"));
        }
    }

    #[test]
    fn normalization_table() {
        let cases = [
            ("busybox", "docker.io", "library/busybox", Some("latest"), None),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36"), None),
            ("team/app", "docker.io", "team/app", Some("latest"), None),
            ("127.0.0.1:5000/team/app:1.2", "127.0.0.1:5000", "team/app", Some("1.2"), None),
            ("localhost/app", "localhost", "app", Some("latest"), None),
            (
                "quay.io/x/y@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "quay.io",
                "x/y",
                None,
                Some("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ),
        ];
        for (input, registry, repo, tag, digest) in cases {
            let r = parse(input).unwrap();
            assert_eq!(
                (r.registry(), r.repository(), r.tag(), r.digest()),
                (registry, repo, tag, digest),
                "{input}"
            );
        }
        for bad in ["", "team/App", "a@sha256:short", "a:b:c", "-leading"] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    /// Found by the image_reference fuzz target (fuzz/regressions/image_reference): an upper-case
    /// first component without '.' or ':' passed as a Docker Hub path, and its printed form
    /// did not parse.
    #[test]
    fn upper_case_in_a_docker_hub_path_is_refused() {
        let found = "dockwwwwwwwwarwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwxwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwWwwwwwwwwwwwwwary/busyboal:xtest";
        for input in ["Team/app", "tEAM/app:1", found] {
            match parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => assert_eq!(e.reason, "repository name must be lowercase", "{input:?}"),
            }
        }
        // A registry host may have upper case: host names are case-insensitive.
        for good in [
            "Registry.Example.com/team/app",
            "LOCALHOST:5000/app",
            "localhost/app",
        ] {
            let r = parse(good).unwrap();
            assert_eq!(parse(&r.to_string()).unwrap(), r, "{good:?}");
        }
    }

    #[test]
    fn loopback_registries() {
        let cases = [
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("::1", true),
            ("10.0.0.1:5000", false),
            ("registry.example.com", false),
            ("docker.io", false),
        ];
        for (reg, want) in cases {
            assert_eq!(is_loopback(reg), want, "{reg}");
        }
    }
}
