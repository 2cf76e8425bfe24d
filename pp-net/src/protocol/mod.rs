//! The protocol layer: what the bytes on a channel mean. Every message of the protocol
//! ([`Message`], in `message`), the job records it carries (`job`, `outcome`, `output`: what a job printed), the
//! hand-written encoding of a `Submit` (`submit`, the one place that layout is written
//! out), and the message-level `send`/`recv` on the channel's halves (`io`). Encodings are
//! `pp_runtime::codec`'s, the one module that owns pp's wire encoding.
//!
//! Built on [`channel`](crate::channel) (bytes only); the roles (client, node, lane worker)
//! are built on this.

#[cfg(test)]
mod golden_tests;
mod io;
mod job;
mod message;
mod outcome;
mod output;
pub(crate) mod pipe;
mod submit;

pub(crate) use job::{reply_size, MESSAGE_SLACK};
pub use job::{JobReply, JobRequest};
pub use message::{BuildOffer, Message};
pub use outcome::Outcome;
#[cfg(unix)]
pub(crate) use output::output_bound;
pub(crate) use output::LANE_JOB;
pub use output::{JobOutput, OUTPUT_BOUND, OUTPUT_PIECE};
pub(crate) use submit::{decode_submit, JobView};
