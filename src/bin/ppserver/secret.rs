//! Where the node's secret comes from, what is wrong with it if anything, and the key
//! derived from it.
//!
//! The plain secret is read once, checked, turned into the key ([`Secret`]) and wiped:
//! every buffer that held it is a [`Zeroizing`] one. A secret under the minimum strength
//! (see [`weakness`]) is refused unless `--allow-weak-secret` forces it; a secret file says
//! what is wrong with it, and one that other users can read or change is warned about.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use pp_net::Secret;
use zeroize::Zeroizing;

use crate::options::Options;

/// The fewest bytes a secret may have: 16 random bytes are 128 bits, beyond offline
/// guessing; a memorable secret of this length is still weak, but no longer trivially.
pub(crate) const MIN_SECRET_BYTES: usize = 16;

/// The fewest different byte values a secret may have (a 16-digit random number has
/// about 8; `abababab...` has 2).
pub(crate) const MIN_DIFFERENT_BYTES: usize = 5;

/// The largest secret file read: a larger one is surely not a secret file.
const MAX_SECRET_FILE: usize = 64 << 10;

/// The key derived from the node's secret, and what to warn about it once logging runs.
pub(crate) struct NodeSecret {
    /// The key (the plain secret is gone).
    pub(crate) secret: Secret,
    /// Warnings about the secret: a secret file others can read, a forced weak secret.
    pub(crate) warnings: Vec<String>,
}

/// Where a secret came from, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `--secret`.
    Flag,
    /// `PP_SECRET`.
    Environment,
    /// `--secret-file` or `PP_SECRET_FILE`.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("--secret"),
            Origin::Environment => f.write_str("PP_SECRET"),
            Origin::File(path) => write!(f, "the secret file {}", path.display()),
        }
    }
}

/// What makes a secret weak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Weakness {
    /// Spaces, tabs and line breaks only.
    Whitespace,
    /// Fewer than [`MIN_SECRET_BYTES`] bytes.
    TooShort(usize),
    /// One byte value, repeated.
    Repeated,
    /// Fewer than [`MIN_DIFFERENT_BYTES`] byte values.
    FewDifferent(usize),
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weakness::Whitespace => f.write_str("it is only whitespace"),
            Weakness::TooShort(1) => {
                write!(f, "1 byte long, at least {MIN_SECRET_BYTES} are needed")
            }
            Weakness::TooShort(len) => {
                write!(
                    f,
                    "{len} bytes long, at least {MIN_SECRET_BYTES} are needed"
                )
            }
            Weakness::Repeated => f.write_str("it is one byte repeated"),
            Weakness::FewDifferent(n) => write!(
                f,
                "it has only {n} different bytes, at least {MIN_DIFFERENT_BYTES} are needed"
            ),
        }
    }
}

/// Why the node cannot have its secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// No source gave a secret.
    #[error(
        "no secret given: pass --secret, --secret-file or set PP_SECRET \
         (every client needs the same secret)"
    )]
    Missing,
    /// The secret file cannot be read.
    #[error("cannot read the secret file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file has no bytes at all.
    #[error("the secret file {} is empty: write the secret in it", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The secret file holds a line break and nothing else.
    #[error(
        "the secret file {} holds only a line break: write the secret before it",
        path.display()
    )]
    OnlyLineBreak {
        /// The file.
        path: PathBuf,
    },
    /// The secret file is too large to be one.
    #[error(
        "the secret file {} is larger than {} KiB: is it the right file?",
        path.display(),
        MAX_SECRET_FILE >> 10
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The secret is not UTF-8 (clients read it as text).
    #[error("the secret from {0} is not valid UTF-8")]
    NotUtf8(Origin),
    /// The secret is under the minimum strength, and not forced.
    #[error(
        "the secret from {origin} is too weak: {weakness}. Use a long random secret, such as \
         the output of `head -c 32 /dev/urandom | base64`, or pass --allow-weak-secret to \
         start anyway"
    )]
    Weak {
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        weakness: Weakness,
    },
}

