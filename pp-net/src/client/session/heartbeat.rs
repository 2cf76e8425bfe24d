//! A session's heartbeats and the check of the liveness policy
//! ([`ClusterOptions::liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout)).

use crate::protocol::Message;
use pp_runtime::remote::ClusterOptions;
use pp_runtime::NodeFailure;
use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// When the next heartbeat is due and when the node was last heard from.
pub(crate) struct Heartbeats {
    beat: Interval,
    interval: Duration,
    liveness: Duration,
    /// The last heartbeat's sequence number.
    seq: u64,
    last_heard: Instant,
}

impl Heartbeats {
    /// The first heartbeat is due one interval from now; the node counts as heard now.
    pub(crate) fn start(options: &ClusterOptions) -> Self {
        let interval = options.heartbeat_interval;
        let mut beat = tokio::time::interval_at(Instant::now() + interval, interval);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeats {
            beat,
            interval,
            liveness: options.liveness_timeout,
            seq: 0,
            last_heard: Instant::now(),
        }
    }

    /// A message came from the node: it is alive.
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Waits until a heartbeat is due; returns when it was scheduled. Cancel safe.
    pub(crate) async fn due(&mut self) -> Instant {
        self.beat.tick().await
    }

    /// The heartbeat scheduled at `scheduled` is due: returns it, to send, or why the node
    /// is lost.
    pub(crate) fn beat(&mut self, scheduled: Instant) -> Result<Message, NodeFailure> {
        let now = Instant::now();
        if now.duration_since(scheduled) > self.interval {
            // This thread was held up (a slow callback runs on it), so heartbeats went out
            // late and answers may wait unread: the silence was not the node's. Its clock
            // starts again with the heartbeat sent now.
            self.last_heard = now;
        }
        if now.duration_since(self.last_heard) >= self.liveness {
            return Err(NodeFailure::Silent {
                after: self.liveness,
            });
        }
        self.seq += 1;
        Ok(Message::Heartbeat { seq: self.seq })
    }
}
