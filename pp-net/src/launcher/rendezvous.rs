//! The rendezvous directory: how the ranks of a run find each other with no MPI library and
//! no network yet, through a directory every rank sees (`PP_RENDEZVOUS_DIR`, else Slurm's
//! submit directory, else the current directory).
//!
//! Rank 0 builds `.pp-<launcher>-<run id>` complete under a temporary name, mode 0700, and
//! renames it into place, so another rank sees it whole or not at all. It holds:
//! - `secret` (0600): the run's generated secret, when the environment gives none;
//! - `alive`: rank 0's heartbeat, a counter it rewrites in place every second, and `done`
//!   when it ends (written in place rather than renamed: NFS clients see a file's new
//!   content at their next open, but may see a renamed one late);
//! - `rank-N`: where rank N's node listens (`host:port`), written by rank N under a
//!   temporary name and renamed.
//!
//! The other ranks trust the directory only if it is theirs (same user) and private (no
//! access for group or others): whoever could make it could choose the secret, and then
//! run code in the ranks' nodes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::detect::Launch;
use super::error::LauncherError;

/// The variable naming the directory in which the run's rendezvous directory is made.
pub const RENDEZVOUS_DIR_ENV: &str = "PP_RENDEZVOUS_DIR";

/// How often a waiting rank looks at the directory again.
const POLL: Duration = Duration::from_millis(50);

/// What `alive` says once rank 0 has ended.
const DONE: &str = "done";

/// What rank 0's heartbeat file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Heartbeat {
    /// Rank 0 runs; the value changes every second.
    Beat(String),
    /// Rank 0 ended and said so.
    Done,
    /// The directory or the file is gone (rank 0 removed it as it ended).
    Gone,
}

/// One run's rendezvous directory.
#[derive(Debug, Clone)]
pub(super) struct Rendezvous {
    dir: PathBuf,
}

impl Rendezvous {
    /// The directory of the run `launch`, in `base` (else `PP_RENDEZVOUS_DIR`, Slurm's submit
    /// directory, or the current directory).
    ///
    /// # Errors
    /// When no base is set and the current directory is unknown.
    pub(super) fn for_run(launch: &Launch, base: Option<PathBuf>) -> Result<Self, LauncherError> {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let base = match base
            .or_else(|| non_empty(RENDEZVOUS_DIR_ENV).map(PathBuf::from))
            .or_else(|| non_empty("SLURM_SUBMIT_DIR").map(PathBuf::from))
        {
            Some(base) => base,
            None => std::env::current_dir()
                .map_err(|e| LauncherError::io(".", "cannot find the current directory", e))?,
        };
        let name = format!(".pp-{}-{}", launch.kind.name(), launch.run_id);
        Ok(Rendezvous {
            dir: base.join(name),
        })
    }

    /// The directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Rank 0: makes the directory, with `secret` if given and a first heartbeat, under a
    /// temporary name, then renames it into place. A directory left by an earlier run of
    /// the same id is removed first if it is this user's.
    ///
    /// # Errors
    /// When the directory cannot be made, or one of another user is in the way.
    pub(super) fn create(&self, secret: Option<&[u8]>) -> Result<(), LauncherError> {
        if fs::symlink_metadata(&self.dir).is_ok() {
            check_private(&self.dir)?;
            fs::remove_dir_all(&self.dir)
                .map_err(|e| LauncherError::io(&self.dir, "cannot remove a stale one", e))?;
        }
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let temp = self
            .dir
            .with_file_name(format!("{name}.tmp-{}", std::process::id()));
        let made = (|| {
            make_private_dir(&temp)?;
            if let Some(secret) = secret {
                write_new(&temp.join("secret"), secret)?;
            }
            write_new(&temp.join("alive"), b"0\n")?;
            fs::rename(&temp, &self.dir)
        })();
        made.map_err(|e| {
            let _ = fs::remove_dir_all(&temp);
            LauncherError::io(&self.dir, "cannot create it", e)
        })
    }

