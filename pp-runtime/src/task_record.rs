//! Each task's id and signature fingerprint as plain bytes in a section of its own
//! ([`TASK_SECTION_ELF`], [`TASK_SECTION_MACHO`], [`TASK_SECTION_PE`]), so that a client
//! can read the task list of a build of its program for another target from the file,
//! without running it, and refuse a build from other source before any node gets it.
//!
//! `#[pp::parallel]` emits one record per task, a `[u8; N]` static (alignment 1, so the
//! linker packs them back to back; zero bytes of padding are skipped when reading), which
//! the task's registry entry references so that the linker keeps it. A record is, with
//! every integer little-endian on every target:
//!
//! ```text
//! magic "ppT1" | id length: u16 | id: UTF-8 bytes | fingerprint: u64
//! ```

/// The section of task records in ELF files.
pub const TASK_SECTION_ELF: &str = ".pp_tasks";
/// The section of task records in Mach-O files (segment `__DATA`).
pub const TASK_SECTION_MACHO: &str = "__pp_tasks";
/// The section of task records in PE files (8 characters at most).
pub const TASK_SECTION_PE: &str = ".pptasks";

/// The first bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"ppT1";

/// Bytes of the record of a task with this id.
pub const fn task_record_len(id: &str) -> usize {
    RECORD_MAGIC.len() + 2 + id.len() + 8
}

/// The record of task `id` with `fingerprint`; `N` must be [`task_record_len`]`(id)`
/// (generated code only: a wrong `N` or an id over 65535 bytes fails to compile).
pub const fn task_record<const N: usize>(id: &str, fingerprint: u64) -> [u8; N] {
    assert!(N == task_record_len(id), "wrong task record length");
    assert!(id.len() <= u16::MAX as usize, "task id too long");
    let mut out = [0u8; N];
    let mut at = 0;
    while at < RECORD_MAGIC.len() {
        out[at] = RECORD_MAGIC[at];
        at += 1;
    }
    let len = (id.len() as u16).to_le_bytes();
    out[at] = len[0];
    out[at + 1] = len[1];
    at += 2;
    let bytes = id.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at += bytes.len();
    let fp = fingerprint.to_le_bytes();
    let mut i = 0;
    while i < fp.len() {
        out[at + i] = fp[i];
        i += 1;
    }
    out
}

/// Why a section of task records cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed task record at byte {offset} of the task section: {what}")]
pub struct RecordError {
    /// Where in the section.
    pub offset: usize,
    /// What is wrong there.
    pub what: &'static str,
}

/// The `(id, fingerprint)` pairs of a section of task records, in section order.
///
/// # Errors
/// [`RecordError`] when bytes other than zero padding are not a whole record.
pub fn parse_task_records(section: &[u8]) -> Result<Vec<(String, u64)>, RecordError> {
    let mut tasks = Vec::new();
    let mut at = 0;
    while at < section.len() {
        if section[at] == 0 {
            at += 1;
            continue;
        }
        let fail = |what| RecordError { offset: at, what };
        let rest = &section[at..];
        if rest.len() < RECORD_MAGIC.len() + 2 || rest[..4] != RECORD_MAGIC {
            return Err(fail("no record magic"));
        }
        let len = usize::from(u16::from_le_bytes([rest[4], rest[5]]));
        let end = 6 + len + 8;
        if rest.len() < end {
            return Err(fail("the record is cut short"));
        }
        let id = std::str::from_utf8(&rest[6..6 + len]).map_err(|_| fail("the id is not UTF-8"))?;
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&rest[6 + len..end]);
        tasks.push((id.to_owned(), u64::from_le_bytes(fp)));
        at += end;
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_pin_their_bytes_and_read_back_through_padding() {
        const ID: &str = "m::f";
        let record: [u8; task_record_len(ID)] = task_record(ID, 0x0102_0304_0506_0708);
        #[rustfmt::skip]
        assert_eq!(record, [
            b'p', b'p', b'T', b'1',
            4, 0,
            b'm', b':', b':', b'f',
            8, 7, 6, 5, 4, 3, 2, 1,
        ]);
        let mut section = record.to_vec();
        section.extend([0, 0, 0]);
        section.extend(task_record::<{ task_record_len("g") }>("g", 9));
        let tasks = parse_task_records(&section).unwrap();
        assert_eq!(
            tasks,
            vec![("m::f".into(), 0x0102_0304_0506_0708), ("g".into(), 9)]
        );
        assert!(parse_task_records(&section[..5]).is_err());
        assert!(parse_task_records(b"junk").is_err());
    }
}
