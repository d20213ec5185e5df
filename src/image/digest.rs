//! Content digests (`sha256:<hex>`): parsed strictly, computed while reading, compared exactly.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A digest that is not a well-formed `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct ParseError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A SHA-256 content digest. Other algorithms are refused: every blob rcd stores is verified
/// with the one algorithm it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// The 64 hex characters, as used for file names in the content store.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseError {
            input: s.to_string(),
            reason,
        };
        let (algo, hex_part) = s
            .split_once(':')
            .ok_or_else(|| err("no algorithm prefix"))?;
        if algo != "sha256" {
            return Err(err("only sha256 is supported"));
        }
        // Lowercase only: the OCI spec's canonical form, and one name per blob on disk.
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("expected 64 lowercase hex characters"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err("bad hex"))?;
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`; `seed` is data already read (a resumed download's first part).
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Feeds bytes that were read earlier (a partial blob being resumed).
    pub fn feed(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.count += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of everything seen.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_table() {
        let cases = [
            (EMPTY, true),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                false,
            ),
            ("sha512:e3b0", false),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                false,
            ),
            ("sha256:e3b0", false),
            (
                "sha256:../../../../etc/passwd/e3b0c44298fc1c149afbf4c8996fb92427ae4",
                false,
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                false,
            ),
        ];
        for (input, ok) in cases {
            assert_eq!(input.parse::<Digest>().is_ok(), ok, "{input}");
        }
        assert_eq!(EMPTY.parse::<Digest>().unwrap().to_string(), EMPTY);
    }

    #[test]
    fn hashing_reader_matches() {
        let mut r = Hashing::new(&b"world"[..]);
        r.feed(b"hello ");
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.count(), 11);
        assert_eq!(r.finish(), Digest::of(b"hello world"));
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
    }
}
