//! Layout of an encrypted frame, and the pure functions that seal and open one: bytes in,
//! bytes out, no socket (the reader and writer drive them).
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
//!
//! Files: `layout` (the sizes), `seal` (a message, given in parts, into a frame a batch of
//! segments at a time), `open` (a frame body into its message, a segment at a time, into
//! any [`PlainOut`]).

mod layout;
mod open;
mod seal;
#[cfg(test)]
mod tests;

pub(crate) use layout::{body_len, FRAME_HEADER};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use open::open;
pub(crate) use open::{Opener, PlainOut};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use seal::seal;
pub(crate) use seal::Sealer;
