//! The shared secret of a cluster (or of one lane), kept only as the Noise pre-shared key
//! derived from it.

use sha2::{Digest, Sha256};

use super::error::NetError;

/// Domain separation for the PSK, so the same secret used elsewhere gives another key.
const PSK_CONTEXT: &[u8] = b"pp-net psk v1\0";

/// Domain separation for a lane's PSK, derived from the lane's key (see the `lane` module).
const LANE_PSK_CONTEXT: &[u8] = b"pp-net lane psk v1\0";

/// The shared secret of a cluster, kept only as the key derived from it.
///
/// The key is `SHA-256("pp-net psk v1\0" || secret)`. Use a long random secret: anyone who
/// records a handshake can test guesses of the secret offline, so a short or dictionary
/// secret is weak protection.
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
        let mut hash = Sha256::new();
        hash.update(PSK_CONTEXT);
        hash.update(secret);
        Ok(Secret {
            psk: hash.finalize().into(),
        })
    }
}

impl Secret {
    /// The secret of one lane, derived from its random `key`:
    /// `SHA-256("pp-net lane psk v1\0" || key)`.
    pub(crate) fn for_lane(key: &[u8; 32]) -> Self {
        let mut hash = Sha256::new();
        hash.update(LANE_PSK_CONTEXT);
        hash.update(key);
        Secret {
            psk: hash.finalize().into(),
        }
    }

    /// The derived key: the Noise pre-shared key of the handshake.
    pub(crate) fn psk(&self) -> &[u8; 32] {
        &self.psk
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
