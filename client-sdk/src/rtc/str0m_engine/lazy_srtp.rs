//! SRTP ciphers made on first use. DTLS-SRTP derives SRTP keys on every connection and str0m
//! builds their four AES contexts at once (≈ 4.6 KiB per connection with aws-lc-rs), but ioap's
//! connections carry a data channel only: unless media ever flows, the contexts are never
//! built. Key derivation and the ciphers themselves are str0m's own provider's.

use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoError, CryptoProvider,
    SrtpProvider, SupportedAeadAes128Gcm, SupportedAeadAes256Gcm, SupportedAes128CmSha1_80,
};

/// `provider` with SRTP ciphers that are made on first use.
pub fn with_lazy_srtp(mut provider: CryptoProvider) -> CryptoProvider {
    provider.srtp_provider = &LAZY_SRTP;
    provider
}

/// The SRTP provider str0m was built with.
fn built_in() -> &'static dyn SrtpProvider {
    str0m::crypto::from_feature_flags().srtp_provider
}

#[derive(Debug)]
struct LazySrtp;

static LAZY_SRTP: LazySrtp = LazySrtp;

impl SrtpProvider for LazySrtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        &LAZY_SRTP
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &LAZY_SRTP
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &LAZY_SRTP
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        built_in().srtp_aes_128_ecb_round(key, input, output);
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        built_in().srtp_aes_256_ecb_round(key, input, output);
    }
}

impl SupportedAes128CmSha1_80 for LazySrtp {
    fn create_cipher(&self, key: [u8; 16], encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(Lazy::new(key, encrypt, |key, encrypt| {
            built_in().aes_128_cm_sha1_80().create_cipher(key, encrypt)
        }))
    }
}

impl SupportedAeadAes128Gcm for LazySrtp {
    fn create_cipher(&self, key: [u8; 16], encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Lazy::new(key, encrypt, |key, encrypt| {
            built_in().aead_aes_128_gcm().create_cipher(key, encrypt)
        }))
    }
}

impl SupportedAeadAes256Gcm for LazySrtp {
    fn create_cipher(&self, key: [u8; 32], encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Lazy::new(key, encrypt, |key, encrypt| {
            built_in().aead_aes_256_gcm().create_cipher(key, encrypt)
        }))
    }
}

/// A cipher of type `C` for key `K`, made by `make` the first time it is used.
struct Lazy<K, C: ?Sized> {
    key: K,
    encrypt: bool,
    make: fn(K, bool) -> Box<C>,
    made: Option<Box<C>>,
}

impl<K: Copy, C: ?Sized> Lazy<K, C> {
    fn new(key: K, encrypt: bool, make: fn(K, bool) -> Box<C>) -> Self {
        Lazy {
            key,
            encrypt,
            make,
            made: None,
        }
    }

    fn cipher(&mut self) -> &mut C {
        let (key, encrypt, make) = (self.key, self.encrypt, self.make);
        self.made.get_or_insert_with(|| make(key, encrypt))
    }
}

impl<K, C: ?Sized> std::fmt::Debug for Lazy<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("LazySrtpCipher")
            .field("encrypt", &self.encrypt)
            .field("made", &self.made.is_some())
            .finish_non_exhaustive()
    }
}

impl Aes128CmSha1_80Cipher for Lazy<[u8; 16], dyn Aes128CmSha1_80Cipher> {
    fn encrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.cipher().encrypt(iv, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.cipher().decrypt(iv, input, output)
    }
}

/// The two AEAD ciphers differ in key length only.
macro_rules! lazy_aead {
    ($cipher:ident, $key:ty) => {
        impl $cipher for Lazy<$key, dyn $cipher> {
            fn encrypt(
                &mut self,
                iv: &[u8; 12],
                aad: &[u8],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<(), CryptoError> {
                self.cipher().encrypt(iv, aad, input, output)
            }

            fn decrypt(
                &mut self,
                iv: &[u8; 12],
                aads: &[&[u8]],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<usize, CryptoError> {
                self.cipher().decrypt(iv, aads, input, output)
            }
        }
    };
}

lazy_aead!(AeadAes128GcmCipher, [u8; 16]);
lazy_aead!(AeadAes256GcmCipher, [u8; 32]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_cipher_is_made_on_first_use_and_matches_the_built_in_one() {
        let key = [7u8; 32];
        let mut lazy = LAZY_SRTP.aead_aes_256_gcm().create_cipher(key, true);
        assert!(format!("{lazy:?}").contains("made: false"));
        let (iv, aad, plain) = (
            [1u8; 12],
            b"an RTP header".as_slice(),
            b"media, should it flow",
        );
        let mut sealed = vec![0u8; plain.len() + 16];
        lazy.encrypt(&iv, aad, plain, &mut sealed).expect("seal");
        assert!(format!("{lazy:?}").contains("made: true"));

        let mut real = built_in().aead_aes_256_gcm().create_cipher(key, false);
        let mut opened = vec![0u8; sealed.len()];
        let n = real
            .decrypt(&iv, &[aad], &sealed, &mut opened)
            .expect("open");
        assert_eq!(&opened[..n], plain);

        let mut lazy_decrypt = LAZY_SRTP.aead_aes_256_gcm().create_cipher(key, false);
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert!(
            lazy_decrypt
                .decrypt(&iv, &[aad], &tampered, &mut opened)
                .is_err()
        );
    }

    #[test]
    fn aes_cm_round_trips_through_lazy_ciphers() {
        let key = [9u8; 16];
        let mut enc = LAZY_SRTP.aes_128_cm_sha1_80().create_cipher(key, true);
        let mut dec = LAZY_SRTP.aes_128_cm_sha1_80().create_cipher(key, false);
        let (iv, plain) = ([3u8; 16], b"sixteen bytes!!!and more");
        let mut sealed = vec![0u8; plain.len()];
        enc.encrypt(&iv, plain, &mut sealed).expect("encrypt");
        assert_ne!(&sealed[..], &plain[..]);
        let mut opened = vec![0u8; plain.len()];
        dec.decrypt(&iv, &sealed, &mut opened).expect("decrypt");
        assert_eq!(&opened[..], &plain[..]);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let lazy = LAZY_SRTP.aead_aes_128_gcm().create_cipher([0xAB; 16], true);
        let shown = format!("{lazy:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "));
    }
}
