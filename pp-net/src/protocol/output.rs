//! A job's output: what a job run on a node wrote on its standard output and standard
//! error, as the worker caught it, brought to the client to print (see `worker::capture`
//! for the catching and `client::job_output` for the printing).
//!
//! It travels before the job's reply, on the pipe (`FromWorker::Output`) and then on the
//! connection (`Message::Output`), or on a lane straight from the lane worker. At most
//! [`OUTPUT_BOUND`] bytes of one job travel; the rest is counted in
//! [`JobOutput::dropped`] and never held anywhere. A job's output goes in pieces of whole
//! lines of at most [`OUTPUT_PIECE`] bytes ([`JobOutput::into_pieces`]), so that the
//! node can let other jobs' results pass between them.

use serde::{Deserialize, Serialize};

/// Most bytes of one job's output (standard output and error together) that are brought
/// to the client: 1 MiB. Beyond it the worker reads and drops what the job writes.
pub const OUTPUT_BOUND: usize = 1 << 20;

/// Most bytes of output in one message: a piece takes about as long to cross as a small
/// result, so results of other jobs wait for no more than one piece.
pub const OUTPUT_PIECE: usize = 64 << 10;

/// The job id of an `Output` a node sends on the session for the job of a lane whose
/// worker died (the node does not know that job's id): the client takes it for the lane's
/// job. Sent before the lane's `LaneEnded`.
pub(crate) const LANE_JOB: u64 = u64::MAX;

/// Room kept in a frame or message for everything of a [`JobOutput`] but its bytes.
#[cfg(unix)]
const OUTPUT_SLACK: u32 = 256;

/// The bound for one job's output when frames or messages hold at most `limit` bytes:
/// [`OUTPUT_BOUND`], or less so that the output still fits in one. Workers catch what
/// jobs print on Unix only.
#[cfg(unix)]
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

    /// The output in pieces of at most [`OUTPUT_PIECE`] bytes, in order, each cut after a
    /// newline where the piece has one (a line longer than a piece is cut into several);
    /// the last piece carries [`JobOutput::dropped`].
    pub fn into_pieces(self) -> Vec<JobOutput> {
        let mut pieces = Vec::new();
        let piece = |stdout: &[u8], stderr: &[u8]| JobOutput {
            job_id: self.job_id,
            stdout: stdout.to_vec(),
            stderr: stderr.to_vec(),
            dropped: 0,
        };
        for (is_stdout, mut bytes) in [(true, &self.stdout[..]), (false, &self.stderr[..])] {
            while !bytes.is_empty() {
                let end = line_cut(bytes, OUTPUT_PIECE);
                let (now, rest) = bytes.split_at(end);
                pieces.push(if is_stdout {
                    piece(now, &[])
                } else {
                    piece(&[], now)
                });
                bytes = rest;
            }
        }
        match pieces.last_mut() {
            Some(last) => last.dropped = self.dropped,
            None if self.dropped > 0 => pieces.push(JobOutput {
                dropped: self.dropped,
                ..piece(&[], &[])
            }),
            None => {}
        }
        pieces
    }
}

/// Where to cut `bytes` to keep at most `max` of them: after the last newline within
/// them, or at `max` when there is none.
fn line_cut(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    bytes[..max]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(max, |at| at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_whole_lines_within_the_piece_size_and_keep_everything() {
        let line = |c: u8, len: usize| {
            let mut line = vec![c; len - 1];
            line.push(b'\n');
            line
        };
        let stdout: Vec<u8> = (0..3000).flat_map(|_| line(b'o', 100)).collect();
        let mut stderr = vec![b'e'; OUTPUT_PIECE + 10];
        stderr.extend_from_slice(b"\ntail");
        let output = JobOutput {
            job_id: 4,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            dropped: 9,
        };
        let pieces = output.into_pieces();
        for piece in &pieces {
            assert_eq!(piece.job_id, 4);
            assert!(piece.stdout.len() + piece.stderr.len() <= OUTPUT_PIECE);
            assert!(piece.stdout.is_empty() || piece.stdout.ends_with(b"\n"));
        }
        let joined = |f: fn(&JobOutput) -> &Vec<u8>| -> Vec<u8> {
            pieces.iter().flat_map(|p| f(p).clone()).collect()
        };
        assert_eq!(joined(|p| &p.stdout), stdout);
        assert_eq!(joined(|p| &p.stderr), stderr);
        let dropped: Vec<u64> = pieces.iter().map(|p| p.dropped).collect();
        assert_eq!(dropped.last(), Some(&9));
        assert_eq!(dropped.iter().sum::<u64>(), 9);
        let only_dropped = JobOutput {
            job_id: 1,
            dropped: 5,
            ..JobOutput::default()
        };
        assert_eq!(only_dropped.clone().into_pieces(), vec![only_dropped]);
        assert!(JobOutput::default().into_pieces().is_empty());
    }
}
