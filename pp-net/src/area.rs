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

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Arguments above this size go through the area when the worker has one.
pub(crate) const SHARED_ABOVE: usize = 1 << 20;

/// How long an unused area keeps its pages for the next large job.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(2);

/// The area grows in steps of this size, so that jobs of slightly different sizes do not
/// remap it each time.
const GROWTH: usize = 1 << 20;

/// One shared argument area: a memory file and the node's writable mapping of it.
#[derive(Debug)]
pub(crate) struct SharedArea {
    file: File,
    /// The node's writable mapping of the whole file (none while the file is empty).
    #[cfg(unix)]
    map: Option<memmap2::MmapMut>,
    /// When a job's arguments were last written, while the area holds pages.
    used: Option<Instant>,
}

impl SharedArea {
    /// A new, empty area, and the read-only descriptor to hand to the worker (it must be
    /// inherited by the worker and nothing else: it is close-on-exec).
    ///
    /// # Errors
    /// The system has no memory files, or refuses one.
    #[cfg(target_os = "linux")]
    pub(crate) fn create() -> std::io::Result<(Self, OwnedFd)> {
        use std::os::fd::AsRawFd;
        let area = Self::memfd(c"pp-worker-args")?;
        // The worker's own descriptor is opened read-only, so it cannot map the area
        // writable: the node's bytes are the node's.
        let worker = File::open(format!("/proc/self/fd/{}", area.file.as_raw_fd()))?;
        Ok((area, worker.into()))
    }

    /// A new, empty memory file (close-on-exec) named `name`.
    #[cfg(target_os = "linux")]
    fn memfd(name: &std::ffi::CStr) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create takes a NUL-terminated name and flags; the descriptor it
        // returns is checked, then owned by one `File`.
        let file = unsafe {
            let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            File::from_raw_fd(fd)
        };
        Ok(SharedArea {
            file,
            map: None,
            used: None,
        })
    }

    /// No memory files here: the caller goes on without an area.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create() -> std::io::Result<(Self, OwnedFd)> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "shared argument areas need Linux memory files",
        ))
    }

    /// Writes `bytes` at the start of the area, growing it if needed.
    ///
    /// # Errors
    /// The area cannot grow (out of memory or address space); it is then as before.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reserve(bytes.len())?;
        self.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    /// Makes the area at least `len` bytes long (its old bytes kept) and counts it as used
    /// now.
    ///
    /// # Errors
    /// The area cannot grow (out of memory or address space); it is then as before.
    pub(crate) fn reserve(&mut self, len: usize) -> std::io::Result<()> {
        if len > self.len() {
            self.grow(len)?;
        }
        self.used = Some(Instant::now());
        Ok(())
    }

    /// Bytes mapped now.
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// The whole area as mapped (zeros where nothing was written).
    pub(crate) fn as_slice(&self) -> &[u8] {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            return map;
        }
        &[]
    }

    /// The whole area, writable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        #[cfg(unix)]
        if let Some(map) = &mut self.map {
            return map;
        }
        &mut []
    }

    /// Gives the area's pages back if it has not been used for [`KEEP_FOR`]. Only while
    /// no worker reads a job from the area: their mappings then have nothing to read.
    pub(crate) fn release_if_unused(&mut self) {
        if self.used.is_some_and(|used| used.elapsed() > KEEP_FOR) {
            self.release();
        }
    }

    /// Gives the area's pages back now (same condition as `release_if_unused`).
    pub(crate) fn release(&mut self) {
        self.unmap();
        self.used = None;
        if let Err(error) = self.file.set_len(0) {
            tracing::debug!(%error, "cannot empty a shared argument area");
        }
    }

    fn grow(&mut self, needed: usize) -> std::io::Result<()> {
        let len = needed
            .checked_next_multiple_of(GROWTH)
            .ok_or_else(|| std::io::Error::other("the arguments are larger than memory"))?;
        // The file grows first and the old mapping goes only once the new one exists, so
        // that a failure leaves the area as it was (a longer file is harmless).
        self.file.set_len(len as u64)?;
        #[cfg(unix)]
        {
            // SAFETY: the file is this node's memory file, which nothing else shrinks while
            // mapped (`release` unmaps before emptying it); workers map it read-only.
            let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&self.file)? };
            self.map = Some(map);
            Ok(())
        }
        #[cfg(not(unix))]
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }

    fn unmap(&mut self) {
        #[cfg(unix)]
        {
            self.map = None;
        }
    }
}

/// A session's area is a reader's plaintext buffer for large messages: it is made long
/// enough for the whole frame before the frame is opened (`SecureReader::prepare_buffers`),
/// and grows here only if that failed.
impl crate::channel::PlainOut for SharedArea {
    fn reserve_message(&mut self, _room: usize) {}

    fn writable(&mut self, end: usize) -> Result<&mut [u8], &'static str> {
        if end > self.len() && self.reserve(end).is_err() {
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
        let SharedArea { file, .. } = SharedArea::memfd(c"pp-lane-count")?;
        let len = std::mem::size_of::<u64>();
        file.set_len(len as u64)?;
        let map = memmap2::MmapOptions::new().len(len).map_raw(&file)?;
        Ok((SharedCounter { map }, file.into()))
    }

    /// No memory files here: no counter.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create() -> std::io::Result<(Self, OwnedFd)> {
        SharedArea::create().map(|(_, fd)| (SharedCounter {}, fd))
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

    fn contents(worker: &OwnedFd) -> Vec<u8> {
        let mut file = File::from(worker.try_clone().unwrap());
        let mut bytes = Vec::new();
        std::io::Seek::rewind(&mut file).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_worker_sees_what_the_node_wrote_and_cannot_write_it() {
        let (mut area, worker) = SharedArea::create().unwrap();
        let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i % 251) as u8).collect();
        area.write(&big).unwrap();
        let seen = contents(&worker);
        assert_eq!(seen.len(), 4 << 20, "grown in whole steps");
        assert_eq!(&seen[..big.len()], &big[..]);
        // A smaller job later overwrites the start only.
        area.write(&[7; 10]).unwrap();
        assert_eq!(
            &contents(&worker)[..11],
            &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 10]
        );

        let mut file = File::from(worker);
        assert!(
            std::io::Write::write_all(&mut file, b"x").is_err(),
            "the worker's descriptor is read-only"
        );
    }

    #[test]
    fn an_unused_area_gives_its_pages_back() {
        let (mut area, worker) = SharedArea::create().unwrap();
        area.write(&[1; 100]).unwrap();
        area.release_if_unused();
        assert_eq!(contents(&worker).len(), GROWTH, "just used: kept");
        area.used = Some(Instant::now() - KEEP_FOR - Duration::from_millis(1));
        area.release_if_unused();
        assert!(contents(&worker).is_empty());
        // And it serves again afterwards.
        area.write(&[2; 3]).unwrap();
        assert_eq!(&contents(&worker)[..3], &[2, 2, 2]);
    }
}
