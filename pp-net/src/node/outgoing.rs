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
    /// A message sent as it is: about the session's lane (`LaneOffer`, `LaneEnded`), or a
    /// job's `Output`. The writer sends the notes it has before the results it has, so a
    /// job's output, queued before its reply, reaches the client first.
    Note(Message),
}