    /// Ranks 1 and up: waits until rank 0 made the directory, at most `limit`, and checks
    /// that it is this user's and private.
    ///
    /// # Errors
    /// [`LauncherError::NoRendezvous`] after `limit`; [`LauncherError::Untrusted`].
    pub(super) fn wait_created(&self, limit: Duration) -> Result<(), LauncherError> {
        let start = Instant::now();
        while fs::symlink_metadata(&self.dir).is_err() {
            if start.elapsed() >= limit {
                return Err(LauncherError::NoRendezvous {
                    path: self.dir.clone(),
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(POLL);
        }
        check_private(&self.dir)
    }

    /// The run's generated secret, if rank 0 wrote one.
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub(super) fn read_secret(&self) -> Result<Option<Vec<u8>>, LauncherError> {
        let path = self.file("secret");
        match fs::read(&path) {
            Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LauncherError::io(path, "cannot read the secret", e)),
        }
    }

    /// Rank `rank` says where its node listens.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(super) fn publish(&self, rank: u32, addr: &str) -> Result<(), LauncherError> {
        let path = self.file(&format!("rank-{rank}"));
        let temp = self.file(&format!(".rank-{rank}.tmp"));
        write_new(&temp, format!("{addr}\n").as_bytes())
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(|e| LauncherError::io(path, "cannot say where this rank listens", e))
    }

    /// Rank 0: waits until every rank from 1 to `size - 1` said where it listens, at most
    /// `limit`. Returns the ranks that did, with their addresses, and those that did not.
    pub(super) fn collect(&self, size: u32, limit: Duration) -> (Vec<(u32, String)>, Vec<u32>) {
        let start = Instant::now();
        let mut found: Vec<Option<String>> = vec![None; size as usize];
        loop {
            for rank in 1..size {
                let slot = &mut found[rank as usize];
                if slot.is_none() {
                    *slot = self.rank_address(rank);
                }
            }
            let missing: Vec<u32> = (1..size).filter(|&r| found[r as usize].is_none()).collect();
            if missing.is_empty() || start.elapsed() >= limit {
                let came = found
                    .into_iter()
                    .enumerate()
                    .filter_map(|(rank, addr)| Some((rank as u32, addr?)))
                    .collect();
                return (came, missing);
            }
            std::thread::sleep(POLL);
        }
    }

    /// What `rank-N` says, if it is there and looks like `host:port`.
    fn rank_address(&self, rank: u32) -> Option<String> {
        let text = fs::read_to_string(self.file(&format!("rank-{rank}"))).ok()?;
        let addr = text.trim();
        let (host, port) = addr.rsplit_once(':')?;
        (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| addr.to_owned())
    }

    /// Rank 0's heartbeat number `n`, or [`Heartbeat::Done`] as it ends; in place.
    pub(super) fn beat(&self, beat: &Heartbeat) {
        let text = match beat {
            Heartbeat::Beat(n) => format!("{n}\n"),
            Heartbeat::Done => format!("{DONE}\n"),
            Heartbeat::Gone => return,
        };
        // Never creates the file: once the directory is gone, a late beat does nothing.
        if let Ok(mut file) = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.file("alive"))
        {
            let _ = file.write_all(text.as_bytes());
        }
    }

    /// What rank 0's heartbeat says now.
    pub(super) fn heartbeat(&self) -> Heartbeat {
        match fs::read_to_string(self.file("alive")) {
            Ok(text) if text.trim() == DONE => Heartbeat::Done,
            Ok(text) => Heartbeat::Beat(text),
            // Gone, or a stale NFS handle: the directory was removed.
            Err(_) => Heartbeat::Gone,
        }
    }

    /// Removes the directory (rank 0, at its end; or another rank once rank 0 is gone).
    pub(super) fn remove(&self) {
        // A heartbeat written meanwhile can make the first attempt fail.
        for _ in 0..3 {
            match fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => continue,
                _ => return,
            }
        }
    }
}

