//! One program, several builds: the running executable and builds of the same program for
//! other targets, so that each node gets the build it can run.
//!
//! A client gathers its builds once, when it starts ([`ProgramSet::gather`]): the running
//! program, the paths the user offers (`ServerBuilder::programs`, `PP_PROGRAMS`), and the
//! builds cargo put next to the running one (`cargo_layout`). Each file's platform comes
//! from its header and its task list from its task section (`header`); a build whose tasks
//! differ from this program's (`tasks`) is refused: an offered one stops the client with an
//! error naming the task, a found one is skipped with a warning (a stale build left in
//! `target/`). Each node's hello says its platform; the client offers every build, the node
//! takes the one it runs, and a node that runs none is told to the user once, with the
//! `cargo build --target ...` command that makes its build.

mod cargo_layout;
mod header;
mod tasks;

use crate::program::{current_program, hash_file, Program};
use cargo_layout::{generic_build_command, CargoPlace};
use header::read_header;
use pp_runtime::Platform;
use std::path::{Path, PathBuf};
use tasks::{first_difference, our_tasks};

/// Why an offered build cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The running program's own executable cannot be read.
    #[error("{0}")]
    ThisProgram(String),
    /// The file cannot be read.
    #[error("cannot read the build {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an executable pp can offer.
    #[error("{path} cannot be offered to nodes: {reason}")]
    NotAnExecutable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The build's tasks differ from this program's: it was built from other source.
    #[error(
        "the build {path} ({platform}) is not this program: {difference} (rebuild it from \
         this source{hint})"
    )]
    TasksDiffer {
        /// The file.
        path: PathBuf,
        /// Its platform, as shown (`aarch64-unknown-linux-gnu (little-endian, 64-bit)`).
        platform: String,
        /// The first task that differs, and how.
        difference: String,
        /// `: cargo build ...` when known.
        hint: String,
    },
}

/// One build of the program, with the platform it runs on.
#[derive(Debug, Clone)]
pub struct Build {
    /// The file, its hash and size.
    pub program: Program,
    /// What it runs on.
    pub platform: Platform,
}

/// Every build of the running program a client offers; the running one first.
#[derive(Debug, Clone)]
pub struct ProgramSet {
    builds: Vec<Build>,
    /// Where the running program sits in cargo's layout, for the command that makes a
    /// missing build.
    place: Option<CargoPlace>,
}

impl ProgramSet {
    /// The running program, the `offered` builds and the ones cargo put beside it.
    ///
    /// # Errors
    /// [`BuildError`] for the running program's executable, or an offered build that
    /// cannot be read, is not an executable, or has other tasks. (Builds found beside the
    /// running one are skipped with a warning instead.)
    pub fn gather(offered: &[PathBuf]) -> Result<ProgramSet, BuildError> {
        let this = current_program().map_err(BuildError::ThisProgram)?.clone();
        let place = CargoPlace::of(&this.path);
        let mut set = ProgramSet {
            builds: vec![Build {
                program: this,
                platform: Platform::this(),
            }],
            place,
        };
        let ours = our_tasks();
        for path in offered {
            let build = set.read_build(path, &ours)?;
            set.add(build);
        }
        let found = set
            .place
            .as_ref()
            .map(CargoPlace::siblings)
            .unwrap_or_default();
        for path in found {
            if set.builds.iter().any(|b| same_file(&b.program.path, &path)) {
                continue;
            }
            match set.read_build(&path, &ours) {
                Ok(build) => set.add(build),
                Err(error) => pp_runtime::warn!("{error}; it is not offered to nodes"),
            }
        }
        Ok(set)
    }

    /// A set of the running program alone (tests, and clients with one target).
    pub fn single(program: Program) -> ProgramSet {
        let place = CargoPlace::of(&program.path);
        ProgramSet {
            builds: vec![Build {
                program,
                platform: Platform::this(),
            }],
            place,
        }
    }

    /// The running program's build.
    pub fn running(&self) -> &Build {
        &self.builds[0]
    }

    /// Every build, the running one first.
    pub fn builds(&self) -> &[Build] {
        &self.builds
    }

    /// The build at `index` (as a node's hello names it), if there is one.
    pub fn get(&self, index: usize) -> Option<&Build> {
        self.builds.get(index)
    }

    /// The command that makes a build for a node of `platform`.
    pub fn build_command(&self, platform: &Platform) -> String {
        match &self.place {
            Some(place) => place.build_command(&platform.triple),
            None => generic_build_command(&platform.triple),
        }
    }

    /// Adds `build` unless one for its platform is there already (the first offered wins).
    fn add(&mut self, build: Build) {
        match self
            .builds
            .iter()
            .find(|b| b.platform.runs(&build.platform))
        {
            Some(kept) => pp_runtime::debug!(
                "{} is not offered: {} is the build for {}",
                build.program.path.display(),
                kept.program.path.display(),
                kept.platform
            ),
            None => {
                pp_runtime::info!(
                    "offering {} to nodes of {}",
                    build.program.path.display(),
                    build.platform
                );
                self.builds.push(build);
            }
        }
    }

    /// Reads the build at `path`: platform, tasks (checked against `ours`), hash.
    fn read_build(&self, path: &Path, ours: &[(String, u64)]) -> Result<Build, BuildError> {
        let unreadable = |source| BuildError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let header = read_header(&bytes).map_err(|reason| BuildError::NotAnExecutable {
            path: path.to_owned(),
            reason,
        })?;
        drop(bytes);
        let mut platform = header.platform;
        if let Some(triple) = CargoPlace::of(path).and_then(|p| p.triple_named()) {
            platform.triple = triple;
        }
        if let Some(difference) = first_difference(ours, &header.tasks) {
            let hint = match &self.place {
                Some(place) => format!(": {}", place.build_command(&platform.triple)),
                None => String::new(),
            };
            return Err(BuildError::TasksDiffer {
                path: path.to_owned(),
                platform: platform.to_string(),
                difference: difference.to_string(),
                hint,
            });
        }
        let (sha256, size) = hash_file(path).map_err(unreadable)?;
        Ok(Build {
            program: Program {
                path: path.to_owned(),
                sha256,
                size,
            },
            platform,
        })
    }
}

/// Whether two paths name the same file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
