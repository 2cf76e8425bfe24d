//! What a reader hands out: the plaintext of a received message, and the parts of it a
//! decoder keeps beyond the message. A large message's buffer is shared rather than
//! copied: its parts stay where they were decrypted, for as long as someone holds them.
//!
//! Where a large plaintext is decrypted is a seam: the reader's own heap buffer, or a
//! [`PlaintextArea`] plugged in from above (the node plugs in its session's shared argument
//! area, which its workers map; see `SecureReader::set_plaintext_area`). The channel only
//! knows the trait.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use super::frame::PlainOut;

/// Memory outside the reader that it may decrypt large messages into, instead of its own
/// heap buffer, whenever nobody holds the last message decrypted there.
pub(crate) trait PlaintextArea: PlainOut + Send + Sync + fmt::Debug + 'static {
    /// Makes the area at least `len` bytes long (a frame's whole body), before a frame is
    /// opened into it.
    ///
    /// # Errors
    /// The area cannot grow that far: the message then goes to the heap.
    fn reserve(&mut self, len: usize) -> std::io::Result<()>;

    /// Gives the area's memory back: no large message came for a while.
    fn release(&mut self);

    /// The area's bytes.
    fn as_slice(&self) -> &[u8];
}

/// A received message's buffer: on the heap, or the reader's [`PlaintextArea`].
#[derive(Debug)]
pub(crate) enum Buffer {
    /// A vector of the reader's.
    Heap(Vec<u8>),
    /// The area plugged into the reader.
    Area(Box<dyn PlaintextArea>),
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::Heap(Vec::new())
    }
}

impl Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Heap(bytes) => bytes,
            Buffer::Area(area) => area.as_slice(),
        }
    }
}

/// The plaintext of a received message, for a decoder that keeps parts of it: a small
/// message is borrowed from the reader (parts kept are copied), a large one is handed out
/// as a shared buffer (large parts kept share it; see [`SharedBytes::part_of`]).
pub(crate) enum Plaintext<'a> {
    /// A small message, in the reader's buffer.
    Borrowed(&'a [u8]),
    /// A large message: its buffer, and the message's length in it.
    Shared(Arc<Buffer>, usize),
}

impl Plaintext<'_> {
    /// The message's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Plaintext::Borrowed(bytes) => bytes,
            Plaintext::Shared(buffer, len) => &buffer[..*len],
        }
    }

    /// `part` of [`Plaintext::bytes`], kept beyond the message: shared when possible.
    pub(crate) fn keep(&self, part: &[u8]) -> SharedBytes {
        match self {
            Plaintext::Borrowed(_) => SharedBytes::copied(part),
            Plaintext::Shared(buffer, _) => SharedBytes::part_of(buffer, part),
        }
    }
}

/// Parts of at most this size are copied rather than shared, so that a small job never
/// keeps a large message's buffer alive.
const SHARE_ABOVE: usize = 64 << 10;

/// An immutable run of bytes: a range of a shared buffer, or a buffer of its own.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedBytes {
    buffer: Arc<Buffer>,
    range: Range<usize>,
}

impl SharedBytes {
    /// Bytes in a buffer of their own.
    pub(crate) fn copied(bytes: &[u8]) -> Self {
        SharedBytes {
            range: 0..bytes.len(),
            buffer: Arc::new(Buffer::Heap(bytes.to_vec())),
        }
    }

    /// Where these bytes lie in the reader's [`PlaintextArea`], if they do.
    pub(crate) fn area_range(&self) -> Option<Range<usize>> {
        matches!(*self.buffer, Buffer::Area(_)).then(|| self.range.clone())
    }

    /// `part` of `buffer`, sharing it if `part` is large and lies in it, else copied.
    pub(crate) fn part_of(buffer: &Arc<Buffer>, part: &[u8]) -> Self {
        // Where `part` starts in the buffer, if it is in it at all: found by address,
        // since a decoder hands out subslices, not offsets.
        let start = (part.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if part.len() > SHARE_ABOVE && end <= buffer.len() => SharedBytes {
                buffer: Arc::clone(buffer),
                range: start..end,
            },
            _ => SharedBytes::copied(part),
        }
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer[self.range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_parts_share_small_parts_and_strangers_are_copied() {
        let buffer = Arc::new(Buffer::Heap((0..200_000u32).map(|i| i as u8).collect()));
        let large = SharedBytes::part_of(&buffer, &buffer[10..100_010]);
        assert_eq!(&*large, &buffer[10..100_010]);
        assert_eq!(Arc::strong_count(&buffer), 2, "shared");
        let small = SharedBytes::part_of(&buffer, &buffer[5..50]);
        assert_eq!(&*small, &buffer[5..50]);
        assert_eq!(Arc::strong_count(&buffer), 2, "copied");
        let elsewhere = vec![3u8; 100_000];
        let stranger = SharedBytes::part_of(&buffer, &elsewhere);
        assert_eq!(&*stranger, &elsewhere[..]);
        assert_eq!(Arc::strong_count(&buffer), 2, "copied");
    }
}
