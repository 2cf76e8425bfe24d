//! The cache of client programs, one executable per SHA-256, private to the node's user.
//!
//! A program is `<cache_dir>/<sha256 hex>`. An upload is written to a temporary file in the
//! same directory, checked against its hash, made executable (0700) and renamed into place,
//! so a name in the cache always holds a complete, verified program. Using a program
//! touches its modification time; past `max_cache_bytes` the least recently used programs
//! that no session is running are removed.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::NodeError;
use crate::program::hex;

/// Temporary uploads older than this, left by a node that died, are removed at start.
const STALE_UPLOAD: Duration = Duration::from_secs(3600);

/// Prefix of temporary upload files (never a valid program name).
const UPLOAD_PREFIX: &str = ".upload-";

/// The program cache of one node.
#[derive(Debug)]
pub(crate) struct ProgramCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Programs that sessions are running, with how many sessions run each.
    in_use: Mutex<HashMap<[u8; 32], usize>>,
    next_upload: AtomicU64,
}

/// A program in the cache that a session runs; it is not evicted while leased.
#[derive(Debug)]
pub(crate) struct ProgramLease {
    cache: Arc<ProgramCache>,
    hash: [u8; 32],
    path: PathBuf,
}

impl ProgramLease {
    /// The executable.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProgramLease {
    fn drop(&mut self) {
        let mut in_use = self.cache.lock();
        if let Some(count) = in_use.get_mut(&self.hash) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.hash);
            }
        }
    }
}

impl ProgramCache {
    /// Opens (creating it with mode 0700) the cache directory, and removes stale uploads.
    ///
    /// # Errors
    /// [`NodeError::CacheDir`] when the directory cannot be created, is not a directory,
    /// or belongs to another user.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Self>, NodeError> {
        let fail = |reason: String| NodeError::CacheDir {
            path: dir.to_owned(),
            reason,
        };
        create_private_dir(dir).map_err(|e| fail(e.to_string()))?;
        let meta = fs::symlink_metadata(dir).map_err(|e| fail(e.to_string()))?;
        if !meta.is_dir() {
            return Err(fail("it is not a directory".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let me = super::sys::user_id();
            if meta.uid() != me {
                return Err(fail(format!(
                    "it belongs to user {} and this node runs as user {me}",
                    meta.uid()
                )));
            }
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| fail(format!("cannot make it private (mode 0700): {e}")))?;
            }
        }
        let cache = Arc::new(ProgramCache {
            dir: dir.to_owned(),
            max_bytes,
            in_use: Mutex::new(HashMap::new()),
            next_upload: AtomicU64::new(0),
        });
        cache.remove_stale_uploads();
        Ok(cache)
    }

    /// The cache directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], usize>> {
        // The map stays consistent even if a holder panicked: every update is one step.
        self.in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path_of(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(hex(hash))
    }

    /// The cached program with this hash, leased and touched, if present.
    pub(crate) fn lookup(self: &Arc<Self>, hash: &[u8; 32]) -> Option<ProgramLease> {
        let path = self.path_of(hash);
        let mut in_use = self.lock();
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return None;
        }
        // Opened read-only: a running executable cannot be opened for writing.
        if let Err(error) = fs::File::open(&path).and_then(|f| f.set_modified(SystemTime::now())) {
            tracing::debug!(path = %path.display(), %error, "cannot touch a cached program");
        }
        *in_use.entry(*hash).or_default() += 1;
        Some(ProgramLease {
            cache: Arc::clone(self),
            hash: *hash,
            path,
        })
    }

    /// Starts receiving a program of `size` bytes that must hash to `hash`.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub(crate) async fn begin_upload(
        self: &Arc<Self>,
        hash: [u8; 32],
        size: u64,
    ) -> io::Result<Upload> {
        let n = self.next_upload.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(
            "{UPLOAD_PREFIX}{}-{}-{n}",
            &hex(&hash)[..16],
            std::process::id()
        ));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&temp)?;
        Ok(Upload {
            cache: Arc::clone(self),
            file: Some(tokio::fs::File::from_std(file)),
            temp,
            hasher: Sha256::new(),
            hash,
            size,
            received: 0,
            done: false,
        })
    }

    /// Removes least recently used programs not in use until the cache fits its bound.
    fn evict(&self) {
        let in_use = self.lock();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut programs = Vec::new();
        let mut total = 0u64;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(hash) = parse_hex(name) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            total += meta.len();
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            programs.push((used, meta.len(), hash, entry.path()));
        }
        programs.sort_by_key(|p| p.0);
        for (_, size, hash, path) in programs {
            if total <= self.max_bytes {
                break;
            }
            if in_use.contains_key(&hash) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    total -= size;
                    tracing::info!(program = %hex(&hash), size, "evicted from the program cache");
                }
                Err(error) => tracing::warn!(path = %path.display(), %error, "cannot evict"),
            }
        }
    }

    fn remove_stale_uploads(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_string_lossy()
                .starts_with(UPLOAD_PREFIX)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_UPLOAD);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// An upload in progress. Dropped unfinished, it deletes its temporary file.
#[derive(Debug)]
pub(crate) struct Upload {
    cache: Arc<ProgramCache>,
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    hasher: Sha256,
    hash: [u8; 32],
    size: u64,
    received: u64,
    /// Set once the file has its place in the cache.
    done: bool,
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

    /// Checks size and hash and moves the program into the cache, leased.
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
            let mut in_use = self.cache.lock();
            fs::rename(&self.temp, &path).map_err(store)?;
            self.done = true;
            *in_use.entry(self.hash).or_default() += 1;
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

fn parse_hex(name: &str) -> Option<[u8; 32]> {
    if name.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pp-cache-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn hex_round_trips() {
        let hash = sha(b"x");
        assert_eq!(parse_hex(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex("zz"), None);
    }

    #[tokio::test]
    async fn upload_is_verified_then_cached_and_evicted_when_unused() {
        let dir = temp_dir("upload");
        let cache = ProgramCache::open(&dir, 10).unwrap();
        let program = b"0123456789".to_vec();
        let hash = sha(&program);
        assert!(cache.lookup(&hash).is_none());

        // A wrong offset and a wrong hash are refused, and leave no file behind.
        let mut upload = cache.begin_upload(hash, 10).await.unwrap();
        assert!(upload.write(1, b"1").await.is_err());
        drop(upload);
        let mut upload = cache.begin_upload(sha(b"other"), 10).await.unwrap();
        upload.write(0, &program).await.unwrap();
        assert!(upload.finish().await.unwrap_err().contains("SHA-256"));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);

        let mut upload = cache.begin_upload(hash, 10).await.unwrap();
        upload.write(0, &program[..4]).await.unwrap();
        upload.write(4, &program[4..]).await.unwrap();
        let lease = upload.finish().await.unwrap();
        assert_eq!(fs::read(lease.path()).unwrap(), program);
        drop(lease);
        let lease = cache.lookup(&hash).expect("cached");

        // A second program overflows the bound: the one in use stays, the new one too
        // (it is leased), and once released the older one goes first.
        let other = b"abcdefghij".to_vec();
        let mut upload = cache.begin_upload(sha(&other), 10).await.unwrap();
        upload.write(0, &other).await.unwrap();
        let other_lease = upload.finish().await.unwrap();
        assert!(lease.path().exists() && other_lease.path().exists());
        // The first program was used longest ago.
        fs::File::open(lease.path())
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
            .unwrap();
        drop(lease);
        drop(other_lease);
        cache.evict();
        assert!(cache.lookup(&hash).is_none(), "least recently used evicted");
        assert!(cache.lookup(&sha(&other)).is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
