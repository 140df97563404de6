//! File checksums: what a downloaded or cached file must hash to.
//!
//! [`Checksum`] is an enum so that further digests (e.g. a SHA-256 prefix for
//! model weight files) can be added without changing the download code, which
//! only talks to [`Checksum::hasher`] and [`Checksum::matches`].

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::error::{Error, Result};

/// An expected (or computed) digest of a file, as lowercase hexadecimal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Checksum {
    /// MD5 digest, 32 hexadecimal digits (what MedMNIST publishes).
    Md5(String),
    /// The first hexadecimal digits of a SHA-256 digest (torchvision's rule: the hex in a
    /// weight file's name, e.g. `7ebf99e0` of `mobilenet_v2-7ebf99e0.pth`, must start the
    /// file's SHA-256). A computed value holds the full 64 digits.
    Sha256Prefix(String),
}

impl Checksum {
    /// An MD5 checksum from its hexadecimal form (either case).
    ///
    /// Fails unless `hex` is exactly 32 hexadecimal digits.
    pub fn md5(hex: &str) -> Result<Self> {
        let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(Error::InvalidChecksum {
                algorithm: "md5",
                value: hex.to_owned(),
                expected: "32 hexadecimal digits",
            });
        }
        Ok(Self::Md5(hex.to_ascii_lowercase()))
    }

    /// A SHA-256 prefix checksum from 8 to 64 hexadecimal digits (either case).
    pub fn sha256_prefix(hex: &str) -> Result<Self> {
        let ok = (8..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(Error::InvalidChecksum {
                algorithm: "sha256",
                value: hex.to_owned(),
                expected: "8 to 64 hexadecimal digits",
            });
        }
        Ok(Self::Sha256Prefix(hex.to_ascii_lowercase()))
    }

    /// Name of the digest algorithm, e.g. `"md5"`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Md5(_) => "md5",
            Self::Sha256Prefix(_) => "sha256",
        }
    }

    /// The digest as hexadecimal text.
    pub fn hex(&self) -> &str {
        match self {
            Self::Md5(hex) | Self::Sha256Prefix(hex) => hex,
        }
    }

    /// Whether `actual` (a digest computed with [`Checksum::hasher`]) satisfies
    /// this expected checksum. Hex case is ignored.
    pub fn matches(&self, actual: &Checksum) -> bool {
        match (self, actual) {
            (Self::Md5(want), Self::Md5(got)) => want.eq_ignore_ascii_case(got),
            (Self::Sha256Prefix(want), Self::Sha256Prefix(got)) => {
                got.len() >= want.len() && got[..want.len()].eq_ignore_ascii_case(want)
            }
            _ => false,
        }
    }

    /// A streaming hasher computing the same kind of digest as `self`.
    pub fn hasher(&self) -> Hasher {
        match self {
            Self::Md5(_) => Hasher(HasherKind::Md5(Md5::new())),
            Self::Sha256Prefix(_) => Hasher(HasherKind::Sha256(Sha256::new())),
        }
    }

    /// Digest the file at `path` with the same algorithm as `self`.
    pub fn compute_file(&self, path: &Path) -> Result<Checksum> {
        let mut file = File::open(path).map_err(Error::io("cannot open", path))?;
        let mut hasher = self.hasher();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(Error::io("cannot read", path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }
}

impl fmt::Display for Checksum {
    /// Formats as `"<algorithm> <hex>"`, e.g. `md5 900150983cd24fb0d6963f7d28e17f72`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm(), self.hex())
    }
}

/// Incremental digest computation; obtain one from [`Checksum::hasher`].
#[derive(Clone)]
pub struct Hasher(HasherKind);

#[derive(Clone)]
enum HasherKind {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    /// Feed more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherKind::Md5(h) => h.update(bytes),
            HasherKind::Sha256(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Checksum {
        match self.0 {
            HasherKind::Md5(h) => Checksum::Md5(hex::encode(h.finalize())),
            HasherKind::Sha256(h) => Checksum::Sha256Prefix(hex::encode(h.finalize())),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.0 {
            HasherKind::Md5(_) => "md5",
            HasherKind::Sha256(_) => "sha256",
        };
        f.debug_struct("Hasher")
            .field("algorithm", &algorithm)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1321, appendix A.5 test suite (also `printf 'abc' | md5sum`).
    const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";
    // RFC 1321, appendix A.5: MD5("") (also `printf '' | md5sum`).
    const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";

    /// FIPS 180-2 test vector: SHA-256("abc") =
    /// ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    #[test]
    fn sha256_prefix_matches_the_fips_vector_by_prefix_only() {
        let mut h = Checksum::sha256_prefix("ba7816bf").expect("valid").hasher();
        h.update(b"abc");
        let got = h.finish();
        assert_eq!(got.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(Checksum::sha256_prefix("BA7816BF8F01").unwrap().matches(&got));
        assert!(!Checksum::sha256_prefix("7ebf99e0").unwrap().matches(&got));
        assert!(!Checksum::md5(MD5_ABC).unwrap().matches(&got), "different algorithms never match");
        assert!(Checksum::sha256_prefix("abc").is_err(), "too short to mean anything");
    }

    #[test]
    fn md5_hasher_matches_rfc_vectors() {
        let expected = Checksum::md5(MD5_ABC).expect("valid");
        let mut h = expected.hasher();
        h.update(b"a");
        h.update(b"bc");
        let got = h.finish();
        assert!(expected.matches(&got), "{got}");
        assert_eq!(got.hex(), MD5_ABC);

        let empty = Checksum::md5(MD5_EMPTY).expect("valid").hasher().finish();
        assert_eq!(empty.hex(), MD5_EMPTY);
        assert!(!expected.matches(&empty));
    }

    #[test]
    fn md5_parsing_validates_and_ignores_case() {
        let upper = Checksum::md5(&MD5_ABC.to_ascii_uppercase()).expect("valid");
        assert_eq!(upper.hex(), MD5_ABC);
        assert_eq!(upper.to_string(), format!("md5 {MD5_ABC}"));
        for bad in [
            "",
            "abc",
            &MD5_ABC[..31],
            &format!("{MD5_ABC}0"),
            "z00150983cd24fb0d6963f7d28e17f72",
        ] {
            let err = Checksum::md5(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidChecksum { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("32 hexadecimal digits"));
        }
    }

    #[test]
    fn compute_file_hashes_content_and_names_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc.bin");
        std::fs::write(&path, b"abc").expect("write");
        let want = Checksum::md5(MD5_ABC).expect("valid");
        assert_eq!(want.compute_file(&path).expect("hash"), want);

        let missing = dir.path().join("missing.bin");
        let err = want.compute_file(&missing).expect_err("missing file");
        assert!(err.to_string().contains("missing.bin"), "{err}");
    }
}
