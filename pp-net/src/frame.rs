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
/// batches, one after the other, are the bytes [`seal_parts`] gives.
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

/// Decrypts a frame body into `out` (cleared first): the message without its length
/// prefix. Advances `*nonce` only if the whole frame is authentic, so a rejected frame
/// leaves no half-applied state. `scratch` is reused for the first segment.
///
/// The error is the reason, for [`crate::NetError::FrameRejected`].
// The channel opens frames as they arrive, with `Opener`; tests and the fuzzing harness
// open whole bodies.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn open(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    body: &[u8],
    max_message: u32,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), &'static str> {
    out.clear();
    let body_len = u32::try_from(body.len()).map_err(|_| "the frame is above 4 GiB")?;
    let mut opener = Opener::new(body_len, *nonce, max_message);
    let mut rest = body;
    while !rest.is_empty() {
        match opener.open_next(cipher, rest, out, scratch)? {
            Some(taken) => rest = &rest[taken..],
            // `rest` is the whole remainder of the body: a segment that does not fit in
            // it was refused above.
            None => return Err("a segment runs past the end of the frame"),
        }
    }
    let (next, len) = opener.finish()?;
    out.truncate(len);
    *nonce = next;
    Ok(())
}

/// Opens a frame body one segment at a time, as its bytes arrive, with the checks of
/// [`open`]: each segment is authenticated before its plaintext is written, and the frame
/// only counts as complete (see [`Opener::finish`]) once every byte of the body has been
/// opened and the authenticated length matched.
///
/// The plaintext goes to `out[..filled]`; `out` may be longer than that (a reused buffer
/// keeps its length so that it is not zeroed again), and never grows beyond the
/// authenticated message length plus one tag.
#[derive(Debug)]
pub(crate) struct Opener {
    /// The frame's body length, from its clear header (bounded by the caller).
    body: u32,
    /// Body bytes not yet opened.
    left: usize,
    /// Nonce of the next segment.
    next: u64,
    limit: u32,
    /// The authenticated message length, once the first segment is open.
    declared: Option<usize>,
    /// Plaintext bytes written to `out`.
    filled: usize,
}

impl Opener {
    /// An opener for a body of `body` bytes whose first segment is under `nonce`, for a
    /// message of at most `limit` bytes.
    pub(crate) fn new(body: u32, nonce: u64, limit: u32) -> Self {
        Opener {
            body,
            left: body as usize,
            next: nonce,
            limit,
            declared: None,
            filled: 0,
        }
    }

    /// Body bytes not yet opened.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    /// Opens the segment at the start of `bytes` (which must not extend past the body) if
    /// all of it is there: appends its plaintext to `out` and returns the bytes it took;
    /// `None` when more of the body is needed.
    pub(crate) fn open_next(
        &mut self,
        cipher: &StatelessTransportState,
        bytes: &[u8],
        out: &mut impl PlainOut,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<usize>, &'static str> {
        if self.left == 0 {
            return Ok(None);
        }
        let Some((len, rest)) = bytes.split_first_chunk::<SEGMENT_HEADER>() else {
            if self.left < SEGMENT_HEADER {
                return Err("a segment header runs past the end of the frame");
            }
            return Ok(None);
        };
        let len = usize::from(u16::from_le_bytes(*len));
        let taken = SEGMENT_HEADER + len;
        if taken > self.left {
            return Err("a segment runs past the end of the frame");
        }
        if rest.len() < len {
            return Ok(None);
        }
        let segment = &rest[..len];
        let Some(piece) = len.checked_sub(TAG_LEN) else {
            return Err("a segment is shorter than its authentication tag");
        };
        match self.declared {
            None => self.open_first(cipher, segment, out, scratch)?,
            Some(declared) => {
                if self.filled + piece > declared {
                    return Err("the segments hold more than the authenticated message length");
                }
                // Room for the tag too: given less, the cipher decrypts through a copy.
                let end = self.filled + len;
                let room = out.writable(end)?;
                let read = cipher
                    .read_message(self.next, segment, &mut room[self.filled..end])
                    .map_err(reason)?;
                self.filled += read;
                self.next += 1;
            }
        }
        self.left -= taken;
        Ok(Some(taken))
    }

