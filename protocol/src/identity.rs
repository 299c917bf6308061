//! An agent's secret identity: its Ed25519 signing key, and the files it is kept in.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey};
use zeroize::Zeroizing;

use crate::did::Did;

/// Why a key could not be made, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The seed is not 64 hexadecimal digits.
    #[error("seed must be 64 hexadecimal digits (32 bytes)")]
    BadSeed,
    /// Reading or writing the key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file exists and overwriting was not asked for.
    #[error("{0}: file exists (refusing to overwrite a key file)")]
    Exists(PathBuf),
    /// The key file can be read by the group or others.
    #[error(
        "{path}: key file is readable by group/others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a PKCS#8 PEM Ed25519 private key.
    #[error("{0}: not a PKCS#8 PEM Ed25519 private key")]
    NotAKey(PathBuf),
    /// The operating system's random number generator failed.
    #[error("OS random number generator failed: {0}")]
    Rng(String),
    /// The key is weak (cannot happen for keys derived from a seed; kept for completeness).
    #[error("derived public key is not a valid did:key")]
    BadKey,
}

/// An agent's signing identity. The secret is zeroed on drop and never printed.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    did: Did,
}

impl Identity {
    /// A new identity from the operating system's random number generator.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| IdentityError::Rng(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The identity for a 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let did = Did::from_verifying_key(&key.verifying_key())
            .expect("a key derived by hashing a seed is never of small order");
        Identity { key, did }
    }

    /// The identity for a seed given as 64 hexadecimal digits.
    pub fn from_seed_hex(hex: &str) -> Result<Self, IdentityError> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(IdentityError::BadSeed);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| IdentityError::BadSeed)?;
        }
        Ok(Self::from_seed(&seed))
    }

    /// This identity's DID.
    pub fn did(&self) -> Did {
        self.did
    }

    /// Signs raw bytes. Protocol code signs through [`crate::signing`], which adds the
    /// domain-separation tag; this is the primitive underneath.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }

    /// The X25519 key-agreement secret derived from this key (clamped SHA-512 of the seed, as
    /// the did:key method specifies), for end-to-end encryption.
    pub fn x25519_secret(&self) -> x25519_dalek::StaticSecret {
        let mut scalar = Zeroizing::new(self.key.to_scalar_bytes());
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        x25519_dalek::StaticSecret::from(*scalar)
    }

    /// The identity as a PKCS#8 v1 PEM document (the secret: handle with care).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes as PKCS#8")
    }

    /// Parses a PKCS#8 PEM document.
    pub fn from_pkcs8_pem(pem: &str) -> Option<Self> {
        let key = SigningKey::from_pkcs8_pem(pem).ok()?;
        let did = Did::from_verifying_key(&key.verifying_key()).ok()?;
        Some(Identity { key, did })
    }

    /// Writes the key to `path` as PKCS#8 PEM, readable by the owner only (mode 0600).
    /// Refuses to replace an existing file unless `overwrite` is set.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        // An existing file keeps its mode on truncate: tighten it before writing the secret.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        file.write_all(self.to_pkcs8_pem().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Loads a PKCS#8 PEM key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let pem = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        Self::from_pkcs8_pem(&pem).ok_or_else(|| IdentityError::NotAKey(path.to_owned()))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("did", &self.did)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let id = Identity::from_seed(&[7u8; 32]);
        let shown = format!("{id:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("0707"));
        assert!(!shown.contains("[7, 7"));
    }

    #[test]
    fn seed_hex_is_strict() {
        assert!(Identity::from_seed_hex(&"00".repeat(32)).is_ok());
        assert!(matches!(
            Identity::from_seed_hex(&"00".repeat(31)),
            Err(IdentityError::BadSeed)
        ));
        assert!(matches!(
            Identity::from_seed_hex(&"zz".repeat(32)),
            Err(IdentityError::BadSeed)
        ));
        assert!(matches!(
            Identity::from_seed_hex(&"é".repeat(32)),
            Err(IdentityError::BadSeed)
        ));
    }

    #[test]
    fn generated_identities_differ() {
        let a = Identity::generate().expect("rng");
        let b = Identity::generate().expect("rng");
        assert_ne!(a.did(), b.did());
    }
}
