//! What a client's discovery has done so far, for the message of a client that found no
//! node: which entries it searched, where its last full round of probes went, whether any
//! node answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::round::Sent;
use super::target::Target;

/// Shared by the discovery task (which fills it) and the client's fallback watch (which
/// reads it when it gives up waiting).
#[derive(Debug)]
pub(crate) struct SearchStatus {
    /// The `PP_SERVERS` entries searched, as written back and quoted (`` `*` ``,
    /// `` `10.0.0.*` ``).
    entries: String,
    /// The last full round of probes, described: each destination and how it fared.
    looked: Mutex<Vec<String>>,
    /// Whether an announcement from an accepted address arrived.
    heard: AtomicBool,
}

impl SearchStatus {
    /// The status of a search of `targets` that has not started.
    pub(crate) fn new(targets: &[Target]) -> SearchStatus {
        let entries: Vec<String> = targets.iter().map(|t| format!("`{t}`")).collect();
        SearchStatus {
            entries: entries.join(", "),
            looked: Mutex::new(Vec::new()),
            heard: AtomicBool::new(false),
        }
    }

    /// The entries searched, quoted and comma-separated.
    pub(crate) fn entries(&self) -> &str {
        &self.entries
    }

    /// Keeps a full round's outcome, and the unicast hosts that did not resolve.
    pub(crate) fn record(&self, sent: &[Sent], unresolved: &[&str]) {
        let mut looked: Vec<String> = sent
            .iter()
            .map(|s| match &s.error {
                None => s.destination.to_string(),
                Some(e) => format!("{} (failed: {})", s.destination, e.kind()),
            })
            .collect();
        looked.extend(unresolved.iter().map(|h| format!("{h} (not resolved)")));
        *self.looked.lock().unwrap_or_else(|e| e.into_inner()) = looked;
    }

    /// Notes that a node answered.
    pub(crate) fn heard(&self) {
        self.heard.store(true, Ordering::Relaxed);
    }

    /// Whether any node answered so far.
    pub(crate) fn heard_any(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    /// Where the last full round of probes went, for a message.
    pub(crate) fn where_looked(&self) -> String {
        let looked = self.looked.lock().unwrap_or_else(|e| e.into_inner());
        if looked.is_empty() {
            "nowhere yet".to_owned()
        } else {
            looked.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::round::Destination;
    use super::*;
    use std::io;

    #[test]
    fn says_where_it_looked_and_what_failed() {
        let targets = [
            Target::parse("*").unwrap().unwrap(),
            Target::parse("*@node7:6000").unwrap().unwrap(),
        ];
        let status = SearchStatus::new(&targets);
        assert_eq!(status.entries(), "`*`, `*@node7:6000`");
        assert_eq!(status.where_looked(), "nowhere yet");
        let sent = [
            Sent {
                destination: Destination {
                    addr: "255.255.255.255:60000".parse().unwrap(),
                    interface: None,
                },
                error: Some(io::Error::from(io::ErrorKind::NetworkUnreachable)),
            },
            Sent {
                destination: Destination {
                    addr: "10.0.0.255:60000".parse().unwrap(),
                    interface: Some("eth0".into()),
                },
                error: None,
            },
        ];
        status.record(&sent, &["node7"]);
        assert_eq!(
            status.where_looked(),
            "255.255.255.255:60000 (failed: network unreachable), 10.0.0.255:60000 (eth0), \
             node7 (not resolved)"
        );
        assert!(!status.heard_any());
        status.heard();
        assert!(status.heard_any());
    }
}
