//! Cargo's places for builds of one program: `<target dir>/<profile>/[examples/]<name>` for
//! the host and `<target dir>/<triple>/<profile>/[examples/]<name>` for `--target
//! <triple>`. From the running executable's path, the builds of the same program for other
//! targets are found there without configuration, and the command that makes a missing
//! one is known.

use std::path::{Path, PathBuf};

/// Where the running executable sits in cargo's target directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CargoPlace {
    /// The target directory (`target`).
    root: PathBuf,
    /// The triple directory it sits in, when built with `--target`.
    triple: Option<String>,
    /// `debug`, `release` or another profile.
    profile: String,
    /// Whether it is an example (`examples/`), not a binary.
    example: bool,
    /// Its file name, without `.exe`.
    name: String,
}

impl CargoPlace {
    /// The place of `exe`, if it sits where cargo puts builds.
    pub(crate) fn of(exe: &Path) -> Option<CargoPlace> {
        let file = exe.file_name()?.to_str()?;
        let name = file.strip_suffix(".exe").unwrap_or(file).to_owned();
        let mut dir = exe.parent()?;
        let example = dir.file_name()? == "examples";
        if example {
            dir = dir.parent()?;
        }
        let profile = dir.file_name()?.to_str()?.to_owned();
        let above = dir.parent()?;
        let above_name = above.file_name()?.to_str()?;
        // A triple directory has a triple's name and is not itself a target directory
        // (cargo leaves `.rustc_info.json` at the top of those, which may have dashes in
        // their names: `target-arm`).
        let (root, triple) = if looks_like_triple(above_name) && !is_target_dir(above) {
            (above.parent()?.to_owned(), Some(above_name.to_owned()))
        } else {
            (above.to_owned(), None)
        };
        if !is_target_dir(&root) {
            return None;
        }
        Some(CargoPlace {
            root,
            triple,
            profile,
            example,
            name,
        })
    }

    /// The triple of the directory the file sits in, when built with `--target`.
    pub(crate) fn triple_named(self) -> Option<String> {
        self.triple
    }

    /// The same program in every other target's directory that holds it: the host build
    /// when this one has a triple, and `<root>/<triple>/...` for each triple directory.
    pub(crate) fn siblings(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        if self.triple.is_some() {
            found.extend(self.file_in(&self.root));
        }
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(dir_name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !looks_like_triple(&dir_name) || self.triple.as_deref() == Some(&dir_name) {
                continue;
            }
            found.extend(self.file_in(&entry.path()));
        }
        found.sort();
        found
    }

    /// This program's file under `base` (a target directory or a triple directory).
    fn file_in(&self, base: &Path) -> Option<PathBuf> {
        let mut dir = base.join(&self.profile);
        if self.example {
            dir = dir.join("examples");
        }
        [self.name.clone(), format!("{}.exe", self.name)]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
    }

    /// The command that builds this program for `triple`.
    pub(crate) fn build_command(&self, triple: &str) -> String {
        let profile = match self.profile.as_str() {
            "debug" => String::new(),
            "release" => " --release".to_owned(),
            other => format!(" --profile {other}"),
        };
        let kind = if self.example { "example" } else { "bin" };
        format!(
            "cargo build{profile} --{kind} {} --target {triple}",
            self.name
        )
    }
}

/// The command for a program not in cargo's layout.
pub(crate) fn generic_build_command(triple: &str) -> String {
    format!("cargo build --release --target {triple}")
}

/// Whether a directory name looks like a target triple (`aarch64-unknown-linux-gnu`): two
/// or more parts, the first an architecture.
fn looks_like_triple(name: &str) -> bool {
    const ARCHES: [&str; 21] = [
        "x86_64",
        "i386",
        "i586",
        "i686",
        "aarch64",
        "arm",
        "thumb",
        "riscv",
        "powerpc",
        "s390x",
        "mips",
        "loongarch",
        "sparc",
        "wasm",
        "nvptx",
        "hexagon",
        "csky",
        "bpf",
        "avr",
        "m68k",
        "xtensa",
    ];
    let mut parts = name.split('-');
    let arch = parts.next().unwrap_or_default();
    parts.next().is_some() && ARCHES.iter().any(|a| arch.starts_with(a))
}

/// Whether `dir` is the top of a cargo target directory (`CACHEDIR.TAG` is also in each
/// triple directory; `.rustc_info.json` only at the top).
fn is_target_dir(dir: &Path) -> bool {
    dir.join(".rustc_info.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_for_other_targets_are_found_beside_the_running_one() {
        let root = std::env::temp_dir().join(format!("pp-layout-{}", std::process::id()));
        let host = root.join("target/release/examples");
        let arm = root.join("target/aarch64-unknown-linux-gnu/release/examples");
        let win = root.join("target/x86_64-pc-windows-gnu/release/examples");
        for dir in [&host, &arm, &win] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(root.join("target/.rustc_info.json"), b"").unwrap();
        std::fs::write(arm.join("../../CACHEDIR.TAG"), b"").unwrap();
        // A target directory with a dash in its name is not a triple's.
        let dashed = root.join("target-arm/debug");
        std::fs::create_dir_all(&dashed).unwrap();
        std::fs::write(root.join("target-arm/.rustc_info.json"), b"").unwrap();
        let place = CargoPlace::of(&dashed.join("sum")).unwrap();
        assert_eq!(place.triple, None);
        assert_eq!(place.root, root.join("target-arm"));
        for file in [host.join("sum"), arm.join("sum"), win.join("sum.exe")] {
            std::fs::write(file, b"x").unwrap();
        }
        let place = CargoPlace::of(&host.join("sum")).unwrap();
        assert_eq!(place.siblings(), vec![arm.join("sum"), win.join("sum.exe")]);
        assert_eq!(
            place.build_command("aarch64-unknown-linux-gnu"),
            "cargo build --release --example sum --target aarch64-unknown-linux-gnu"
        );
        let from_arm = CargoPlace::of(&arm.join("sum")).unwrap();
        assert_eq!(
            from_arm.triple.as_deref(),
            Some("aarch64-unknown-linux-gnu")
        );
        assert_eq!(
            from_arm.siblings(),
            vec![host.join("sum"), win.join("sum.exe")]
        );
        let bin = CargoPlace::of(&root.join("target/debug/ppserver")).unwrap();
        assert_eq!(CargoPlace::of(&root.join("elsewhere/sum")), None);
        assert_eq!(
            bin.build_command("t"),
            "cargo build --bin ppserver --target t"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
