//! What a program is built for, and so what a node can run: the target triple, the CPU
//! architecture and OS (as Rust's `std::env::consts` name them), byte order and pointer
//! width. A node says its [`Platform`] in its hello; a client offers one build of its
//! program per platform and each node gets the build it runs.
//!
//! Two platforms run the same programs when architecture, OS, byte order and pointer width
//! agree ([`Platform::runs`]): a file's header says those, not the full triple (an ELF
//! header does not tell `-gnu` from `-musl`), so the triple is shown, never compared.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A build target as client and node compare it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// The target triple (`aarch64-unknown-linux-gnu`); for a file read from its header
    /// without a cargo path, `{arch}-{os}` only.
    pub triple: String,
    /// The CPU architecture, as `std::env::consts::ARCH` names it (`x86_64`, `aarch64`).
    pub arch: String,
    /// The operating system, as `std::env::consts::OS` names it (`linux`, `macos`).
    pub os: String,
    /// Whether integers are stored most significant byte first.
    pub big_endian: bool,
    /// Pointer width in bits (32 or 64).
    pub pointer_width: u8,
}

impl Platform {
    /// The platform this program was built for.
    pub fn this() -> Platform {
        Platform {
            triple: env!("PP_TARGET").to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            os: std::env::consts::OS.to_owned(),
            big_endian: cfg!(target_endian = "big"),
            // usize::BITS is 16, 32 or 64: always fits.
            pointer_width: u8::try_from(usize::BITS).unwrap_or(u8::MAX),
        }
    }

    /// Whether a program built for `self` runs where `other` programs run: same
    /// architecture, OS, byte order and pointer width.
    pub fn runs(&self, other: &Platform) -> bool {
        self.arch == other.arch
            && self.os == other.os
            && self.big_endian == other.big_endian
            && self.pointer_width == other.pointer_width
    }

    /// `little-endian, 64-bit`: what the triple does not say plainly.
    pub fn layout(&self) -> String {
        let order = if self.big_endian { "big" } else { "little" };
        format!("{order}-endian, {}-bit", self.pointer_width)
    }
}

impl fmt::Display for Platform {
    /// The triple with the layout: `aarch64-unknown-linux-gnu (little-endian, 64-bit)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.triple, self.layout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_platform_names_its_triple_and_layout() {
        let this = Platform::this();
        assert!(this.triple.starts_with(std::env::consts::ARCH), "{this}");
        assert!(this.runs(&this));
        let other = Platform {
            arch: "other".into(),
            ..this.clone()
        };
        assert!(!this.runs(&other));
        let musl = Platform {
            triple: "x86_64-unknown-linux-musl".into(),
            ..this.clone()
        };
        assert!(musl.runs(&this), "the triple is shown, not compared");
        assert!(this.to_string().contains("-endian, "), "{this}");
    }
}
