//! The name a node that only joins clients gives itself in its hello, made its identity.
//!
//! A client that listens recognises a node that joins again (restarted, or its host back)
//! by the name in its hello and the address it joins from, and ends the old session at
//! once instead of waiting for it to fall silent (the client's `joined` module). That works
//! only if no two running nodes of one host give the same name:
//! - a node that listens names itself `host:port`, which no other running process of the
//!   host can hold;
//! - a node that only joins has no port: it takes the lowest free *join slot* of its host,
//!   an exclusive `flock` on a file of a directory every user shares
//!   ([`std::env::temp_dir`]`/pp-join-slots`), and names itself `host` (slot 1) or
//!   `host#N`. The kernel drops the lock when the process ends, however it ends, so a
//!   node started again takes the same slot, hence the same name, as long as the nodes
//!   before it on the host still run.
//!
//! Neither the discovery identifier (random at each start) nor a file in the cache
//! directory (two nodes may use two directories) identifies a node across restarts. When
//! no slot can be taken (the directory is unusable, every slot is held) the node names
//! itself after its process id too: unique, so it never ends another node's session, but
//! not recognised after a restart (it then gets a row of its own).

use std::fs::File;
use std::path::Path;

/// Join slots a host offers; a node past them names itself with its process id.
#[cfg(unix)]
const SLOTS: u32 = 256;

/// The directory of the join slots' lock files, under the system's temporary directory.
const SLOT_DIR: &str = "pp-join-slots";

/// A node's name as it joins clients, and the lock that keeps it its own while it runs.
pub(crate) struct JoinName {
    /// The name, for the hello.
    pub(crate) name: String,
    /// The held slot's lock file; the lock goes with the process.
    _slot: Option<File>,
}

/// The name a node of host `host` that only joins gives itself: see the module's doc.
pub(crate) fn claim(host: &str) -> JoinName {
    claim_in(&std::env::temp_dir().join(SLOT_DIR), host)
}

fn claim_in(dir: &Path, host: &str) -> JoinName {
    match take_slot(dir) {
        Some((1, file)) => JoinName {
            name: host.to_owned(),
            _slot: Some(file),
        },
        Some((n, file)) => JoinName {
            name: format!("{host}#{n}"),
            _slot: Some(file),
        },
        None => {
            pp_runtime::debug!(
                "no join slot free in {}: this node's name is unique but will not be \
                 recognised after a restart",
                dir.display()
            );
            JoinName {
                name: format!("{host}#pid{}", std::process::id()),
                _slot: None,
            }
        }
    }
}

/// The lowest slot of `dir` whose lock this process could take, and its locked file.
#[cfg(unix)]
fn take_slot(dir: &Path) -> Option<(u32, File)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::os::unix::io::AsRawFd;
    // Shared by every user, as /tmp is (sticky: nobody removes another's files).
    if std::fs::DirBuilder::new().mode(0o1777).create(dir).is_ok() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
    for n in 1..=SLOTS {
        let path = dir.join(n.to_string());
        // Read-only is enough for `flock`, and lets a user lock another user's file; a
        // symbolic link planted there is refused, not followed.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
            });
        let Ok(file) = opened else { continue };
        // SAFETY: `flock` on a descriptor this function owns; no memory is passed.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked == 0 {
            return Some((n, file));
        }
    }
    None
}

/// No `flock` here: every node is unique by its process id.
#[cfg(not(unix))]
fn take_slot(_dir: &Path) -> Option<(u32, File)> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn running_nodes_take_distinct_slots_and_a_freed_one_is_taken_again() {
        let dir = std::env::temp_dir().join(format!("pp-join-slots-test-{}", std::process::id()));
        // `flock` locks belong to open files: within one process each open is its own.
        let first = claim_in(&dir, "h");
        let second = claim_in(&dir, "h");
        assert_eq!((first.name.as_str(), second.name.as_str()), ("h", "h#2"));
        drop(first);
        let again = claim_in(&dir, "h");
        assert_eq!(again.name, "h", "a node started again takes its slot back");
        drop((second, again));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unusable_directory_gives_a_unique_name() {
        let file = std::env::temp_dir().join(format!("pp-join-notadir-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let name = claim_in(&file, "h");
        assert_eq!(name.name, format!("h#pid{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
    }
}
