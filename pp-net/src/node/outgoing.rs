//! What a session's writer sends the client: the one channel into which the reader, the
//! worker loops and the lane workers' watchers all put what must go out.

use crate::{JobReply, Message};

/// What the writer sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A job's outcome, to batch into `Results`.
    Reply(JobReply),
    /// The answer to a heartbeat.
    Ack(u64),
    /// A message: about the session's lane (`LaneOffer`, `LaneEnded`), sent as it is, or a
    /// piece of a job's `Output`, which the writer sends before the job's reply (see the
    /// `output_queue` module).
    Note(Message),
    /// A job the client withdrew was dropped unanswered: its place in the client's count
    /// of jobs on the node is free again.
    Dropped,
}