    fn open_first(
        &mut self,
        cipher: &StatelessTransportState,
        segment: &[u8],
        out: &mut impl PlainOut,
        scratch: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        scratch.clear();
        scratch.resize(segment.len(), 0);
        let read = cipher
            .read_message(self.next, segment, scratch)
            .map_err(reason)?;
        scratch.truncate(read);
        self.next += 1;
        let Some((prefix, head)) = scratch.split_first_chunk::<LENGTH_PREFIX>() else {
            return Err("the first segment is too short to hold the message length");
        };
        let declared = u32::from_le_bytes(*prefix);
        if declared > self.limit {
            return Err("the authenticated message length is above the limit");
        }
        if u64::from(self.body) != body_len(u64::from(declared)) {
            return Err("the authenticated message length does not match the frame's size");
        }
        let declared = declared as usize;
        // Safe to reserve now: `declared` is authenticated and bounded by the limit.
        out.reserve_message(declared + TAG_LEN);
        out.writable(head.len())?[..head.len()].copy_from_slice(head);
        self.filled = head.len();
        self.declared = Some(declared);
        Ok(())
    }

    /// Once the whole body is open: the nonce after the frame and the message's length (the
    /// plaintext is `out[..len]`).
    ///
    /// # Errors
    /// The body is not all opened, or holds less than the authenticated length.
    pub(crate) fn finish(&self) -> Result<(u64, usize), &'static str> {
        let Some(declared) = self.declared else {
            return Err("the frame ends before its first segment");
        };
        if self.left != 0 {
            return Err("the frame ends inside a segment");
        }
        if self.filled != declared {
            return Err("the segments hold less than the authenticated message length");
        }
        Ok((self.next, declared))
    }
}

/// Where an [`Opener`] writes the plaintext: a vector, or memory shared with workers.
pub(crate) trait PlainOut {
    /// Readies room for a message of `room` bytes, its length now authenticated.
    fn reserve_message(&mut self, room: usize);

    /// The buffer, at least `end` bytes long.
    ///
    /// # Errors
    /// The buffer cannot be that long (a shared area that could not grow).
    fn writable(&mut self, end: usize) -> Result<&mut [u8], &'static str>;
}

impl PlainOut for Vec<u8> {
    fn reserve_message(&mut self, room: usize) {
        if self.capacity() < room {
            self.reserve_exact(room - self.len());
        }
    }

    /// Grows the vector (zero-filled) only as far as asked, so that a new buffer is
    /// filled a segment at a time, while its pages are in the cache.
    fn writable(&mut self, end: usize) -> Result<&mut [u8], &'static str> {
        if self.len() < end {
            self.resize(end, 0);
        }
        Ok(self)
    }
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
    fn batches_of_segments_are_the_whole_frame() {
        let (c, _) = session();
        let message: Vec<u8> = (0..300_000u32).map(|i| (i * 3) as u8).collect();
        let parts: [&[u8]; 2] = [&message[..100], &message[100..]];
        let whole = sealed(&c, &mut 5, &message);
        for batch in [0, 1, 70_000, 200_000, usize::MAX] {
            let mut sealer = Sealer::new(&parts, 5).unwrap();
            let (mut joined, mut out, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
            loop {
                out.clear();
                let done = sealer.seal_some(&c, &mut out, &mut scratch, batch).unwrap();
                joined.extend_from_slice(&out);
                if done {
                    break;
                }
            }
            assert!(joined == whole, "batch {batch}");
            assert_eq!(sealer.next_nonce(), 5 + 5, "five segments");
        }
    }

    #[test]
    fn a_body_opened_as_it_arrives_is_the_message() {
        let (c, s) = session();
        let message: Vec<u8> = (0..200_000u32).map(|i| (i * 5) as u8).collect();
        let frame = sealed(&c, &mut 0, &message);
        let body = &frame[FRAME_HEADER..];
        // A reused buffer, longer than the message: its stale bytes stay past the end.
        let mut out = vec![0xEE; 300_000];
        for step in [1usize, 1000, 65_537, 100_000] {
            let mut opener = Opener::new(body.len() as u32, 0, u32::MAX);
            let (mut arrived, mut opened, mut scratch) = (0, 0, Vec::new());
            while opener.left() > 0 {
                arrived = (arrived + step).min(body.len());
                while let Some(taken) = opener
                    .open_next(&s, &body[opened..arrived], &mut out, &mut scratch)
                    .unwrap()
                {
                    opened += taken;
                }
            }
            let (next, len) = opener.finish().unwrap();
            assert_eq!((next, len), (4, message.len()), "step {step}");
            assert!(out[..len] == message[..], "step {step}");
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
