//! What identifies the running program to a node: the SHA-256 of its executable, its size,
//! the platform it was built for, and the fingerprint of its task registry.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The platform a program runs on, as client and node compare it: `"{arch}-{os}"`, for
/// example `x86_64-linux`. A node runs only programs built for its own platform.
pub fn this_target() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// The executable of this process, hashed once.
#[derive(Debug, Clone)]
pub struct Program {
    /// Where the executable is.
    pub path: PathBuf,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
}

impl Program {
    /// The SHA-256 as lowercase hex, as nodes name their cache files.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This process's executable, read and hashed on first use.
///
/// # Errors
/// A message naming the path when the executable cannot be found or read.
pub fn current_program() -> Result<&'static Program, String> {
    static PROGRAM: OnceLock<Result<Program, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let path = std::env::current_exe()
                .map_err(|e| format!("cannot find this program's executable: {e}"))?;
            let (sha256, size) = hash_file(&path).map_err(|e| {
                format!(
                    "cannot read this program's executable {}: {e}",
                    path.display()
                )
            })?;
            Ok(Program { path, sha256, size })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// SHA-256 and size of a file, read in blocks.
///
/// # Errors
/// I/O errors of opening or reading the file.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<([u8; 32], u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hash.update(&block[..n]);
        size += n as u64;
    }
    Ok((hash.finalize().into(), size))
}
