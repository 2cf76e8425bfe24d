//! Shared argument areas, on the node's side: memory files (Linux `memfd`) the node writes
//! and its workers map read-only, so that large arguments do not cross the worker's pipe
//! (which the kernel serialises: a write and a read, one after the other).
//!
//! Two kinds, one type: each worker has an area of its own, which holds one job's
//! arguments at a time (the worker loop copies a job there only while the worker holds no other
//! job from it, and the bytes stay put until its reply; once unused for [`KEEP_FOR`], its
//! pages are given back at the next job written to that worker); and each session has one
//! its reader decrypts large messages into, so that their arguments are in shared memory
//! from the start (see `SecureReader::set_plaintext_area`). Elsewhere than Linux there are
//! none, and every job goes through the pipe.
//!
//! A worker runs the client's code, so it must not be able to hurt the node through an
//! area. Each area's file has its final size from the start (its capacity: the largest
//! job or message it may hold; pages are only used where written) and is sealed against
//! shrinking and growing, and against further seals, before the worker gets it: a worker
//! that truncated the file would make the node's next write to its mapping die of SIGBUS.
//! The file's mode is then read-only for its owner, so a worker that does not run as root
//! cannot reopen its read-only descriptor for writing (through `/proc/self/fd`); one that
//! can reaches only the bytes of its own client's jobs. Unused pages are given back by
//! punching a hole, not by shrinking the file.

use std::fs::File;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A descriptor handed to a worker process (an area, a lane's count or its connection):
/// an open file descriptor on Unix.
#[cfg(unix)]
pub(crate) type OwnedFd = std::os::fd::OwnedFd;

/// Elsewhere (Windows) no descriptor is ever handed to a worker: areas, lane counts and
/// lanes need Unix, so this type has no value.
#[cfg(not(unix))]
#[derive(Debug)]
pub(crate) enum OwnedFd {}

/// A lane's connection as a descriptor its worker inherits.
///
/// # Errors
/// Elsewhere than Unix, where a connection cannot be handed to another process this way.
pub(crate) fn socket_descriptor(socket: std::net::TcpStream) -> std::io::Result<OwnedFd> {
    #[cfg(unix)]
    return Ok(OwnedFd::from(socket));
    #[cfg(not(unix))]
    {
        drop(socket);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "lanes need Unix (a connection handed to a worker as a file descriptor)",
        ))
    }
}

/// Arguments above this size go through the area when the worker has one.
pub(crate) const SHARED_ABOVE: usize = 1 << 20;

/// How long an unused area keeps its pages for the next large job.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(2);

/// An area's capacity is a whole number of these.
#[cfg(target_os = "linux")]
const GROWTH: usize = 1 << 20;

/// One shared argument area: a memory file and the node's writable mapping of it.
#[derive(Debug)]
pub(crate) struct SharedArea {
    // Elsewhere than Linux no area is ever made.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    file: File,
    /// The node's writable mapping of the whole file, made before the file was sealed.
    #[cfg(target_os = "linux")]
    map: memmap2::MmapMut,
    /// When a job's arguments were last written, while the area holds pages.
    used: Option<Instant>,
}

