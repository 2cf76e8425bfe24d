//! Whether a file found in the cache may be run: a regular file, owned by the node's user,
//! not writable by group or others, whose SHA-256 is its name.
//!
//! A name in the cache proves nothing by itself: the directory may have been open to
//! others before the node made it private, or someone with the node's user account may
//! have put a file there by hand. So every cached file is checked through one open
//! descriptor (no symbolic link followed, no blocking on a planted FIFO), and hashed on its
//! first use after the node starts; its [`FileIdentity`] then stands for the hash until the
//! file changes.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::program::hex;

/// What identifies one version of a file: which file (device, inode), its size, and when
/// it last changed. The status-change time cannot be set back by anyone but root, so a
/// write, a `chmod` or a replacement after the check gives another identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileIdentity {
    /// The identity of the file `meta` describes.
    pub(crate) fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            FileIdentity {
                device: meta.dev(),
                inode: meta.ino(),
                size: meta.size(),
                modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
                changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let ns = |t: io::Result<std::time::SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128)
            };
            FileIdentity {
                device: 0,
                inode: 0,
                size: meta.len(),
                modified_ns: ns(meta.modified()),
                changed_ns: 0,
            }
        }
    }

    /// Whether both name the same file (its content may differ).
    pub(crate) fn same_file(&self, other: &FileIdentity) -> bool {
        self.device == other.device && self.inode == other.inode
    }
}

/// Why a file in the cache is not trusted (and is purged).
#[derive(Debug, thiserror::Error)]
// Owners and modes are checked on Unix only.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) enum Distrust {
    /// Not a regular file.
    #[error("it is not a regular file but {0}")]
    NotAFile(&'static str),
    /// Owned by another user than the node's.
    #[error("it belongs to user {owner}, not to this node's user {node}")]
    ForeignOwner {
        /// The file's owner.
        owner: u32,
        /// The node's user.
        node: u32,
    },
    /// Others than its owner may change it.
    #[error("it is writable by group or others (mode {mode:03o})")]
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// Its content is not the program its name says.
    #[error("its SHA-256 is {actual}, not the one its name says")]
    WrongHash {
        /// The hash of its content, in hex.
        actual: String,
    },
    /// It cannot be opened or read.
    #[error("it cannot be read: {0}")]
    Unreadable(#[source] io::Error),
}

/// A file of the cache, open, that passed the checks of type, owner and mode.
#[derive(Debug)]
pub(crate) struct CachedFile {
    pub(crate) file: File,
    pub(crate) identity: FileIdentity,
}

/// A cached file that failed a check, with the identity of what was found (to purge
/// exactly that, not a file that took its place meanwhile).
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) reason: Distrust,
    pub(crate) found: Option<FileIdentity>,
}

/// Opens `path` and checks type, owner and mode; `Ok(None)` when there is no such file.
pub(crate) fn open_checked(path: &Path, node_user: u32) -> Result<Option<CachedFile>, Rejected> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Rejected {
                reason: Distrust::Unreadable(error),
                found: None,
            })
        }
    };
    let found = Some(FileIdentity::of(&meta));
    let reject = |reason| Rejected { reason, found };
    if !meta.is_file() {
        return Err(reject(Distrust::NotAFile(kind_of(&meta))));
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    // No symbolic link swapped in since the look above, and no waiting on a FIFO.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options
        .open(path)
        .map_err(|e| reject(Distrust::Unreadable(e)))?;
    let meta = file
        .metadata()
        .map_err(|e| reject(Distrust::Unreadable(e)))?;
    let found = Some(FileIdentity::of(&meta));
    let reject = |reason| Rejected { reason, found };
    if !meta.is_file() {
        return Err(reject(Distrust::NotAFile(kind_of(&meta))));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != node_user {
            return Err(reject(Distrust::ForeignOwner {
                owner: meta.uid(),
                node: node_user,
            }));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(reject(Distrust::Writable {
                mode: meta.mode() & 0o7777,
            }));
        }
    }
    #[cfg(not(unix))]
    let _ = node_user;
    Ok(Some(CachedFile {
        identity: FileIdentity::of(&meta),
        file,
    }))
}

/// Hashes the open file from its start and compares with `hash`, its name.
pub(crate) fn check_hash(cached: &CachedFile, hash: &[u8; 32]) -> Result<(), Rejected> {
    let reject = |reason| Rejected {
        reason,
        found: Some(cached.identity),
    };
    let actual = sha256_of(&cached.file).map_err(|e| reject(Distrust::Unreadable(e)))?;
    if actual != *hash {
        return Err(reject(Distrust::WrongHash {
            actual: hex(&actual),
        }));
    }
    Ok(())
}

/// The SHA-256 of what `file` holds (read through a duplicate of its descriptor from
/// offset 0).
fn sha256_of(file: &File) -> io::Result<[u8; 32]> {
    let mut reader = file.try_clone()?;
    io::Seek::rewind(&mut reader)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut block) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(n) => hasher.update(&block[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// A name for what kind of non-regular file `meta` describes.
fn kind_of(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return "a symbolic link";
    }
    if kind.is_dir() {
        return "a directory";
    }
    "a special file"
}

/// Removes the entry at `path` if it still is the file `found` (or whatever is there when
/// nothing was found); a directory only if it is empty.
pub(crate) fn remove_entry(path: &Path, found: Option<FileIdentity>) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if found.is_some_and(|found| !found.same_file(&FileIdentity::of(&meta))) {
        // Replaced meanwhile (by an upload): that one is checked on its own.
        return Ok(());
    }
    if meta.is_dir() {
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}