/// The node's secret, from the options or the environment, in that order: `--secret`,
/// `--secret-file`, `PP_SECRET`, `PP_SECRET_FILE` (an empty variable counts as unset).
/// Takes the secret out of `options`.
///
/// By hand rather than through clap's `env`: clap would let `PP_SECRET` outrank
/// `--secret-file` and print the secret's value in `--help`.
#[inline(never)]
pub(crate) fn read(options: &mut Options) -> Result<NodeSecret, SecretError> {
    let mut warnings = Vec::new();
    let (origin, text) = if let Some(secret) = options.secret.take() {
        (Origin::Flag, Zeroizing::new(secret.into_bytes()))
    } else if let Some(path) = &options.secret_file {
        (Origin::File(path.clone()), read_file(path, &mut warnings)?)
    } else if let Some(secret) = environment("PP_SECRET") {
        (Origin::Environment, secret)
    } else if let Some(path) = environment("PP_SECRET_FILE") {
        let path = PathBuf::from(os_string(&path));
        (Origin::File(path.clone()), read_file(&path, &mut warnings)?)
    } else {
        return Err(SecretError::Missing);
    };
    if text.is_empty() {
        // `--secret ''`: there is no default secret.
        return Err(SecretError::Missing);
    }
    if std::str::from_utf8(&text).is_err() {
        return Err(SecretError::NotUtf8(origin));
    }
    if let Some(weakness) = weakness(&text) {
        if !options.allow_weak_secret {
            return Err(SecretError::Weak { origin, weakness });
        }
        warnings.push(format!(
            "ppserver runs with a weak secret, as --allow-weak-secret asks (the secret from \
             {origin}: {weakness}): anyone who records a handshake can test guesses of it \
             offline"
        ));
    }
    let secret = Secret::new(&*text).map_err(|_| SecretError::Missing)?;
    Ok(NodeSecret { secret, warnings })
}

/// What makes `secret` weak, if anything: only whitespace, fewer than
/// [`MIN_SECRET_BYTES`] bytes, or fewer than [`MIN_DIFFERENT_BYTES`] byte values.
pub(crate) fn weakness(secret: &[u8]) -> Option<Weakness> {
    if secret.iter().all(u8::is_ascii_whitespace) {
        return Some(Weakness::Whitespace);
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Some(Weakness::TooShort(secret.len()));
    }
    let mut seen = [false; 256];
    for &byte in secret {
        seen[usize::from(byte)] = true;
    }
    match seen.iter().filter(|&&seen| seen).count() {
        1 => Some(Weakness::Repeated),
        n if n < MIN_DIFFERENT_BYTES => Some(Weakness::FewDifferent(n)),
        _ => None,
    }
}

/// The value of the variable `name`, unless it is unset or empty, in a buffer wiped on
/// drop (the variable itself is cleared by `traces`).
fn environment(name: &str) -> Option<Zeroizing<Vec<u8>>> {
    let value = std::env::var_os(name).filter(|value| !value.is_empty())?;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        Some(Zeroizing::new(value.into_vec()))
    }
    #[cfg(not(unix))]
    {
        Some(Zeroizing::new(
            value.to_string_lossy().into_owned().into_bytes(),
        ))
    }
}

/// A path from an environment variable's bytes.
fn os_string(bytes: &[u8]) -> std::ffi::OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(bytes).to_owned()
    }
    #[cfg(not(unix))]
    {
        String::from_utf8_lossy(bytes).into_owned().into()
    }
}

