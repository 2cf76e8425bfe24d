//! Taking every submitted job out of a [`JobQueue`] at once, for `cancel_all` on a local
//! server (see [`crate::cancel`]): a child of the queue's module, which sees its parts.

use super::JobQueue;
use crate::queued_job::QueuedJob;
use crossbeam_deque::{Steal, Worker};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

impl JobQueue {
    /// Takes every submitted job out of the retry queue and the shared queue (for
    /// `cancel_all`, which cancels them); the pieces of other work found there (`par!`
    /// chunks) stay in the retry queue or go back to the shared one, behind what was queued
    /// meanwhile. Bounded: takes at most what the shared queue held when it began.
    pub(crate) fn take_queued_jobs(&self) -> Vec<Box<dyn QueuedJob>> {
        let mut jobs: Vec<Box<dyn QueuedJob>> = Vec::new();
        if self.retry_len.load(Ordering::SeqCst) > 0 {
            let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
            let (taken, kept): (VecDeque<_>, VecDeque<_>) =
                retry.drain(..).partition(|retried| retried.job.is_job());
            *retry = kept;
            self.retry_len.store(retry.len(), Ordering::SeqCst);
            jobs.extend(taken.into_iter().map(|retried| retried.job));
        }
        // In batches (one pin of the queue's memory per batch, not per job).
        let (batch, mut others) = (Worker::new_fifo(), Vec::new());
        let mut left = self.shared.len();
        while left > 0 {
            if let Steal::Empty = self.shared.steal_batch_with_limit(&batch, left) {
                break;
            }
            while let Some(job) = batch.pop() {
                left = left.saturating_sub(1);
                if job.is_job() {
                    jobs.push(job);
                } else {
                    others.push(job);
                }
            }
        }
        self.took();
        for job in others {
            self.push(job);
        }
        jobs
    }
}