impl SharedArea {
    /// A new, empty area that holds up to `capacity` bytes (rounded up to whole MiB), and
    /// the read-only descriptor to hand to the worker (it must be inherited by the worker
    /// and nothing else: it is close-on-exec).
    ///
    /// # Errors
    /// The system has no memory files, refuses one, or cannot seal it.
    #[cfg(target_os = "linux")]
    pub(crate) fn create(capacity: usize) -> std::io::Result<(Self, OwnedFd)> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::PermissionsExt;
        let capacity = capacity
            .max(1)
            .checked_next_multiple_of(GROWTH)
            .ok_or_else(|| std::io::Error::other("the area's capacity is larger than memory"))?;
        let file = memfd(c"pp-worker-args")?;
        file.set_len(capacity as u64)?;
        // SAFETY: the file is this node's memory file; from the seal below on, nobody can
        // change its size, so the mapping stays backed.
        let map = unsafe { memmap2::MmapOptions::new().len(capacity).map_mut(&file)? };
        seal(&file)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o400))?;
        // The worker's own descriptor is opened read-only, so it cannot map the area
        // writable: the node's bytes are the node's.
        let worker = File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let area = SharedArea {
            file,
            map,
            used: None,
        };
        Ok((area, worker.into()))
    }

    /// No memory files here: the caller goes on without an area.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create(_capacity: usize) -> std::io::Result<(Self, OwnedFd)> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "shared argument areas need Linux memory files",
        ))
    }

    /// Writes `bytes` at the start of the area.
    ///
    /// # Errors
    /// The bytes are more than the area's capacity; it is then as before.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reserve(bytes.len())?;
        self.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    /// Checks that the area can hold `len` bytes and counts it as used now.
    ///
    /// # Errors
    /// `len` is more than the area's capacity.
    pub(crate) fn reserve(&mut self, len: usize) -> std::io::Result<()> {
        if len > self.as_slice().len() {
            return Err(std::io::Error::other(format!(
                "{len} bytes are more than the shared argument area's {} bytes",
                self.as_slice().len()
            )));
        }
        self.used = Some(Instant::now());
        Ok(())
    }

    /// The whole area (zeros where nothing was written).
    pub(crate) fn as_slice(&self) -> &[u8] {
        #[cfg(target_os = "linux")]
        return &self.map;
        #[cfg(not(target_os = "linux"))]
        &[]
    }

    /// The whole area, writable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        #[cfg(target_os = "linux")]
        return &mut self.map;
        #[cfg(not(target_os = "linux"))]
        &mut []
    }

    /// Gives the area's pages back if it has not been used for [`KEEP_FOR`]. Only while
    /// no worker reads a job from the area: their mappings then have nothing to read.
    pub(crate) fn release_if_unused(&mut self) {
        if self.used.is_some_and(|used| used.elapsed() > KEEP_FOR) {
            self.release();
        }
    }

    /// Gives the area's pages back now (same condition as `release_if_unused`): a hole
    /// punched over the whole file, whose size stays (it is sealed).
    pub(crate) fn release(&mut self) {
        self.used = None;
        #[cfg(target_os = "linux")]
        if let Err(error) = punch_hole(&self.file, self.map.len()) {
            pp_runtime::debug!(%error, "cannot give back the pages of a shared argument area");
        }
    }
}

