//! Layout of an encrypted frame, and the pure functions that seal and open one.
//!
//! ```text
//! frame   = body_len: u32 LE, segment+            body_len = bytes of all segments
//! segment = ct_len: u16 LE, ciphertext[ct_len]    one Noise transport message
//! ```
//! The plaintext carried by the segments, in order, is `message_len: u32 LE || message`.
//! A Noise message holds at most 65535 bytes including its 16-byte tag, so the plaintext
//! is cut into pieces of at most 65519 bytes, all full but the last.
//!
//! Each segment is encrypted under the next nonce of its direction, so segments cannot be
//! reordered, dropped or replayed. The clear `body_len` only tells the reader how much to
//! read (bounded before anything is allocated); the message length that counts is the
//! authenticated one inside the first segment, checked against the layout, so that cutting
//! whole segments off the end of a frame is detected too.

use snow::StatelessTransportState;

/// Bytes of the AEAD tag that ends every Noise message.
pub(crate) const TAG_LEN: usize = 16;
/// Largest Noise message (ciphertext and tag).
pub(crate) const MAX_NOISE_MESSAGE: usize = 65535;
/// Largest plaintext piece of one segment.
pub(crate) const MAX_SEGMENT_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Bytes of the clear frame header (`body_len`).
pub(crate) const FRAME_HEADER: usize = 4;
/// Bytes of a segment header (`ct_len`).
const SEGMENT_HEADER: usize = 2;
/// Bytes of the authenticated message length at the start of the plaintext.
const LENGTH_PREFIX: usize = 4;

/// Length of the body (everything after the frame header) for a message of `message_len`
/// bytes. Monotonic in `message_len`, so `body_len(max)` bounds every acceptable body.
pub(crate) fn body_len(message_len: u64) -> u64 {
    let plain = message_len + LENGTH_PREFIX as u64;
    let segments = plain.div_ceil(MAX_SEGMENT_PLAINTEXT as u64);
    plain + segments * (SEGMENT_HEADER + TAG_LEN) as u64
}

/// Encrypts `message` into one frame in `out` (cleared first), using nonces from `*nonce`
/// on and advancing it past them. The caller has checked that `body_len(message.len())`
/// fits a `u32`. `scratch` is reused between calls to assemble the first segment.
// The channel sends through `seal_parts`; tests and the fuzzing harness seal whole messages.
#[allow(dead_code)]
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
pub(crate) fn seal_parts(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    parts: &[&[u8]],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), snow::Error> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let message_len = u32::try_from(total).map_err(|_| snow::Error::Input)?;
    let body = u32::try_from(body_len(u64::from(message_len))).map_err(|_| snow::Error::Input)?;
    out.clear();
    out.reserve(FRAME_HEADER + body as usize);
    out.extend_from_slice(&body.to_le_bytes());

    let mut rest = Pieces {
        parts,
        index: 0,
        offset: 0,
    };
    let mut next = *nonce;
    // The first segment carries the length prefix and the start of the message.
    scratch.clear();
    scratch.extend_from_slice(&message_len.to_le_bytes());
    rest.copy_into(scratch, MAX_SEGMENT_PLAINTEXT - LENGTH_PREFIX);
    seal_segment(cipher, &mut next, scratch, out)?;
    while !rest.is_empty() {
        match rest.take_whole(MAX_SEGMENT_PLAINTEXT) {
            Some(piece) => seal_segment(cipher, &mut next, piece, out)?,
            None => {
                scratch.clear();
                rest.copy_into(scratch, MAX_SEGMENT_PLAINTEXT);
                seal_segment(cipher, &mut next, scratch, out)?;
            }
        }
    }
    *nonce = next;
    Ok(())
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

/// Decrypts a frame body into `out` (cleared first): the message without its length
/// prefix. Advances `*nonce` only if the whole frame is authentic, so a rejected frame
/// leaves no half-applied state. `scratch` is reused for the first segment.
///
/// The error is the reason, for [`crate::NetError::FrameRejected`].
pub(crate) fn open(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    body: &[u8],
    max_message: u32,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), &'static str> {
    out.clear();
    let mut next = *nonce;
    let (first, mut rest) = split_segment(body)?;
    open_segment(cipher, &mut next, first, scratch)?;
    let Some((prefix, head)) = scratch.split_first_chunk::<LENGTH_PREFIX>() else {
        return Err("the first segment is too short to hold the message length");
    };
    let declared = u32::from_le_bytes(*prefix);
    if declared > max_message {
        return Err("the authenticated message length is above the limit");
    }
    if body.len() as u64 != body_len(u64::from(declared)) {
        return Err("the authenticated message length does not match the frame's size");
    }
    // Safe to reserve now: `declared` is authenticated and bounded by the limit.
    out.reserve_exact(declared as usize);
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let (segment, tail) = split_segment(rest)?;
        rest = tail;
        let start = out.len();
        let Some(piece) = segment.len().checked_sub(TAG_LEN) else {
            return Err("a segment is shorter than its authentication tag");
        };
        if start + piece > declared as usize {
            return Err("the segments hold more than the authenticated message length");
        }
        out.resize(start + piece, 0);
        let read = cipher
            .read_message(next, segment, &mut out[start..])
            .map_err(reason)?;
        out.truncate(start + read);
        next += 1;
    }
    if out.len() != declared as usize {
        return Err("the segments hold less than the authenticated message length");
    }
    *nonce = next;
    Ok(())
}

fn open_segment(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    segment: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    let Some(piece) = segment.len().checked_sub(TAG_LEN) else {
        return Err("a segment is shorter than its authentication tag");
    };
    out.clear();
    out.resize(piece, 0);
    let read = cipher.read_message(*nonce, segment, out).map_err(reason)?;
    out.truncate(read);
    *nonce += 1;
    Ok(())
}

