//! Whether this process is a rank of a launcher run, read from the launcher's environment
//! (no MPI library is linked): which launcher, which rank of how many, and what tells this
//! run from every other one.

use super::error::LauncherError;

/// The variable that chooses the launcher mode: `auto` (the default), `slurm`, `mpi` or
/// `off`.
pub const LAUNCHER_ENV: &str = "PP_LAUNCHER";

/// The variable that names the run when the launcher's environment does not (an MPI
/// without `PMIX_NAMESPACE` or Open MPI's job id): any value unique to the run.
pub const LAUNCHER_ID_ENV: &str = "PP_LAUNCHER_ID";

/// What `PP_LAUNCHER` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Use whichever launcher started this process with more than one task.
    Auto,
    /// Only Slurm's `srun`.
    Slurm,
    /// Only an MPI launcher (Open MPI's `mpirun`, or any PMI/PMIx one).
    Mpi,
    /// Never: every rank runs `main`.
    Off,
}

impl Mode {
    /// `PP_LAUNCHER`'s value; unset or empty means [`Mode::Auto`].
    ///
    /// # Errors
    /// [`LauncherError::Var`] for a value that is none of the four.
    pub fn parse(value: Option<&str>) -> Result<Self, LauncherError> {
        let value = value.unwrap_or("").trim();
        match value.to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Mode::Auto),
            "slurm" | "srun" => Ok(Mode::Slurm),
            "mpi" | "mpirun" => Ok(Mode::Mpi),
            "off" | "0" | "no" | "false" | "none" => Ok(Mode::Off),
            _ => Err(LauncherError::Var {
                name: LAUNCHER_ENV,
                value: value.to_owned(),
                expected: "auto, slurm, mpi or off",
            }),
        }
    }
}

/// The launcher that started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A task of a Slurm job step (`srun`).
    Slurm,
    /// A process of an MPI launcher (`mpirun`, `mpiexec`).
    Mpi,
}

impl Kind {
    /// The name used in messages and in the rendezvous directory's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slurm => "slurm",
            Kind::Mpi => "mpi",
        }
    }
}

/// This process's place in a launcher run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Which launcher.
    pub kind: Kind,
    /// This process's rank, below `size`.
    pub rank: u32,
    /// How many processes the run has (more than one).
    pub size: u32,
    /// How many hosts the run spans, when the launcher says.
    pub hosts: Option<u32>,
    /// What tells this run from any other (job and step ids), made of `[A-Za-z0-9._-]`.
    pub run_id: String,
}

