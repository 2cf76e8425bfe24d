//! The sizes of a frame's parts (the layout itself is drawn in the parent module's doc),
//! and the one function that turns a message length into a frame length.

/// Bytes of the AEAD tag that ends every Noise message.
pub(crate) const TAG_LEN: usize = 16;
/// Largest Noise message (ciphertext and tag).
pub(crate) const MAX_NOISE_MESSAGE: usize = 65535;
/// Largest plaintext piece of one segment.
pub(crate) const MAX_SEGMENT_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Bytes of the clear frame header (`body_len`).
pub(crate) const FRAME_HEADER: usize = 4;
/// Bytes of a segment header (`ct_len`).
pub(crate) const SEGMENT_HEADER: usize = 2;
/// Bytes of the authenticated message length at the start of the plaintext.
pub(crate) const LENGTH_PREFIX: usize = 4;

/// Length of the body (everything after the frame header) for a message of `message_len`
/// bytes. Monotonic in `message_len`, so `body_len(max)` bounds every acceptable body.
pub(crate) fn body_len(message_len: u64) -> u64 {
    let plain = message_len + LENGTH_PREFIX as u64;
    let segments = plain.div_ceil(MAX_SEGMENT_PLAINTEXT as u64);
    plain + segments * (SEGMENT_HEADER + TAG_LEN) as u64
}
