//! The cache of client programs, one executable per SHA-256, private to the node's user.
//!
//! A program is `<cache_dir>/<sha256 hex>`. An upload is written to a temporary file in the
//! same directory, checked against its hash, made executable (0700) and renamed into place.
//! A name in the cache is not trusted for itself, though: before a cached program is run
//! for the first time since the node started, it is checked (a regular file of the node's
//! user, not writable by others, whose SHA-256 is its name; see [`check`]) and purged with
//! a warning when it fails, which makes the client upload it. The node remembers the
//! identity of each file it checked or wrote, so a program is hashed once per node start,
//! not once per session.
//!
//! Using a program touches its modification time; past `max_cache_bytes` the least
//! recently used programs that no session is running are removed. Uploads in progress
//! count too: an upload reserves its announced size before the node accepts it (evicting
//! unused programs to make room) and is refused when it cannot fit, so the bound holds for
//! what is on disk at any time, temporary files included.

mod check;
mod upload;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use self::check::{CachedFile, FileIdentity, Rejected};
use self::upload::Reservation;
pub(crate) use self::upload::{Upload, UploadRefused};
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
    /// The node's user: the only owner a cached program may have.
    user: u32,
    state: Mutex<CacheState>,
    next_upload: AtomicU64,
}

/// What the cache knows beyond its directory; changed only under its lock, with renames
/// into and removals from the directory.
#[derive(Debug, Default)]
struct CacheState {
    /// Programs that sessions are running, with how many sessions run each.
    in_use: HashMap<[u8; 32], usize>,
    /// Programs checked (or written) since the node started, as the file they were then.
    verified: HashMap<[u8; 32], FileIdentity>,
    /// Bytes announced by uploads in progress.
    reserved: u64,
}

/// A program of the cache, as [`ProgramCache::programs`] lists it.
struct CachedProgram {
    used: SystemTime,
    size: u64,
    hash: [u8; 32],
    path: PathBuf,
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
        let mut state = self.cache.lock();
        if let Some(count) = state.in_use.get_mut(&self.hash) {
            *count -= 1;
            if *count == 0 {
                state.in_use.remove(&self.hash);
            }
        }
    }
}

