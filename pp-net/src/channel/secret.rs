//! The shared secret of a cluster (or of one lane), kept only as the Noise pre-shared key
//! derived from it, which is wiped when dropped.

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::error::NetError;

/// Domain separation for the PSK, so the same secret used elsewhere gives another key.
const PSK_CONTEXT: &[u8] = b"pp-net psk v1\0";

/// Domain separation for a lane's PSK, derived from the lane's key (see the `lane` module).
const LANE_PSK_CONTEXT: &[u8] = b"pp-net lane psk v1\0";

/// The shared secret of a cluster, kept only as the key derived from it.
///
/// The key is `SHA-256("pp-net psk v1\0" || secret)`. Use a long random secret: anyone who
/// records a handshake can test guesses of the secret offline, so a short or dictionary
/// secret is weak protection (`ppserver` refuses one under 16 bytes unless forced).
///
/// The plain secret is not kept, nor left in the hasher; the key is zeroed when the last
/// copy of it is dropped.
#[derive(Clone)]
pub struct Secret {
    psk: [u8; 32],
}

impl Secret {
    /// Derives the key from a secret's bytes.
    ///
    /// # Errors
    /// [`NetError::EmptySecret`] if `secret` is empty: there is no default secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, NetError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(NetError::EmptySecret);
        }
        Ok(Secret {
            psk: derive(PSK_CONTEXT, secret),
        })
    }
}

impl Secret {
    /// The secret of one lane, derived from its random `key`:
    /// `SHA-256("pp-net lane psk v1\0" || key)`.
    pub(crate) fn for_lane(key: &[u8; 32]) -> Self {
        Secret {
            psk: derive(LANE_PSK_CONTEXT, key),
        }
    }

    /// The derived key: the Noise pre-shared key of the handshake.
    pub(crate) fn psk(&self) -> &[u8; 32] {
        &self.psk
    }
}

/// `SHA-256(context || input)`, leaving no bytes of `input` in the hasher.
fn derive(context: &[u8], input: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(context);
    hash.update(input);
    let key = hash.finalize_reset().into();
    // The hasher keeps the input's last partial block in its buffer, and a reset only
    // rewinds it: 63 zero bytes from the start overwrite whatever of the input is left
    // there (the 64th byte always holds the length padding).
    hash.update([0u8; 63]);
    std::hint::black_box(&mut hash);
    key
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.psk.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in debug logs.
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_derivation_is_pinned() {
        // SHA-256("pp-net psk v1\0" || "secret"), pinned so the derivation cannot drift.
        let hex: String = Secret::new("secret")
            .unwrap()
            .psk
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "ff01b36e051e49ace0a7b47cec037e2d86e4164e05638e9ba1f9b7c3c0900c49"
        );
        assert_ne!(
            Secret::new("secret").unwrap().psk,
            Secret::new("secreT").unwrap().psk
        );
    }

    #[test]
    fn empty_secret_is_refused() {
        assert!(matches!(Secret::new(""), Err(NetError::EmptySecret)));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", Secret::new("x").unwrap()), "Secret(..)");
    }
}
