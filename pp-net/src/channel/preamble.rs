//! The 8 bytes each side sends first: who we are and which protocol version we speak.
//!
//! Layout: magic `b"PPRS"`, protocol version (`u16` little-endian), reserved (`u16`
//! little-endian, zero). The client sends first; the server always answers with its own
//! preamble, even when the client's is wrong, so that a client talking to a node of another
//! version can name both versions in its error. Both preambles are then bound into the
//! handshake as the Noise prologue, so a man in the middle cannot rewrite them unnoticed.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{NetError, Peer};

/// The four bytes that open every pp connection.
pub const MAGIC: [u8; 4] = *b"PPRS";

/// The version of the wire protocol this build speaks. Peers must speak the same one
/// (3: a job's reply carries its run time in the worker; the client's hello says whether
/// it wants jobs' output, which travels as `Output` messages; 4: a job carries its time
/// limit, which the node enforces (`Outcome::TimedOut`), and the client may withdraw jobs
/// with `Cancel`; 5: the client's hello offers builds for other targets
/// (`ClientHello::builds`), the node's hello says its platform and which build it runs).
pub const PROTOCOL_VERSION: u16 = 5;

/// Length of a preamble in bytes.
pub const PREAMBLE_LEN: usize = 8;

/// This build's preamble.
pub fn ours() -> [u8; PREAMBLE_LEN] {
    encode(PROTOCOL_VERSION)
}

/// The preamble announcing `version` (tests use it to pose as another version).
pub fn encode(version: u16) -> [u8; PREAMBLE_LEN] {
    let mut bytes = [0u8; PREAMBLE_LEN];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..6].copy_from_slice(&version.to_le_bytes());
    // bytes[6..8]: reserved, zero. Not checked on receipt, so a later version may use it
    // for flags that older peers ignore.
    bytes
}

/// Checks a received preamble against ours.
///
/// # Errors
/// [`NetError::WrongMagic`] when the magic is not `PPRS`, [`NetError::VersionMismatch`] when
/// the version differs from [`PROTOCOL_VERSION`].
pub(crate) fn check(peer: Peer, bytes: &[u8; PREAMBLE_LEN]) -> Result<(), NetError> {
    let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if found != MAGIC {
        return Err(NetError::WrongMagic { peer, found });
    }
    let theirs = u16::from_le_bytes([bytes[4], bytes[5]]);
    if theirs != PROTOCOL_VERSION {
        return Err(NetError::VersionMismatch {
            peer,
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    Ok(())
}

/// Reads the peer's preamble (unchecked).
pub(crate) async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    peer: Peer,
) -> Result<[u8; PREAMBLE_LEN], NetError> {
    let mut bytes = [0u8; PREAMBLE_LEN];
    reader
        .read_exact(&mut bytes)
        .await
        .map_err(|e| NetError::reading(peer, "the preamble", e))?;
    Ok(bytes)
}

/// Writes our preamble.
pub(crate) async fn write<W: AsyncWrite + Unpin>(
    writer: &mut W,
    peer: Peer,
) -> Result<(), NetError> {
    writer
        .write_all(&ours())
        .await
        .map_err(|source| NetError::Io { peer, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(ours(), [b'P', b'P', b'R', b'S', 5, 0, 0, 0]);
    }

    #[test]
    fn mismatch_names_both_versions() {
        let theirs = PROTOCOL_VERSION + 1;
        let err = check(Peer(None), &encode(theirs)).unwrap_err();
        assert!(matches!(
            err,
            NetError::VersionMismatch { ours, theirs: t, .. } if ours == PROTOCOL_VERSION && t == theirs
        ));
        assert!(err.to_string().contains(&format!(
            "speaks pp protocol version {theirs}, this build speaks version {PROTOCOL_VERSION}"
        )));
    }

    #[test]
    fn wrong_magic_is_reported_with_the_bytes() {
        let err = check(Peer(None), b"GET / HT").unwrap_err();
        assert!(matches!(err, NetError::WrongMagic { found, .. } if &found == b"GET "));
        // The error's text writes the magic out (see `NetError::WrongMagic`): the same one.
        let expected = format!("expected {MAGIC:02x?} (\"PPRS\")");
        assert!(err.to_string().ends_with(&expected), "{err}");
    }

    #[test]
    fn reserved_bytes_are_ignored() {
        let mut bytes = ours();
        bytes[6] = 0xff;
        assert!(check(Peer(None), &bytes).is_ok());
    }
}
