//! Sealing: a message, given as parts, into one frame, a batch of segments at a time, so
//! that a large message is written while the rest of it is still being encrypted and is
//! never copied into one contiguous buffer first.

use snow::StatelessTransportState;

#[cfg(any(test, feature = "fuzzing"))]
use super::layout::FRAME_HEADER;
use super::layout::{body_len, LENGTH_PREFIX, MAX_SEGMENT_PLAINTEXT, SEGMENT_HEADER, TAG_LEN};

/// Encrypts `message` into one frame in `out` (cleared first), using nonces from `*nonce`
/// on and advancing it past them. The caller has checked that `body_len(message.len())`
/// fits a `u32`. `scratch` is reused between calls to assemble the first segment.
// The channel seals with `Sealer` as it writes; tests and the fuzzing harness seal whole
// frames.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn seal(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    message: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), snow::Error> {
    seal_parts(cipher, nonce, &[message], out, scratch)
}

/// As [`seal`], for the message made of `parts` one after the other: large parts are
/// encrypted from where they are, with no contiguous copy of the whole message. Only
/// segments that straddle parts (and the first, which holds the length) are assembled in
/// `scratch`.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn seal_parts(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    parts: &[&[u8]],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), snow::Error> {
    let mut sealer = Sealer::new(parts, *nonce)?;
    out.clear();
    out.reserve(FRAME_HEADER + sealer.body_len() as usize);
    while !sealer.seal_some(cipher, out, scratch, usize::MAX)? {}
    *nonce = sealer.next_nonce();
    Ok(())
}

/// Seals one frame a batch of segments at a time, so that a large message can be written
/// while the rest of it is still being encrypted, from a buffer that stays small. The
/// batches, one after the other, are the bytes `seal_parts` gives.
pub(crate) struct Sealer<'a> {
    rest: Pieces<'a>,
    message_len: u32,
    body: u32,
    next: u64,
    started: bool,
}

impl<'a> Sealer<'a> {
    /// A sealer for the message made of `parts`, its first segment under `nonce`.
    ///
    /// # Errors
    /// [`snow::Error::Input`] when the frame's body would not fit its `u32` length.
    pub(crate) fn new(parts: &'a [&'a [u8]], nonce: u64) -> Result<Self, snow::Error> {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let message_len = u32::try_from(total).map_err(|_| snow::Error::Input)?;
        let body =
            u32::try_from(body_len(u64::from(message_len))).map_err(|_| snow::Error::Input)?;
        Ok(Sealer {
            rest: Pieces {
                parts,
                index: 0,
                offset: 0,
            },
            message_len,
            body,
            next: nonce,
            started: false,
        })
    }

    /// Bytes of the frame after its header.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn body_len(&self) -> u32 {
        self.body
    }

    /// The nonce after the segments sealed so far.
    pub(crate) fn next_nonce(&self) -> u64 {
        self.next
    }

    /// Appends the next bytes of the frame to `out` (the header first), whole segments
    /// until `out` holds at least `batch` bytes or the frame is complete. Returns true once
    /// the frame is complete.
    pub(crate) fn seal_some(
        &mut self,
        cipher: &StatelessTransportState,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        batch: usize,
    ) -> Result<bool, snow::Error> {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&self.body.to_le_bytes());
            // The first segment carries the length prefix and the start of the message.
            scratch.clear();
            scratch.extend_from_slice(&self.message_len.to_le_bytes());
            self.rest
                .copy_into(scratch, MAX_SEGMENT_PLAINTEXT - LENGTH_PREFIX);
            seal_segment(cipher, &mut self.next, scratch, out)?;
        }
        // At least one segment per call, so that any batch size makes progress.
        while !self.rest.is_empty() {
            match self.rest.take_whole(MAX_SEGMENT_PLAINTEXT) {
                Some(piece) => seal_segment(cipher, &mut self.next, piece, out)?,
                None => {
                    scratch.clear();
                    self.rest.copy_into(scratch, MAX_SEGMENT_PLAINTEXT);
                    seal_segment(cipher, &mut self.next, scratch, out)?;
                }
            }
            if out.len() >= batch {
                break;
            }
        }
        Ok(self.rest.is_empty())
    }
}

/// A read position in a message given as parts.
struct Pieces<'a> {
    parts: &'a [&'a [u8]],
    index: usize,
    offset: usize,
}

impl<'a> Pieces<'a> {
    fn skip_empty(&mut self) {
        while self.index < self.parts.len() && self.offset == self.parts[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }

    fn is_empty(&mut self) -> bool {
        self.skip_empty();
        self.index == self.parts.len()
    }

    /// The next `max` bytes (or all that is left) if they lie in one part.
    fn take_whole(&mut self, max: usize) -> Option<&'a [u8]> {
        self.skip_empty();
        let part = self.parts.get(self.index)?;
        let left = part.len() - self.offset;
        let remaining: usize = left
            + self.parts[self.index + 1..]
                .iter()
                .map(|p| p.len())
                .sum::<usize>();
        let want = max.min(remaining);
        if left < want {
            return None;
        }
        let piece = &part[self.offset..self.offset + want];
        self.offset += want;
        Some(piece)
    }

    /// Appends up to `max` bytes to `buffer`, across parts.
    fn copy_into(&mut self, buffer: &mut Vec<u8>, max: usize) {
        let mut want = max;
        while want > 0 && !self.is_empty() {
            let part = self.parts[self.index];
            let n = want.min(part.len() - self.offset);
            buffer.extend_from_slice(&part[self.offset..self.offset + n]);
            self.offset += n;
            want -= n;
        }
    }
}

fn seal_segment(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), snow::Error> {
    let start = out.len();
    out.resize(start + SEGMENT_HEADER + plaintext.len() + TAG_LEN, 0);
    let written = cipher.write_message(*nonce, plaintext, &mut out[start + SEGMENT_HEADER..])?;
    let ct_len = u16::try_from(written).map_err(|_| snow::Error::Input)?;
    out[start..start + SEGMENT_HEADER].copy_from_slice(&ct_len.to_le_bytes());
    // snow refuses the last nonce, so this cannot overflow.
    *nonce += 1;
    Ok(())
}