/// The secret in the file at `path`, its line break removed; a warning in `warnings`
/// when other users can read or change the file.
fn read_file(path: &Path, warnings: &mut Vec<String>) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if let Some(warning) = open_to_others(path, &metadata) {
        warnings.push(warning);
    }
    // Room for the largest file allowed and one byte more, so the buffer never grows (a
    // reallocation would leave a copy of the secret behind).
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE + 1));
    file.take(MAX_SECRET_FILE as u64 + 1)
        .read_to_end(&mut text)
        .map_err(unreadable)?;
    if text.len() > MAX_SECRET_FILE {
        return Err(SecretError::FileTooLarge {
            path: path.to_owned(),
        });
    }
    if text.is_empty() {
        return Err(SecretError::EmptyFile {
            path: path.to_owned(),
        });
    }
    while matches!(text.last(), Some(b'\r' | b'\n')) {
        text.pop();
    }
    if text.is_empty() {
        return Err(SecretError::OnlyLineBreak {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// A warning when the secret file's mode lets other users (group or world) read or change
/// it; none for a systemd credential (see [`systemd_credential`]).
fn open_to_others(path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
    if systemd_credential(path, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref()) {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        let how = match (mode & 0o044 != 0, mode & 0o022 != 0) {
            (true, true) => "read and changed",
            (true, false) => "read",
            (false, true) => "changed",
            (false, false) => return None,
        };
        let path = path.display();
        Some(format!(
            "the secret file {path} can be {how} by other users (mode {mode:04o}): \
             chmod 600 {path}"
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, metadata);
        None
    }
}

/// Whether `path` is in `credentials`, the directory where systemd puts a service's
/// credentials (`LoadCredential=`; `$CREDENTIALS_DIRECTORY`). systemd makes it private to
/// the service (a read-only mount of its own, readable by the service's user only), but
/// from systemd 254 on gives the files mode 0440 and an ACL when the service has a user of
/// its own: the mode says nothing about other users there, and cannot be changed.
fn systemd_credential(path: &Path, credentials: Option<&std::ffi::OsStr>) -> bool {
    credentials.is_some_and(|dir| !dir.is_empty() && path.parent() == Some(Path::new(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_systemd_credential_is_a_file_of_the_credentials_directory() {
        let dir = Some(std::ffi::OsStr::new("/run/credentials/ppserver.service"));
        let credential = Path::new("/run/credentials/ppserver.service/secret");
        assert!(systemd_credential(credential, dir));
        assert!(!systemd_credential(credential, None));
        assert!(!systemd_credential(
            credential,
            Some(std::ffi::OsStr::new(""))
        ));
        assert!(!systemd_credential(Path::new("/etc/pp/secret"), dir));
        assert!(!systemd_credential(
            Path::new("/run/credentials/ppserver.service/sub/secret"),
            dir
        ));
        assert!(!systemd_credential(
            Path::new("/run/credentials/ppserver.service.evil/secret"),
            dir
        ));
    }

    #[test]
    fn the_minimum_strength() {
        assert_eq!(weakness(b""), Some(Weakness::Whitespace));
        assert_eq!(weakness(b" "), Some(Weakness::Whitespace));
        assert_eq!(
            weakness(b" \t\n \t\n \t\n \t\n \t\n \t\n"),
            Some(Weakness::Whitespace)
        );
        assert_eq!(weakness(b"a"), Some(Weakness::TooShort(1)));
        assert_eq!(weakness(b"fifteen bytes!!"), Some(Weakness::TooShort(15)));
        assert_eq!(weakness(&[b'x'; 64]), Some(Weakness::Repeated));
        assert_eq!(weakness(&b"ab".repeat(20)), Some(Weakness::FewDifferent(2)));
        assert_eq!(
            weakness(&b"abcd".repeat(4)),
            Some(Weakness::FewDifferent(4))
        );
        assert_eq!(weakness(b"abcde".repeat(4).as_slice()), None);
        assert_eq!(weakness(b"a long random secret"), None);
        assert_eq!(weakness(b"4718203956128347"), None);
        assert_eq!(weakness(b"hJ2k9Zq0vXc3Lw8RtY5uNb7mAe1sDf4gPo6iQ=="), None);
    }

    #[test]
    fn weaknesses_say_what_is_wrong() {
        assert_eq!(
            Weakness::TooShort(1).to_string(),
            "1 byte long, at least 16 are needed"
        );
        assert_eq!(
            Weakness::TooShort(7).to_string(),
            "7 bytes long, at least 16 are needed"
        );
        let error = SecretError::Weak {
            origin: Origin::File("/etc/pp".into()),
            weakness: Weakness::Repeated,
        };
        assert!(error
            .to_string()
            .starts_with("the secret from the secret file /etc/pp is too weak: it is one byte"));
    }
}
