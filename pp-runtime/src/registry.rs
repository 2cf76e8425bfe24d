//! The process-wide task registry: every `#[pp::parallel]` function, keyed by its id.
//!
//! Entries are gathered by the linker into one slice (`TASKS`, through `linkme`), so the
//! registry is complete from the first instruction of the process, constructors included:
//! a worker process can serve jobs before `main`. A remote worker (or a test) runs a task
//! from bytes only: [`Registry::invoke`] decodes the arguments, calls the function and
//! encodes the result.

use crate::codec::{self, CodecError};
use crate::error::panic_message;
use crate::remote::ProgramHooks;
use crate::task::{Task, TaskFn};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Type-erased entry point of a task: encoded arguments in, encoded result out.
pub type InvokeFn = fn(&[u8]) -> Result<Vec<u8>, InvokeError>;

/// One registered task. Created by `#[pp::parallel]`; not built by hand.
#[derive(Debug)]
pub struct TaskEntry {
    id: &'static str,
    fingerprint: u64,
    invoke: InvokeFn,
    hooks: Option<&'static ProgramHooks>,
    /// The task's record in the task section (see `task_record`): referenced here so that
    /// the linker keeps it.
    record: Option<&'static [u8]>,
}

impl TaskEntry {
    /// Builds an entry; used by generated code.
    #[doc(hidden)]
    pub const fn new(id: &'static str, fingerprint: u64, invoke: InvokeFn) -> Self {
        TaskEntry {
            id,
            fingerprint,
            invoke,
            hooks: None,
            record: None,
        }
    }

    /// Builds an entry that also points at the program's network hooks; referencing them
    /// from every task is what makes the linker keep the cluster client in the program.
    #[doc(hidden)]
    pub const fn with_hooks(
        id: &'static str,
        fingerprint: u64,
        invoke: InvokeFn,
        hooks: &'static ProgramHooks,
    ) -> Self {
        TaskEntry {
            id,
            fingerprint,
            invoke,
            hooks: Some(hooks),
            record: None,
        }
    }

    /// The same entry with its record in the task section, which a client reads from
    /// builds of the program for other targets; used by generated code.
    #[doc(hidden)]
    pub const fn with_record(mut self, record: &'static [u8]) -> Self {
        self.record = Some(record);
        self
    }

    /// The task's record in the task section, if the entry has one.
    #[doc(hidden)]
    pub fn record(&self) -> Option<&'static [u8]> {
        self.record
    }

    /// The task's stable id.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// The task's signature fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// Every task of the program, gathered at link time by `#[pp::parallel]` expansions.
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

/// Why a task could not be run from bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// No task with this id is registered in this program.
    #[error("task `{0}` is not registered in this program (was it built from the same source?)")]
    UnknownTask(String),
    /// Two tasks share an id, so the program cannot tell which one is meant.
    #[error("task id `{0}` is registered more than once")]
    DuplicateTask(String),
    /// The caller's signature fingerprint differs from the registered task's.
    #[error("task `{id}` has a different signature here (fingerprint {found:016x}, expected {expected:016x})")]
    FingerprintMismatch {
        /// The task id.
        id: String,
        /// The fingerprint the caller expected.
        expected: u64,
        /// The fingerprint registered in this program.
        found: u64,
    },
    /// The arguments could not be decoded.
    #[error("cannot decode the arguments: {0}")]
    DecodeArgs(CodecError),
    /// The result could not be encoded.
    #[error("cannot encode the result: {0}")]
    EncodeResult(CodecError),
    /// The task panicked; the message is the panic payload.
    #[error("the task panicked: {0}")]
    Panicked(String),
}

/// All tasks registered in this program.
#[derive(Debug)]
pub struct Registry {
    by_id: HashMap<&'static str, &'static TaskEntry>,
    duplicates: Vec<&'static str>,
    hooks: Option<&'static ProgramHooks>,
}

/// The registry of this process, built on first use.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut by_id = HashMap::new();
        let mut duplicates = Vec::new();
        for entry in TASKS.iter() {
            if by_id.insert(entry.id, entry).is_some() {
                crate::warn!(
                    task = entry.id,
                    "task id registered twice; it cannot be invoked by id"
                );
                duplicates.push(entry.id);
            }
        }
        let hooks = by_id.values().find_map(|entry| entry.hooks);
        Registry {
            by_id,
            duplicates,
            hooks,
        }
    })
}

impl Registry {
    /// The entry for `id`, if registered.
    pub fn get(&self, id: &str) -> Option<&'static TaskEntry> {
        self.by_id.get(id).copied()
    }

    /// The network half's entry points, if the program links it (it does whenever it has a
    /// `#[pp::parallel]` task).
    pub fn hooks(&self) -> Option<&'static ProgramHooks> {
        self.hooks
    }

    /// Number of registered tasks.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Ids of all registered tasks, sorted.
    pub fn ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<_> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// One hash over every id and signature fingerprint: two programs with the same value
    /// can run each other's tasks.
    pub fn fingerprint(&self) -> u64 {
        let mut text = String::new();
        for id in self.ids() {
            let entry = self.by_id[id];
            text.push_str(id);
            text.push_str(&format!("={:016x};", entry.fingerprint));
        }
        crate::task::fnv1a64(text.as_bytes())
    }

    /// Runs task `id` on encoded arguments and returns its encoded result.
    ///
    /// `fingerprint`, when given, must match the registered signature. A panic in the task
    /// is caught and returned as [`InvokeError::Panicked`].
    ///
    /// # Errors
    /// See [`InvokeError`].
    pub fn invoke(
        &self,
        id: &str,
        fingerprint: Option<u64>,
        args: &[u8],
    ) -> Result<Vec<u8>, InvokeError> {
        if self.duplicates.contains(&id) {
            return Err(InvokeError::DuplicateTask(id.to_owned()));
        }
        let entry = self
            .get(id)
            .ok_or_else(|| InvokeError::UnknownTask(id.to_owned()))?;
        if let Some(expected) = fingerprint {
            if expected != entry.fingerprint {
                return Err(InvokeError::FingerprintMismatch {
                    id: id.to_owned(),
                    expected,
                    found: entry.fingerprint,
                });
            }
        }
        catch_unwind(AssertUnwindSafe(|| (entry.invoke)(args)))
            .unwrap_or_else(|payload| Err(InvokeError::Panicked(panic_message(payload.as_ref()))))
    }
}

/// Decodes arguments, calls `task`, encodes its result: the body of every [`InvokeFn`].
///
/// # Errors
/// [`InvokeError::DecodeArgs`] or [`InvokeError::EncodeResult`]; panics propagate.
pub fn invoke_typed<F: TaskFn>(task: Task<F>, args: &[u8]) -> Result<Vec<u8>, InvokeError> {
    let args: F::Args = codec::decode_payload(args).map_err(InvokeError::DecodeArgs)?;
    let output = task.function().call(args);
    codec::encode_payload(&output).map_err(InvokeError::EncodeResult)
}
