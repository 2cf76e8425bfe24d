//! A job's output: what a job run on a node wrote on its standard output and standard
//! error, as the worker caught it, brought to the client to print (see `worker::capture`
//! for the catching and `client::job_output` for the printing).
//!
//! It travels before the job's reply, on the pipe (`FromWorker::Output`) and then on the
//! connection (`Message::Output`), or on a lane straight from the lane worker. At most
//! [`OUTPUT_BOUND`] bytes of one job travel; the rest is counted in
//! [`JobOutput::dropped`] and never held anywhere.

use serde::{Deserialize, Serialize};

/// Most bytes of one job's output (standard output and error together) that are brought
/// to the client: 1 MiB. Beyond it the worker reads and drops what the job writes.
pub const OUTPUT_BOUND: usize = 1 << 20;

/// Room kept in a frame or message for everything of a [`JobOutput`] but its bytes.
const OUTPUT_SLACK: u32 = 256;

/// The bound for one job's output when frames or messages hold at most `limit` bytes:
/// [`OUTPUT_BOUND`], or less so that the output still fits in one.
pub(crate) fn output_bound(limit: u32) -> usize {
    OUTPUT_BOUND.min(limit.saturating_sub(OUTPUT_SLACK) as usize)
}

/// What one job wrote on its standard streams, within the bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutput {
    /// The job, as in its [`JobReply`](super::JobReply).
    pub job_id: u64,
    /// What it wrote on standard output, as written (not necessarily UTF-8 or whole
    /// lines).
    #[serde(with = "pp_runtime::codec::bytes")]
    pub stdout: Vec<u8>,
    /// What it wrote on standard error.
    #[serde(with = "pp_runtime::codec::bytes")]
    pub stderr: Vec<u8>,
    /// Bytes written beyond the bound, read and dropped by the worker.
    pub dropped: u64,
}

impl JobOutput {
    /// Whether there is nothing to bring back: no byte written.
    pub fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty() && self.dropped == 0
    }
}
