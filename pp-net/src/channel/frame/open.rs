//! Opening: a frame body into its message, one segment at a time as its bytes arrive, each
//! authenticated before its plaintext is written, into any [`PlainOut`].

use snow::StatelessTransportState;

use super::layout::{body_len, LENGTH_PREFIX, SEGMENT_HEADER, TAG_LEN};

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
/// `open`: each segment is authenticated before its plaintext is written, and the frame
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
        out: &mut (impl PlainOut + ?Sized),
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
        out: &mut (impl PlainOut + ?Sized),
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

/// Where an [`Opener`] writes the plaintext: a vector, or memory plugged in from above (a
/// reader's [`PlaintextArea`](crate::channel::PlaintextArea)).
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
