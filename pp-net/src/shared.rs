//! Bytes that may be part of a larger buffer shared with others: a large job argument
//! stays where it was decrypted, and the node writes it to a worker from there (or, when
//! it was decrypted into the session's shared argument area, tells the worker where it is).

use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::area::SharedArea;

/// A received message's buffer: on the heap, or a session's shared argument area (which
/// the session's workers map).
#[derive(Debug)]
pub(crate) enum Buffer {
    /// A vector of the reader's.
    Heap(Vec<u8>),
    /// The session's shared argument area.
    Area(SharedArea),
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

    /// Where these bytes lie in the session's shared argument area, if they do.
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