/// Reads the launcher's variables through `var` (the environment, or a test's map).
///
/// `Ok(None)`: not a launcher run of more than one process (or `PP_LAUNCHER=off`), so this
/// process runs `main` as usual.
///
/// # Errors
/// [`LauncherError`] for a bad `PP_LAUNCHER`, a launcher variable that is not a number, a
/// rank not below the size, an explicit mode whose launcher is absent, or an MPI run that
/// nothing identifies.
pub fn detect(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LauncherError> {
    let mode = Mode::parse(var(LAUNCHER_ENV).as_deref())?;
    let found = match mode {
        Mode::Off => return Ok(None),
        Mode::Slurm => slurm(&var)?,
        Mode::Mpi => mpi(&var)?,
        Mode::Auto => match slurm(&var)? {
            // `mpirun` inside an allocation: its processes carry the variables of the
            // step that started its daemons, one per host; the MPI rank is the program's.
            Some(step) => match mpi(&var) {
                Ok(Some(mpi)) if (mpi.rank, mpi.size) != (step.rank, step.size) => Some(mpi),
                _ => Some(step),
            },
            None => mpi(&var)?,
        },
    };
    if found.is_none() && matches!(mode, Mode::Slurm | Mode::Mpi) {
        return Err(LauncherError::Absent {
            mode: if mode == Mode::Slurm { "slurm" } else { "mpi" },
            looked_for: if mode == Mode::Slurm {
                "SLURM_PROCID and SLURM_STEP_ID of an srun step"
            } else {
                "OMPI_COMM_WORLD_RANK/_SIZE or PMI_RANK/PMI_SIZE"
            },
        });
    }
    match found {
        Some(launch) if launch.rank >= launch.size => Err(LauncherError::RankOutOfRange {
            rank: launch.rank,
            size: launch.size,
        }),
        Some(launch) if launch.size > 1 => Ok(Some(launch)),
        _ => Ok(None),
    }
}

/// A task of an `srun` step: `SLURM_PROCID` and a step id. A batch script has
/// `SLURM_PROCID` and `SLURM_NTASKS` too, but no step: a program run there directly is not
/// one of many.
fn slurm(var: &impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LauncherError> {
    let step = first(var, &["SLURM_STEP_ID", "SLURM_STEPID"]);
    let (Some(rank), Some(step)) = (number(var, "SLURM_PROCID")?, step) else {
        return Ok(None);
    };
    let Some(size) = first_number(var, &["SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"])? else {
        return Ok(None);
    };
    let job = first(var, &["SLURM_JOB_ID", "SLURM_JOBID"]).unwrap_or_default();
    let id = match var(LAUNCHER_ID_ENV) {
        Some(id) => id,
        None => format!("{job}-{step}"),
    };
    Ok(Some(Launch {
        kind: Kind::Slurm,
        rank,
        size,
        hosts: first_number(var, &["SLURM_STEP_NUM_NODES", "SLURM_NNODES"])?,
        run_id: sanitize(&id),
    }))
}

/// A process of an MPI launcher: Open MPI's `OMPI_COMM_WORLD_*`, else PMI's `PMI_RANK` and
/// `PMI_SIZE` (MPICH's Hydra, Intel MPI), else PMIx's `PMIX_RANK` with one of those sizes.
fn mpi(var: &impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LauncherError> {
    let rank = first_number(var, &["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"])?;
    let size = first_number(var, &["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])?;
    let (Some(rank), Some(size)) = (rank, size) else {
        return Ok(None);
    };
    let id = first(
        var,
        &[
            LAUNCHER_ID_ENV,
            "OMPI_MCA_ess_base_jobid",
            "PMIX_NAMESPACE",
            "PMI_KVSNAME",
        ],
    )
    .ok_or(LauncherError::NoRunId)?;
    Ok(Some(Launch {
        kind: Kind::Mpi,
        rank,
        size,
        hosts: number(var, "OMPI_MCA_orte_num_nodes")?,
        run_id: sanitize(&id),
    }))
}

/// The first of `names` that is set and not blank.
fn first(var: &impl Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
}

/// The first of `names` that is set, as a number.
fn first_number(
    var: &impl Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Result<Option<u32>, LauncherError> {
    for &name in names {
        if let Some(n) = number(var, name)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// `name` as a number, if set.
fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<u32>, LauncherError> {
    let Some(value) = var(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| LauncherError::Var {
            name,
            value,
            expected: "a whole number",
        })
}

/// `id` with every character outside `[A-Za-z0-9._-]` replaced by `_`, so that it can be a
/// file name and never a path.
fn sanitize(id: &str) -> String {
    let clean: String = id
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("_{clean}")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const SRUN: &[(&str, &str)] = &[
        ("SLURM_PROCID", "1"),
        ("SLURM_NTASKS", "3"),
        ("SLURM_STEP_NUM_TASKS", "3"),
        ("SLURM_STEP_NUM_NODES", "1"),
        ("SLURM_JOB_ID", "42"),
        ("SLURM_STEP_ID", "0"),
    ];

    #[test]
    fn an_srun_task_is_a_rank() {
        let launch = detect(env(SRUN)).unwrap().unwrap();
        assert_eq!(
            launch,
            Launch {
                kind: Kind::Slurm,
                rank: 1,
                size: 3,
                hosts: Some(1),
                run_id: "42-0".into()
            }
        );
    }

    #[test]
    fn a_batch_script_is_not() {
        let batch = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_JOB_ID", "42"),
        ]);
        assert_eq!(detect(batch).unwrap(), None);
    }

    #[test]
    fn one_task_or_off_is_not() {
        let mut one = SRUN.to_vec();
        one.retain(|(k, _)| {
            !k.contains("NUM_TASKS") && !k.ends_with("NTASKS") && *k != "SLURM_PROCID"
        });
        one.extend([("SLURM_NTASKS", "1"), ("SLURM_PROCID", "0")]);
        assert_eq!(detect(env(&one)).unwrap(), None);
        let mut off = SRUN.to_vec();
        off.push((LAUNCHER_ENV, "off"));
        assert_eq!(detect(env(&off)).unwrap(), None);
    }

    #[test]
    fn open_mpi_is_a_rank() {
        let mpirun = env(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "3"),
            ("OMPI_MCA_ess_base_jobid", "746913793"),
            ("PMIX_RANK", "2"),
        ]);
        let launch = detect(mpirun).unwrap().unwrap();
        assert_eq!((launch.kind, launch.rank, launch.size), (Kind::Mpi, 2, 3));
        assert_eq!(launch.run_id, "746913793");
    }

    #[test]
    fn mpirun_inside_an_allocation_is_mpi() {
        // mpirun's daemons run as one srun step, one task per host.
        let mut inside = vec![
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_ID", "1"),
            ("SLURM_STEP_NUM_TASKS", "1"),
            ("SLURM_JOB_ID", "42"),
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "3"),
            ("OMPI_MCA_ess_base_jobid", "99"),
        ];
        let launch = detect(env(&inside)).unwrap().unwrap();
        assert_eq!((launch.kind, launch.rank, launch.size), (Kind::Mpi, 2, 3));
        // srun of an MPI program (--mpi=pmi2): the same ranks, and Slurm's name for them.
        inside.retain(|(k, _)| !k.starts_with("OMPI"));
        inside.retain(|(k, _)| *k != "SLURM_STEP_NUM_TASKS");
        inside.extend([
            ("SLURM_STEP_NUM_TASKS", "3"),
            ("PMI_RANK", "0"),
            ("PMI_SIZE", "3"),
        ]);
        let launch = detect(env(&inside)).unwrap().unwrap();
        assert_eq!((launch.kind, launch.rank, launch.size), (Kind::Slurm, 0, 3));
    }

    #[test]
    fn pmi_needs_something_that_names_the_run() {
        let hydra = [("PMI_RANK", "0"), ("PMI_SIZE", "4")];
        assert!(matches!(detect(env(&hydra)), Err(LauncherError::NoRunId)));
        let mut named = hydra.to_vec();
        named.push((LAUNCHER_ID_ENV, "my run/1"));
        assert_eq!(detect(env(&named)).unwrap().unwrap().run_id, "my_run_1");
    }

    #[test]
    fn explicit_modes_insist() {
        let mut slurm_only = vec![(LAUNCHER_ENV, "slurm")];
        assert!(matches!(
            detect(env(&slurm_only)),
            Err(LauncherError::Absent { .. })
        ));
        slurm_only.extend_from_slice(SRUN);
        assert!(detect(env(&slurm_only)).unwrap().is_some());
        let mpi_only = [(LAUNCHER_ENV, "mpi")];
        let mut both = SRUN.to_vec();
        both.extend_from_slice(&mpi_only);
        assert!(matches!(
            detect(env(&both)),
            Err(LauncherError::Absent { .. })
        ));
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        let bad = [(LAUNCHER_ENV, "sometimes")];
        assert!(detect(env(&bad))
            .unwrap_err()
            .to_string()
            .contains("PP_LAUNCHER"));
        let mut bad_rank = SRUN.to_vec();
        bad_rank.retain(|(k, _)| *k != "SLURM_PROCID");
        bad_rank.push(("SLURM_PROCID", "one"));
        assert!(detect(env(&bad_rank))
            .unwrap_err()
            .to_string()
            .contains("SLURM_PROCID"));
        let mut past = SRUN.to_vec();
        past.retain(|(k, _)| *k != "SLURM_PROCID");
        past.push(("SLURM_PROCID", "3"));
        assert!(matches!(
            detect(env(&past)),
            Err(LauncherError::RankOutOfRange { rank: 3, size: 3 })
        ));
    }

    #[test]
    fn ids_are_file_names() {
        assert_eq!(sanitize("../etc"), "_.._etc");
        assert_eq!(sanitize(""), "_");
        assert_eq!(sanitize("7-1"), "7-1");
    }
}
