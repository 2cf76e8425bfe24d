//! A worker's view of its shared argument area: a memory file the node writes a large
//! job's arguments into, so that they reach the worker without crossing the pipe.
//!
//! The node opens each area read-only for the worker and names the descriptor in
//! [`SHARED_ARGS_ENV`](super::SHARED_ARGS_ENV) (the worker's own area, which holds one
//! job's arguments at a time) or [`SESSION_ARGS_ENV`](super::SESSION_ARGS_ENV) (the area
//! the node decrypts large messages into). Either way the node never touches the bytes of
//! a job before the worker's reply: so the bytes a [`SharedJob`](super::SharedJob) points
//! at stay put while the worker decodes them. The worker maps the file as far as a job needs
//! and maps it again, further, only when a later job lies beyond.

use std::fs::File;
use std::os::fd::FromRawFd;

/// The worker's mapping of the node's argument area.
#[derive(Debug)]
pub(crate) struct AreaView {
    file: File,
    /// The current read-only mapping; none before the first job or while the area is empty.
    map: Option<memmap2::Mmap>,
}

impl AreaView {
    /// The area named by the environment variable `var`, which is removed; its descriptor is
    /// made close-on-exec, so that programs a job starts do not inherit it. `None` when
    /// the node gave none or the descriptor is not open.
    ///
    /// Called before `main`, while the process has one thread (it changes the environment).
    pub(crate) fn from_env(var: &str) -> Option<Self> {
        let value = std::env::var(var).ok()?;
        std::env::remove_var(var);
        let fd: i32 = value.trim().parse().ok().filter(|&fd| fd > 2)?;
        // SAFETY: fcntl on a descriptor number only queries or sets its flags; a number
        // that is not open gives -1 and is not used.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: the descriptor is open (above) and the node handed it to this process
        // alone; from here on this `File` owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        Some(AreaView::new(file))
    }

    /// The area behind `file`.
    pub(crate) fn new(file: File) -> Self {
        AreaView { file, map: None }
    }

    /// The `len` bytes at `offset` in the area.
    ///
    /// # Errors
    /// The range lies outside the area, or it cannot be mapped.
    pub(crate) fn bytes(&mut self, offset: u64, len: u64) -> Result<&[u8], String> {
        let end = offset
            .checked_add(len)
            .ok_or("the argument range overflows")?;
        if end > self.mapped().len() as u64 {
            self.map_to(end)?;
            if end > self.mapped().len() as u64 {
                return Err(format!(
                    "the arguments lie at {offset}..{end}, beyond the {} bytes of the shared \
                     argument area",
                    self.mapped().len()
                ));
            }
        }
        // Within the mapping (checked above), so within `usize`.
        Ok(&self.mapped()[offset as usize..end as usize])
    }

    /// The bytes mapped now.
    fn mapped(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Maps the area up to `end` (rounded up to whole MiB, at most the file's size), in
    /// place of the previous mapping. Not the whole file: its size is the node's capacity
    /// (up to the largest message), which could exceed a worker's address-space limit.
    fn map_to(&mut self, end: u64) -> Result<(), String> {
        let size = self
            .file
            .metadata()
            .map_err(|e| format!("cannot read the size of the shared argument area: {e}"))?
            .len();
        let size = end.next_multiple_of(MAP_STEP).min(size);
        let size = usize::try_from(size)
            .map_err(|_| "the shared argument area is larger than memory".to_owned())?;
        self.map = None;
        if size == 0 {
            return Ok(());
        }
        // SAFETY: a read-only shared mapping of the node's area, whose size is sealed (it
        // cannot shrink under the mapping). The node does not write a job's bytes while the
        // job is held (see the module docs).
        let map = unsafe { memmap2::MmapOptions::new().len(size).map(&self.file) }
            .map_err(|e| format!("cannot map the shared argument area ({size} bytes): {e}"))?;
        self.map = Some(map);
        Ok(())
    }
}

/// The worker's mapping grows in steps of this size.
const MAP_STEP: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str) -> (std::path::PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("pp-shared-args-{}-{name}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn ranges_are_read_where_the_node_wrote_them_and_a_grown_area_is_mapped_again() {
        let (path, mut writer) = temp_file("grow");
        writer.write_all(&[1, 2, 3, 4, 5]).unwrap();
        let mut area = AreaView::new(File::open(&path).unwrap());
        assert_eq!(area.bytes(1, 3).unwrap(), &[2, 3, 4]);
        assert_eq!(area.bytes(5, 0).unwrap(), &[] as &[u8]);

        // A later job lies beyond the first mapping: the area grew in between.
        writer.write_all(&[6, 7, 8]).unwrap();
        assert_eq!(area.bytes(4, 4).unwrap(), &[5, 6, 7, 8]);
        // Rewritten in place: the mapping shows the node's new bytes.
        use std::os::unix::fs::FileExt;
        writer.write_all_at(&[9, 9], 0).unwrap();
        assert_eq!(area.bytes(0, 3).unwrap(), &[9, 9, 3]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_range_outside_the_area_is_an_error_not_a_fault() {
        let (path, mut writer) = temp_file("outside");
        writer.write_all(&[0; 16]).unwrap();
        let mut area = AreaView::new(File::open(&path).unwrap());
        let error = area.bytes(10, 7).unwrap_err();
        assert!(error.contains("10..17"), "{error}");
        assert!(area.bytes(u64::MAX, 2).unwrap_err().contains("overflows"));
        let _ = std::fs::remove_file(path);
    }
}
