//! An upload in progress: a temporary file in the cache directory, hashed as it grows,
//! holding a reservation of its announced size against the cache's bound until it ends.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::check::FileIdentity;
use super::{CacheState, ProgramCache, ProgramLease};
use crate::program::hex;

/// Why the node does not take an upload: the reason sent to the client in `Refused`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadRefused {
    /// The program alone is larger than the whole cache.
    #[error(
        "the program is {size} bytes, more than this node's program cache may hold \
         (ppserver --max-cache {max} bytes)"
    )]
    LargerThanCache {
        /// The announced size.
        size: u64,
        /// The cache's bound.
        max: u64,
    },
    /// Programs in use and uploads in progress leave too little room now.
    #[error(
        "the program is {size} bytes and this node's program cache has room for {free} \
         more now (ppserver --max-cache {max} bytes: {kept} held by programs in use, \
         {reserved} reserved by uploads in progress); try again later"
    )]
    CacheFull {
        /// The announced size.
        size: u64,
        /// The room left after evicting every program not in use.
        free: u64,
        /// The cache's bound.
        max: u64,
        /// Bytes of programs that stay (in use).
        kept: u64,
        /// Bytes reserved by other uploads in progress.
        reserved: u64,
    },
    /// The temporary file cannot be created.
    #[error("the node cannot store the program: {0}")]
    Store(#[source] io::Error),
}

/// Bytes reserved against the cache's bound for one upload; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    cache: Arc<ProgramCache>,
    bytes: u64,
}

impl Reservation {
    /// Counts `bytes` as reserved; the caller checked they fit.
    pub(super) fn new(cache: Arc<ProgramCache>, state: &mut CacheState, bytes: u64) -> Self {
        state.reserved += bytes;
        Reservation { cache, bytes }
    }

    /// Gives the bytes back, with the cache's state already locked.
    fn release(&mut self, state: &mut CacheState) {
        state.reserved -= std::mem::take(&mut self.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let cache = Arc::clone(&self.cache);
            self.release(&mut cache.lock());
        }
    }
}

/// An upload in progress. Dropped unfinished, it deletes its temporary file and gives back
/// its reservation.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(super) cache: Arc<ProgramCache>,
    pub(super) reservation: Reservation,
    pub(super) file: Option<tokio::fs::File>,
    pub(super) temp: PathBuf,
    pub(super) hasher: Sha256,
    pub(super) hash: [u8; 32],
    pub(super) size: u64,
    pub(super) received: u64,
    /// Set once the file has its place in the cache.
    pub(super) done: bool,
}

impl Upload {
    /// Appends a chunk. The error is the reason to give the client.
    pub(crate) async fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), String> {
        if offset != self.received {
            return Err(format!(
                "upload chunk at offset {offset}, expected offset {}",
                self.received
            ));
        }
        let end = self.received + bytes.len() as u64;
        if end > self.size {
            return Err(format!(
                "upload goes past the announced program size of {} bytes",
                self.size
            ));
        }
        let file = self.file.as_mut().ok_or("upload already finished")?;
        file.write_all(bytes)
            .await
            .map_err(|e| format!("the node cannot store the program: {e}"))?;
        self.hasher.update(bytes);
        self.received = end;
        Ok(())
    }

    /// Checks size and hash and moves the program into the cache, leased and known as
    /// verified.
    pub(crate) async fn finish(mut self) -> Result<ProgramLease, String> {
        if self.received != self.size {
            return Err(format!(
                "upload ended after {} of {} bytes",
                self.received, self.size
            ));
        }
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if digest != self.hash {
            return Err(format!(
                "the uploaded program's SHA-256 is {}, not the announced {}",
                hex(&digest),
                hex(&self.hash)
            ));
        }
        let store = |e: io::Error| format!("the node cannot store the program: {e}");
        let file = self.file.take().ok_or("upload already finished")?;
        // Closed before exec: a file still open for writing cannot be run.
        let file = file.into_std().await;
        file.sync_data().map_err(store)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o700))
                .map_err(store)?;
        }
        drop(file);
        let path = self.cache.path_of(&self.hash);
        let lease = {
            let mut state = self.cache.lock();
            fs::rename(&self.temp, &path).map_err(store)?;
            self.done = true;
            // The program now counts as a file of the cache instead of a reservation.
            self.reservation.release(&mut state);
            match fs::symlink_metadata(&path) {
                Ok(meta) => {
                    state.verified.insert(self.hash, FileIdentity::of(&meta));
                }
                Err(error) => {
                    pp_runtime::debug!(path = %path.display(), %error, "cannot stat a new program")
                }
            }
            *state.in_use.entry(self.hash).or_default() += 1;
            ProgramLease {
                cache: Arc::clone(&self.cache),
                hash: self.hash,
                path,
            }
        };
        self.cache.evict();
        Ok(lease)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = fs::remove_file(&self.temp);
        }
    }
}