impl ProgramCache {
    /// Opens (creating it with mode 0700) the cache directory, and removes stale uploads.
    /// A directory open to other users is made private, with a warning: what it holds
    /// is checked before it runs anyway.
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
        let user = super::sys::user_id();
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if meta.uid() != user {
                return Err(fail(format!(
                    "it belongs to user {} and this node runs as user {user}",
                    meta.uid()
                )));
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| fail(format!("cannot make it private (mode 0700): {e}")))?;
                pp_runtime::warn!(
                    "the cache directory {} had mode {mode:03o}, open to other users; made it \
                     private (0700). Programs found in it are checked (SHA-256, owner, mode) \
                     before they run",
                    dir.display()
                );
            }
        }
        let cache = Arc::new(ProgramCache {
            dir: dir.to_owned(),
            max_bytes,
            user,
            state: Mutex::new(CacheState::default()),
            next_upload: AtomicU64::new(0),
        });
        cache.remove_stale_uploads();
        Ok(cache)
    }

    /// The cache directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path_of(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(hex(hash))
    }

    /// The cached program with this hash, checked, leased and touched, if present and
    /// trustworthy. A file that fails its check is purged (and this is a miss). Runs on a
    /// blocking thread: the first use since the node started reads the whole file.
    pub(crate) async fn lookup(self: &Arc<Self>, hash: &[u8; 32]) -> Option<ProgramLease> {
        let cache = Arc::clone(self);
        let hash = *hash;
        tokio::task::spawn_blocking(move || cache.lookup_blocking(&hash))
            .await
            .unwrap_or_else(|error| {
                pp_runtime::warn!(%error, "the cache lookup failed");
                None
            })
    }

    fn lookup_blocking(self: &Arc<Self>, hash: &[u8; 32]) -> Option<ProgramLease> {
        let path = self.path_of(hash);
        let cached = match check::open_checked(&path, self.user) {
            Ok(Some(cached)) => cached,
            Ok(None) => return None,
            Err(rejected) => {
                self.purge(hash, &path, rejected);
                return None;
            }
        };
        let known = self.lock().verified.get(hash) == Some(&cached.identity);
        if !known {
            // Outside the lock: hashing a large program takes a while.
            if let Err(rejected) = check::check_hash(&cached, hash) {
                self.purge(hash, &path, rejected);
                return None;
            }
            pp_runtime::info!(
                "program {} in the cache verified (SHA-256, owner, mode) on its first use \
                 since the node started",
                hex(hash)
            );
        }
        let mut state = self.lock();
        if !still_in_place(&path, &cached) {
            // Written, replaced or evicted meanwhile: a miss; the upload takes its place.
            pp_runtime::debug!(path = %path.display(), "a cached program changed as it was checked");
            return None;
        }
        // Opened read-only: a running executable cannot be opened for writing.
        if let Err(error) = cached.file.set_modified(SystemTime::now()) {
            pp_runtime::debug!(path = %path.display(), %error, "cannot touch a cached program");
        }
        match cached.file.metadata() {
            Ok(meta) => {
                state.verified.insert(*hash, FileIdentity::of(&meta));
            }
            Err(_) => {
                state.verified.remove(hash);
            }
        }
        *state.in_use.entry(*hash).or_default() += 1;
        Some(ProgramLease {
            cache: Arc::clone(self),
            hash: *hash,
            path,
        })
    }

    /// Removes a cached file that failed its check, with a warning.
    fn purge(&self, hash: &[u8; 32], path: &Path, rejected: Rejected) {
        let mut state = self.lock();
        state.verified.remove(hash);
        let name = hex(hash);
        match check::remove_entry(path, rejected.found) {
            Ok(()) => pp_runtime::warn!(
                "purged {name} from the program cache: {}; the client uploads the program \
                 instead",
                rejected.reason
            ),
            Err(error) => pp_runtime::warn!(
                "cannot purge {name} from the program cache ({}): {error}; it is not run, \
                 and an upload of it fails until it is removed",
                rejected.reason
            ),
        }
    }

    /// Starts receiving a program of `size` bytes that must hash to `hash`: reserves
    /// `size` against the cache's bound (evicting unused programs if needed), then creates
    /// the temporary file.
    ///
    /// # Errors
    /// [`UploadRefused`] when the program cannot fit, or the temporary file cannot be
    /// created.
    pub(crate) fn begin_upload(
        self: &Arc<Self>,
        hash: [u8; 32],
        size: u64,
    ) -> Result<Upload, UploadRefused> {
        let reservation = self.reserve(size)?;
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
        let file = options.open(&temp).map_err(UploadRefused::Store)?;
        Ok(Upload {
            cache: Arc::clone(self),
            reservation,
            file: Some(tokio::fs::File::from_std(file)),
            temp,
            hasher: Sha256::new(),
            hash,
            size,
            received: 0,
            done: false,
        })
    }

    /// Reserves `size` bytes, evicting least recently used programs not in use when that
    /// makes room, and nothing when even that would not.
    fn reserve(self: &Arc<Self>, size: u64) -> Result<Reservation, UploadRefused> {
        if size > self.max_bytes {
            return Err(UploadRefused::LargerThanCache {
                size,
                max: self.max_bytes,
            });
        }
        let mut state = self.lock();
        let programs = self.programs();
        let on_disk: u64 = programs.iter().map(|p| p.size).sum();
        let kept: u64 = programs
            .iter()
            .filter(|p| state.in_use.contains_key(&p.hash))
            .map(|p| p.size)
            .sum();
        let free = self.max_bytes.saturating_sub(kept + state.reserved);
        if size > free {
            return Err(UploadRefused::CacheFull {
                size,
                free,
                max: self.max_bytes,
                kept,
                reserved: state.reserved,
            });
        }
        let budget = self.max_bytes - state.reserved - size;
        if on_disk > budget {
            self.evict_locked(&mut state, programs, budget);
        }
        Ok(Reservation::new(Arc::clone(self), &mut state, size))
    }

    /// Removes least recently used programs not in use until the cache, with the uploads
    /// in progress, fits its bound.
    fn evict(&self) {
        let mut state = self.lock();
        let budget = self.max_bytes.saturating_sub(state.reserved);
        let programs = self.programs();
        self.evict_locked(&mut state, programs, budget);
    }

    /// Removes programs of `programs` (oldest first) not in use until they hold at most
    /// `budget` bytes, or none is left to remove.
    fn evict_locked(&self, state: &mut CacheState, programs: Vec<CachedProgram>, budget: u64) {
        let mut total: u64 = programs.iter().map(|p| p.size).sum();
        for program in programs {
            if total <= budget {
                break;
            }
            if state.in_use.contains_key(&program.hash) {
                continue;
            }
            match fs::remove_file(&program.path) {
                Ok(()) => {
                    total -= program.size;
                    state.verified.remove(&program.hash);
                    pp_runtime::info!(
                        program = %hex(&program.hash),
                        size = program.size,
                        "evicted from the program cache"
                    );
                }
                Err(error) => {
                    pp_runtime::warn!(path = %program.path.display(), %error, "cannot evict")
                }
            }
        }
    }

    /// The programs in the directory (files named by a SHA-256), least recently used first.
    fn programs(&self) -> Vec<CachedProgram> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut programs = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(parse_hex) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            programs.push(CachedProgram {
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                size: meta.len(),
                hash,
                path: entry.path(),
            });
        }
        programs.sort_by_key(|p| p.used);
        programs
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