/// A new, empty memory file named `name`: close-on-exec, sealable.
#[cfg(target_os = "linux")]
fn memfd(name: &std::ffi::CStr) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the descriptor it returns
    // is checked, then owned by one `File`.
    unsafe {
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// Seals `file` at its size: no shrinking, no growing, no further seals (by this process or
/// any that holds a descriptor of it).
#[cfg(target_os = "linux")]
fn seal(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor this process owns; the result is checked.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Frees the pages of the first `len` bytes of `file`, keeping its size.
#[cfg(target_os = "linux")]
fn punch_hole(file: &File, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let len = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: fallocate on a descriptor this process owns; the result is checked.
    if unsafe { libc::fallocate(file.as_raw_fd(), mode, 0, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A session's area is a reader's plaintext buffer for large messages: the reader checks
/// that it holds the whole frame before the frame is opened (`SecureReader::prepare_buffers`).
impl crate::channel::PlainOut for SharedArea {
    fn reserve_message(&mut self, _room: usize) {}

    fn writable(&mut self, end: usize) -> Result<&mut [u8], &'static str> {
        if end > self.as_slice().len() && self.reserve(end).is_err() {
            return Err("the shared argument area cannot hold the message");
        }
        Ok(self.as_mut_slice())
    }
}

/// The session's area is where its reader decrypts large messages while no job holds it.
impl crate::channel::PlaintextArea for SharedArea {
    fn reserve(&mut self, len: usize) -> std::io::Result<()> {
        SharedArea::reserve(self, len)
    }

    fn release(&mut self) {
        SharedArea::release(self);
    }

    fn as_slice(&self) -> &[u8] {
        SharedArea::as_slice(self)
    }
}

/// A count a lane worker keeps in memory the node can read: one `u64` at the start of a
/// memory file that both map writable. The worker adds to it as it answers jobs (no system
/// call, no wake-up of the node), and the count survives the worker's death.
#[derive(Debug)]
pub(crate) struct SharedCounter {
    /// The memory file's first 8 bytes, mapped shared and writable.
    #[cfg(target_os = "linux")]
    map: memmap2::MmapRaw,
}

impl SharedCounter {
    /// A new counter at 0, and the writable descriptor to hand to the worker (it must be
    /// inherited by the worker and nothing else: it is close-on-exec).
    ///
    /// # Errors
    /// The system has no memory files, or refuses one.
    #[cfg(target_os = "linux")]
    pub(crate) fn create() -> std::io::Result<(Self, OwnedFd)> {
        let file = memfd(c"pp-lane-count")?;
        let len = std::mem::size_of::<u64>();
        file.set_len(len as u64)?;
        let map = memmap2::MmapOptions::new().len(len).map_raw(&file)?;
        // The worker maps it writable too; sealed, it cannot shrink it under the node's
        // mapping.
        seal(&file)?;
        Ok((SharedCounter { map }, file.into()))
    }

    /// No memory files here: no counter.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create() -> std::io::Result<(Self, OwnedFd)> {
        SharedArea::create(0).map(|(_, fd)| (SharedCounter {}, fd))
    }

    /// The count now.
    #[cfg(target_os = "linux")]
    pub(crate) fn get(&self) -> u64 {
        // SAFETY: the mapping lives as long as `self`, is page-aligned and 8 bytes long;
        // the worker only changes it with atomic operations.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast::<u64>()) }.load(Ordering::Acquire)
    }

    /// No counter here (never created).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn get(&self) -> u64 {
        0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn contents(worker: &OwnedFd) -> Vec<u8> {
        let mut file = File::from(worker.try_clone().unwrap());
        let mut bytes = Vec::new();
        std::io::Seek::rewind(&mut file).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_worker_sees_what_the_node_wrote_and_cannot_write_it() {
        let (mut area, worker) = SharedArea::create((3 << 20) + 5).unwrap();
        let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i % 251) as u8).collect();
        area.write(&big).unwrap();
        let seen = contents(&worker);
        assert_eq!(seen.len(), 4 << 20, "the capacity, in whole MiB");
        assert_eq!(&seen[..big.len()], &big[..]);
        // A smaller job later overwrites the start only.
        area.write(&[7; 10]).unwrap();
        assert_eq!(
            &contents(&worker)[..11],
            &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 10]
        );
        assert!(
            area.write(&vec![0; (4 << 20) + 1]).is_err(),
            "above capacity"
        );

        let mut file = File::from(worker);
        assert!(
            std::io::Write::write_all(&mut file, b"x").is_err(),
            "the worker's descriptor is read-only"
        );
    }

    #[test]
    fn no_descriptor_can_change_the_size_of_an_area_or_its_seals() {
        let (_area, worker) = SharedArea::create(1).unwrap();
        // What a worker could try: its descriptor opened again for writing (which succeeds
        // only with the right to override the file's mode, as root has).
        let path = format!("/proc/self/fd/{}", worker.as_raw_fd());
        let file = File::options().write(true).open(&path);
        let file = file.unwrap_or_else(|_| File::from(worker.try_clone().unwrap()));
        assert!(file.set_len(0).is_err(), "shrinking is sealed");
        assert!(file.set_len(8 << 20).is_err(), "growing is sealed");
        // SAFETY: fcntl on an open descriptor; the result is checked.
        let unsealed = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, 0) };
        assert_ne!(unsealed, 0, "no further seals");
        assert_eq!(contents(&worker).len(), 1 << 20);
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o400, "read-only for its owner");
    }

    #[test]
    fn the_lane_count_cannot_be_shrunk() {
        let (counter, worker) = SharedCounter::create().unwrap();
        let file = File::from(worker);
        assert!(file.set_len(0).is_err());
        assert_eq!(counter.get(), 0);
    }

    #[test]
    fn an_unused_area_gives_its_pages_back() {
        let (mut area, worker) = SharedArea::create(1 << 20).unwrap();
        let blocks = |fd: &OwnedFd| {
            File::from(fd.try_clone().unwrap())
                .metadata()
                .unwrap()
                .blocks()
        };
        area.write(&[1; 100]).unwrap();
        area.release_if_unused();
        assert!(blocks(&worker) > 0, "just used: kept");
        area.used = Some(Instant::now() - KEEP_FOR - Duration::from_millis(1));
        area.release_if_unused();
        assert_eq!(blocks(&worker), 0, "pages given back");
        assert_eq!(contents(&worker).len(), GROWTH, "the size stays");
        // And it serves again afterwards.
        area.write(&[2; 3]).unwrap();
        assert_eq!(&contents(&worker)[..4], &[2, 2, 2, 0]);
    }
}