/// Creates `dir` with mode 0700.
pub(super) fn make_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new file (mode 0600), failing if it exists.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Checks that `dir` is a directory (not a link) of this user, closed to everyone else.
fn check_private(dir: &Path) -> Result<(), LauncherError> {
    let meta =
        fs::symlink_metadata(dir).map_err(|e| LauncherError::io(dir, "cannot look at it", e))?;
    let untrusted = |reason: String| LauncherError::Untrusted {
        path: dir.to_owned(),
        reason,
    };
    if !meta.is_dir() {
        return Err(untrusted("it is not a directory".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::node::sys::user_id();
        if meta.uid() != me {
            return Err(untrusted(format!(
                "it belongs to user {}, not to this user ({me})",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(untrusted(format!(
                "its mode {mode:03o} lets others in (it must be 0700)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::detect::{Kind, Launch};
    use super::*;

    fn temp_base(name: &str) -> PathBuf {
        let base =
            std::env::temp_dir().join(format!("pp-rendezvous-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        base
    }

    fn launch() -> Launch {
        Launch {
            kind: Kind::Slurm,
            rank: 0,
            size: 3,
            hosts: None,
            run_id: "7-0".into(),
        }
    }

    #[test]
    fn ranks_meet_through_the_directory() {
        let base = temp_base("meet");
        let rv = Rendezvous::for_run(&launch(), Some(base.clone())).unwrap();
        assert_eq!(rv.dir(), base.join(".pp-slurm-7-0"));
        rv.create(Some(b"s3cret")).unwrap();
        rv.wait_created(Duration::from_secs(1)).unwrap();
        assert_eq!(rv.read_secret().unwrap().as_deref(), Some(&b"s3cret"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
            assert_eq!(mode(rv.dir()), 0o700);
            assert_eq!(mode(&rv.dir().join("secret")), 0o600);
        }
        rv.publish(2, "127.0.0.1:4000").unwrap();
        let (came, missing) = rv.collect(3, Duration::from_millis(100));
        assert_eq!(came, vec![(2, "127.0.0.1:4000".to_owned())]);
        assert_eq!(missing, vec![1]);
        rv.publish(1, "127.0.0.1:4001").unwrap();
        assert_eq!(rv.collect(3, Duration::from_secs(5)).1, Vec::<u32>::new());

        assert_eq!(rv.heartbeat(), Heartbeat::Beat("0\n".into()));
        rv.beat(&Heartbeat::Beat("1".into()));
        assert_eq!(rv.heartbeat(), Heartbeat::Beat("1\n".into()));
        rv.beat(&Heartbeat::Done);
        assert_eq!(rv.heartbeat(), Heartbeat::Done);
        rv.remove();
        assert_eq!(rv.heartbeat(), Heartbeat::Gone);
        rv.beat(&Heartbeat::Beat("2".into()));
        assert!(!rv.dir().exists(), "a late beat makes nothing");
        let _ = fs::remove_dir_all(base);
    }

    #[test]
    fn a_stale_directory_is_replaced_and_an_open_one_refused() {
        let base = temp_base("stale");
        let rv = Rendezvous::for_run(&launch(), Some(base.clone())).unwrap();
        rv.create(Some(b"old")).unwrap();
        rv.publish(1, "h:1").unwrap();
        rv.create(None).unwrap();
        assert_eq!(rv.read_secret().unwrap(), None);
        assert_eq!(rv.collect(2, Duration::ZERO).1, vec![1]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(rv.dir(), fs::Permissions::from_mode(0o755)).unwrap();
            let error = rv.wait_created(Duration::ZERO).unwrap_err();
            assert!(matches!(error, LauncherError::Untrusted { .. }), "{error}");
        }
        let _ = fs::remove_dir_all(base);
    }

    #[test]
    fn waiting_for_rank_0_is_bounded() {
        let base = temp_base("absent");
        let rv = Rendezvous::for_run(&launch(), Some(base.clone())).unwrap();
        let start = Instant::now();
        let error = rv.wait_created(Duration::from_millis(120)).unwrap_err();
        assert!(
            matches!(error, LauncherError::NoRendezvous { .. }),
            "{error}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        let _ = fs::remove_dir_all(base);
    }
}
