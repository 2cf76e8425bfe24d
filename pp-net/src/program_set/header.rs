//! What a build's file says about itself: the platform it runs on, from its header (ELF,
//! Mach-O or PE, read with `object`), and its task list, from its task section (see
//! pp-runtime's `task_record`).

use object::{Architecture, BinaryFormat, Object, ObjectSection};
use pp_runtime::task_record::{
    parse_task_records, TASK_SECTION_ELF, TASK_SECTION_MACHO, TASK_SECTION_PE,
};
use pp_runtime::Platform;

/// What was read from a build's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Architecture, OS, byte order, pointer width; the triple is `{arch}-{os}` (the
    /// caller knows better from the file's cargo path).
    pub(crate) platform: Platform,
    /// `(id, fingerprint)` of every task, in section order; empty without a task section.
    pub(crate) tasks: Vec<(String, u64)>,
}

/// Reads the header and the task section of an executable.
///
/// # Errors
/// A sentence saying why the bytes are not an executable pp can offer.
pub(crate) fn read_header(bytes: &[u8]) -> Result<Header, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an executable: {e}"))?;
    let (os, section) = match file.format() {
        BinaryFormat::Elf => (elf_os(bytes), TASK_SECTION_ELF),
        BinaryFormat::MachO => ("macos", TASK_SECTION_MACHO),
        BinaryFormat::Pe => ("windows", TASK_SECTION_PE),
        other => {
            return Err(format!(
                "a {other:?} file, not an ELF, Mach-O or PE executable"
            ))
        }
    };
    let arch = arch_name(file.architecture()).ok_or_else(|| {
        format!(
            "an executable for {:?}, which pp does not know",
            file.architecture()
        )
    })?;
    let pointer_width = match (file.architecture(), file.is_64()) {
        (Architecture::X86_64_X32, _) | (_, false) => 32,
        (_, true) => 64,
    };
    let tasks = match file.section_by_name(section) {
        Some(section) => {
            let data = section
                .data()
                .map_err(|e| format!("its task section cannot be read: {e}"))?;
            parse_task_records(data).map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    Ok(Header {
        platform: Platform {
            triple: format!("{arch}-{os}"),
            arch: arch.to_owned(),
            os: os.to_owned(),
            big_endian: !file.is_little_endian(),
            pointer_width,
        },
        tasks,
    })
}

/// The OS of an ELF file, from its OS/ABI byte: Linux unless a BSD says so (Linux
/// programs leave it at 0, "System V").
fn elf_os(bytes: &[u8]) -> &'static str {
    match bytes.get(7) {
        Some(9) => "freebsd",
        Some(2) => "netbsd",
        Some(12) => "openbsd",
        _ => "linux",
    }
}

/// The architecture as `std::env::consts::ARCH` names it.
fn arch_name(arch: Architecture) -> Option<&'static str> {
    Some(match arch {
        Architecture::X86_64 | Architecture::X86_64_X32 => "x86_64",
        Architecture::I386 => "x86",
        Architecture::Aarch64 | Architecture::Aarch64_Ilp32 => "aarch64",
        Architecture::Arm => "arm",
        Architecture::Riscv64 => "riscv64",
        Architecture::Riscv32 => "riscv32",
        Architecture::PowerPc64 => "powerpc64",
        Architecture::PowerPc => "powerpc",
        Architecture::S390x => "s390x",
        Architecture::LoongArch64 => "loongarch64",
        Architecture::Mips => "mips",
        Architecture::Mips64 => "mips64",
        Architecture::Sparc64 => "sparc64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_reads_as_this_platform_with_no_tasks_of_its_own() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let header = read_header(&bytes).unwrap();
        assert!(
            header.platform.runs(&Platform::this()),
            "{:?}",
            header.platform
        );
        assert!(read_header(b"#!/bin/sh\n").is_err());
    }
}
