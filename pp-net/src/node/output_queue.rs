//! The pieces of jobs' output a session's writer has yet to send, and the replies that
//! must wait for them.
//!
//! A job's output goes to the client before its reply, but other jobs' results need not
//! wait for it: the writer sends at most one piece (`OUTPUT_PIECE` bytes) between two
//! rounds of results, and holds back only the replies of jobs whose output has not all
//! gone yet. A large output then delays another job's result by the time one piece takes
//! to cross, not the whole output's. A note that must follow the pieces before it (a
//! crashed lane's `LaneEnded`, after its job's output) waits its turn the same way.

use std::collections::{HashMap, VecDeque};

use crate::protocol::{JobOutput, JobReply, Message};

/// Output pieces, in the order they came, with the replies that came after them.
#[derive(Default)]
pub(crate) struct OutputQueue {
    held: VecDeque<Held>,
    /// Pieces in `held`, per job.
    pieces: HashMap<u64, usize>,
}

/// What waits its turn.
enum Held {
    Piece(JobOutput),
    Reply(JobReply),
    Note(Message),
}

impl OutputQueue {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// A piece of a job's output: it goes after the pieces already here.
    pub(crate) fn push_piece(&mut self, piece: JobOutput) {
        *self.pieces.entry(piece.job_id).or_default() += 1;
        self.held.push_back(Held::Piece(piece));
    }

    /// A job's reply: given back when it may go now (no piece of its job waits), else held
    /// until its job's pieces have gone.
    pub(crate) fn reply(&mut self, reply: JobReply) -> Option<JobReply> {
        if self.pieces.contains_key(&reply.job_id) {
            self.held.push_back(Held::Reply(reply));
            None
        } else {
            Some(reply)
        }
    }

    /// A note that must go after every piece here: given back when none waits.
    pub(crate) fn note_after_pieces(&mut self, note: Message) -> Option<Message> {
        if self.held.is_empty() {
            Some(note)
        } else {
            self.held.push_back(Held::Note(note));
            None
        }
    }

    /// The next piece to send, after moving the replies and notes before it (their pieces
    /// have all gone) to `ready` and `notes`.
    pub(crate) fn next_piece(
        &mut self,
        ready: &mut VecDeque<JobReply>,
        notes: &mut Vec<Message>,
    ) -> Option<JobOutput> {
        loop {
            match self.held.pop_front()? {
                Held::Reply(reply) => ready.push_back(reply),
                Held::Note(note) => notes.push(note),
                Held::Piece(piece) => {
                    if let Some(left) = self.pieces.get_mut(&piece.job_id) {
                        *left -= 1;
                        if *left == 0 {
                            self.pieces.remove(&piece.job_id);
                        }
                    }
                    return Some(piece);
                }
            }
        }
    }

    /// The replies and notes at the front, whose pieces have all gone, moved to `ready`
    /// and `notes`.
    pub(crate) fn release_replies(
        &mut self,
        ready: &mut VecDeque<JobReply>,
        notes: &mut Vec<Message>,
    ) {
        loop {
            match self.held.pop_front() {
                Some(Held::Reply(reply)) => ready.push_back(reply),
                Some(Held::Note(note)) => notes.push(note),
                Some(piece) => {
                    self.held.push_front(piece);
                    return;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn piece(job_id: u64) -> JobOutput {
        JobOutput {
            job_id,
            stdout: b"x\n".to_vec(),
            ..JobOutput::default()
        }
    }

    fn reply(job_id: u64) -> JobReply {
        JobReply {
            job_id,
            outcome: Outcome::Ok(Vec::new()),
            run_time: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_reply_waits_for_its_own_jobs_pieces_only() {
        let mut queue = OutputQueue::default();
        let mut ready = VecDeque::new();
        let mut notes = Vec::new();
        queue.push_piece(piece(1));
        queue.push_piece(piece(1));
        assert!(queue.reply(reply(1)).is_none());
        // Another job's reply goes at once.
        assert_eq!(queue.reply(reply(2)).map(|r| r.job_id), Some(2));
        assert_eq!(
            queue.next_piece(&mut ready, &mut notes).map(|p| p.job_id),
            Some(1)
        );
        queue.release_replies(&mut ready, &mut notes);
        assert!(ready.is_empty());
        assert_eq!(
            queue.next_piece(&mut ready, &mut notes).map(|p| p.job_id),
            Some(1)
        );
        assert!(ready.is_empty());
        queue.release_replies(&mut ready, &mut notes);
        assert_eq!(ready.pop_front().map(|r| r.job_id), Some(1));
        assert!(queue.is_empty());
        assert!(queue.next_piece(&mut ready, &mut notes).is_none());
        // With its pieces gone, a job's later reply (a copy's) is not held.
        assert!(queue.reply(reply(1)).is_some());
        assert!(notes.is_empty());
    }

    #[test]
    fn a_note_after_pieces_waits_for_them() {
        let mut queue = OutputQueue::default();
        let (mut ready, mut notes) = (VecDeque::new(), Vec::new());
        let ended = Message::LaneEnded {
            lane: 1,
            crashed: true,
            reason: String::new(),
        };
        assert!(queue.note_after_pieces(ended.clone()).is_some());
        queue.push_piece(piece(3));
        assert!(queue.note_after_pieces(ended.clone()).is_none());
        assert_eq!(
            queue.next_piece(&mut ready, &mut notes).map(|p| p.job_id),
            Some(3)
        );
        assert!(notes.is_empty());
        queue.release_replies(&mut ready, &mut notes);
        assert_eq!(notes, vec![ended]);
        assert!(queue.is_empty());
    }
}