/// Cuts the next `ct_len`-prefixed segment off `bytes`.
fn split_segment(bytes: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let Some((len, rest)) = bytes.split_first_chunk::<SEGMENT_HEADER>() else {
        return Err("a segment header runs past the end of the frame");
    };
    let len = usize::from(u16::from_le_bytes(*len));
    if len > rest.len() {
        return Err("a segment runs past the end of the frame");
    }
    Ok(rest.split_at(len))
}

fn reason(error: snow::Error) -> &'static str {
    match error {
        snow::Error::Decrypt => {
            "authentication failed: the frame was altered or does not belong to this session"
        }
        _ => "the frame could not be decrypted (bad segment or nonces exhausted)",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two ends of an in-memory session: (initiator, responder).
    pub(crate) fn session() -> (StatelessTransportState, StatelessTransportState) {
        let psk = [7u8; 32];
        let params: snow::params::NoiseParams = crate::handshake::NOISE_PARAMS.parse().unwrap();
        let mut i = snow::Builder::new(params.clone())
            .psk(0, &psk)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut r = snow::Builder::new(params)
            .psk(0, &psk)
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
        let n = i.write_message(&[], &mut a).unwrap();
        r.read_message(&a[..n], &mut b).unwrap();
        let n = r.write_message(&[], &mut a).unwrap();
        i.read_message(&a[..n], &mut b).unwrap();
        (
            i.into_stateless_transport_mode().unwrap(),
            r.into_stateless_transport_mode().unwrap(),
        )
    }

    fn sealed(cipher: &StatelessTransportState, nonce: &mut u64, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(cipher, nonce, message, &mut out, &mut Vec::new()).unwrap();
        out
    }

    fn opened(
        cipher: &StatelessTransportState,
        nonce: &mut u64,
        frame: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::new();
        open(
            cipher,
            nonce,
            &frame[FRAME_HEADER..],
            u32::MAX,
            &mut out,
            &mut Vec::new(),
        )?;
        Ok(out)
    }

    #[test]
    fn layout_matches_body_len() {
        let (c, _) = session();
        for len in [0usize, 1, 65515, 65516, 65519, 200_000] {
            let frame = sealed(&c, &mut 0, &vec![9u8; len]);
            let body = u32::from_le_bytes(frame[..4].try_into().unwrap());
            assert_eq!(u64::from(body), body_len(len as u64), "len {len}");
            assert_eq!(frame.len(), FRAME_HEADER + body as usize);
        }
    }

    #[test]
    fn round_trip_across_segments_and_nonces() {
        let (c, s) = session();
        let (mut wn, mut rn) = (0, 0);
        for len in [0usize, 5, 65515, 65516, 300_000] {
            let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = sealed(&c, &mut wn, &message);
            assert_eq!(opened(&s, &mut rn, &frame).unwrap(), message);
        }
        assert_eq!(wn, rn);
    }

    #[test]
    fn a_message_in_parts_seals_as_the_whole_message() {
        let (c, s) = session();
        let message: Vec<u8> = (0..400_000u32).map(|i| (i * 7) as u8).collect();
        let cuts: [&[usize]; 5] = [
            &[],
            &[0, 0, 10],
            &[10, 70_010, 70_015, 201_053, 201_053],
            &[65_515, 131_034],
            &[399_999],
        ];
        for cut in cuts {
            let mut parts = Vec::new();
            let mut start = 0;
            for &end in cut {
                parts.push(&message[start..end]);
                start = end;
            }
            parts.push(&message[start..]);
            let (mut whole, mut pieces, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
            seal(&c, &mut 3, &message, &mut whole, &mut scratch).unwrap();
            let mut nonce = 3;
            seal_parts(&c, &mut nonce, &parts, &mut pieces, &mut scratch).unwrap();
            assert!(whole == pieces, "cut at {cut:?}");
            let mut rn = 3;
            assert_eq!(opened(&s, &mut rn, &pieces).unwrap(), message);
            assert_eq!(nonce, rn);
        }
    }

    #[test]
    fn dropping_the_last_segment_is_detected() {
        let (c, s) = session();
        let frame = sealed(&c, &mut 0, &vec![1u8; 100_000]);
        // Keep only the first segment and fix up the clear length: each remaining
        // segment authenticates, but the authenticated length gives the cut away.
        let first = 4 + 2 + MAX_NOISE_MESSAGE;
        let mut cut = frame[..first].to_vec();
        cut[..4].copy_from_slice(&((first - 4) as u32).to_le_bytes());
        let mut nonce = 0;
        assert!(opened(&s, &mut nonce, &cut).is_err());
        assert_eq!(nonce, 0, "a rejected frame consumes no nonce");
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let (c, s) = session();
        let frame = sealed(&c, &mut 0, b"hello");
        for i in FRAME_HEADER..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert!(opened(&s, &mut 0, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn replayed_frame_is_rejected() {
        let (c, s) = session();
        let mut wn = 0;
        let frame = sealed(&c, &mut wn, b"once");
        let mut rn = 0;
        opened(&s, &mut rn, &frame).unwrap();
        assert!(opened(&s, &mut rn, &frame).is_err());
    }

    #[test]
    fn limit_applies_to_the_authenticated_length() {
        let (c, s) = session();
        let frame = sealed(&c, &mut 0, &[0u8; 100]);
        let mut out = Vec::new();
        let err = open(&s, &mut 0, &frame[4..], 99, &mut out, &mut Vec::new()).unwrap_err();
        assert!(err.contains("above the limit"));
    }
}
