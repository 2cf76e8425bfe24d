//! The sending half of a session's connection, on a task of its own, so that a node that
//! stops reading cannot stall the session's clock.

use crate::channel::{NetError, SecureWriter};
use crate::protocol::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The connection's writing half, on a task of its own: a node that stops reading fills
/// the socket's buffers and blocks this task, never the session.
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<Message>,
    /// The sending task; it ends with the error that stopped it (the session selects on it).
    pub(crate) task: JoinHandle<Result<(), NetError>>,
}

impl Outbox {
    /// Starts the task that sends what [`Outbox::send`] queues on `writer`.
    pub(crate) fn start(mut writer: SecureWriter) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<Message>();
        let task = tokio::spawn(async move {
            while let Some(message) = pending.recv().await {
                match &message {
                    Message::Submit { jobs } => writer.send_submit(jobs).await?,
                    other => writer.send(other).await?,
                }
            }
            Ok(())
        });
        Outbox { queue, task }
    }

    /// Queues `message`; if the task has stopped, the session learns it from the task.
    pub(crate) fn send(&self, message: Message) {
        let _ = self.queue.send(message);
    }
}

impl Drop for Outbox {
    /// Stops the task, even in the middle of a send to a node that reads nothing: the
    /// connection is being dropped anyway.
    fn drop(&mut self) {
        self.task.abort();
    }
}