/// Whether `path` still names the file `cached` was opened as, unchanged since its check.
fn still_in_place(path: &Path, cached: &CachedFile) -> bool {
    let now_open = cached.file.metadata().map(|m| FileIdentity::of(&m));
    let now_named = fs::symlink_metadata(path).map(|m| FileIdentity::of(&m));
    matches!((now_open, now_named), (Ok(open), Ok(named)) if open == cached.identity && named == open)
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

    /// Uploads `program` completely and returns its lease.
    async fn upload_all(cache: &Arc<ProgramCache>, program: &[u8]) -> ProgramLease {
        let mut upload = cache
            .begin_upload(sha(program), program.len() as u64)
            .unwrap();
        upload.write(0, program).await.unwrap();
        upload.finish().await.unwrap()
    }

    #[tokio::test]
    async fn upload_is_verified_then_cached_and_evicted_when_unused() {
        let dir = temp_dir("upload");
        let cache = ProgramCache::open(&dir, 10).unwrap();
        let program = b"0123456789".to_vec();
        let hash = sha(&program);
        assert!(cache.lookup(&hash).await.is_none());

        // A wrong offset and a wrong hash are refused, and leave no file behind.
        let mut upload = cache.begin_upload(hash, 10).unwrap();
        assert!(upload.write(1, b"1").await.is_err());
        drop(upload);
        let mut upload = cache.begin_upload(sha(b"other"), 10).unwrap();
        upload.write(0, &program).await.unwrap();
        assert!(upload.finish().await.unwrap_err().contains("SHA-256"));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(
            cache.lock().reserved,
            0,
            "failed uploads give their room back"
        );

        let mut upload = cache.begin_upload(hash, 10).unwrap();
        upload.write(0, &program[..4]).await.unwrap();
        upload.write(4, &program[4..]).await.unwrap();
        let lease = upload.finish().await.unwrap();
        assert_eq!(fs::read(lease.path()).unwrap(), program);
        drop(lease);
        let lease = cache.lookup(&hash).await.expect("cached");

        // A second program does not fit while the first is in use...
        let other = b"abcdefghij".to_vec();
        let refused = cache.begin_upload(sha(&other), 10).unwrap_err();
        assert!(
            matches!(refused, UploadRefused::CacheFull { kept: 10, .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("--max-cache"), "{refused}");
        // ...and evicts it once it is not.
        drop(lease);
        let other_lease = upload_all(&cache, &other).await;
        assert!(
            cache.lookup(&hash).await.is_none(),
            "least recently used evicted"
        );
        drop(other_lease);
        assert!(cache.lookup(&sha(&other)).await.is_some());

        // Larger than the whole cache: refused, and nothing is evicted for it.
        let refused = cache.begin_upload([1; 32], 11).unwrap_err();
        assert!(
            matches!(refused, UploadRefused::LargerThanCache { .. }),
            "{refused}"
        );
        assert!(cache.lookup(&sha(&other)).await.is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn reservations_count_until_the_upload_ends() {
        let dir = temp_dir("reserve");
        let cache = ProgramCache::open(&dir, 10).unwrap();
        let first = cache.begin_upload([1; 32], 6).unwrap();
        assert!(matches!(
            cache.begin_upload([2; 32], 6),
            Err(UploadRefused::CacheFull { reserved: 6, .. })
        ));
        let second = cache.begin_upload([2; 32], 4).unwrap();
        drop(first);
        assert_eq!(cache.lock().reserved, 4);
        drop(second);
        assert_eq!(cache.lock().reserved, 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_planted_or_altered_program_is_purged_not_served() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("planted");
        let cache = ProgramCache::open(&dir, 1 << 20).unwrap();
        let program = b"the genuine program".to_vec();
        let hash = sha(&program);
        let path = cache.path_of(&hash);

        // Another content under the program's name.
        fs::write(&path, b"an impostor").unwrap();
        assert!(cache.lookup(&hash).await.is_none());
        assert!(!path.exists(), "purged");

        // The genuine content, writable by others.
        fs::write(&path, &program).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o722)).unwrap();
        assert!(cache.lookup(&hash).await.is_none());
        assert!(!path.exists(), "purged");

        // A directory under the name: not a program, and removed when empty.
        fs::create_dir(&path).unwrap();
        assert!(cache.lookup(&hash).await.is_none());
        assert!(!path.exists(), "purged");

        // The genuine content, private: served, and remembered as checked.
        fs::write(&path, &program).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        drop(
            cache
                .lookup(&hash)
                .await
                .expect("a genuine program is served"),
        );
        assert!(cache.lock().verified.contains_key(&hash));
        drop(cache.lookup(&hash).await.expect("still served"));

        // Altered in place after its check (same size): checked again, and purged.
        fs::write(&path, b"the altered program").unwrap();
        assert!(cache.lookup(&hash).await.is_none());
        assert!(!path.exists(), "purged");
        fs::remove_dir_all(&dir).unwrap();
    }
}
