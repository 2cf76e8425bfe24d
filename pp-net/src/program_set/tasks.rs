//! Whether a build of the program for another target was built from the same source: its
//! task list (from its task section) against this program's registry. The first task that
//! differs is named, so the user knows which build is stale.

use std::collections::BTreeMap;

/// How a build's tasks differ from this program's, at the first task (in id order) that
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskDifference {
    /// Both have the task, with other signatures.
    Signature(String),
    /// This program has the task, the build lacks it.
    Missing(String),
    /// The build has a task this program lacks.
    Extra(String),
}

impl std::fmt::Display for TaskDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskDifference::Signature(id) => write!(f, "task `{id}` has another signature"),
            TaskDifference::Missing(id) => write!(f, "task `{id}` is missing from it"),
            TaskDifference::Extra(id) => {
                write!(f, "it has a task `{id}` that this program lacks")
            }
        }
    }
}

/// The first difference between `ours` and `theirs` (`(id, fingerprint)` lists), if any.
pub(crate) fn first_difference(
    ours: &[(String, u64)],
    theirs: &[(String, u64)],
) -> Option<TaskDifference> {
    let ours: BTreeMap<&str, u64> = ours.iter().map(|(id, fp)| (id.as_str(), *fp)).collect();
    let theirs: BTreeMap<&str, u64> = theirs.iter().map(|(id, fp)| (id.as_str(), *fp)).collect();
    let mut ids: Vec<&str> = ours.keys().chain(theirs.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .find_map(|id| match (ours.get(id), theirs.get(id)) {
            (Some(a), Some(b)) if a != b => Some(TaskDifference::Signature(id.to_owned())),
            (Some(_), None) => Some(TaskDifference::Missing(id.to_owned())),
            (None, Some(_)) => Some(TaskDifference::Extra(id.to_owned())),
            _ => None,
        })
}

/// This program's tasks as `(id, fingerprint)`.
pub(crate) fn our_tasks() -> Vec<(String, u64)> {
    let registry = pp_runtime::registry();
    registry
        .ids()
        .into_iter()
        .filter_map(|id| registry.get(id).map(|e| (id.to_owned(), e.fingerprint())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, u64)]) -> Vec<(String, u64)> {
        items
            .iter()
            .map(|(id, fp)| ((*id).to_owned(), *fp))
            .collect()
    }

    #[test]
    fn the_first_differing_task_is_named() {
        let ours = list(&[("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(
            first_difference(&ours, &list(&[("c", 3), ("b", 2), ("a", 1)])),
            None
        );
        assert_eq!(
            first_difference(&ours, &list(&[("a", 1), ("b", 9), ("c", 3)])),
            Some(TaskDifference::Signature("b".into()))
        );
        assert_eq!(
            first_difference(&ours, &list(&[("a", 1), ("c", 3)])),
            Some(TaskDifference::Missing("b".into()))
        );
        assert_eq!(
            first_difference(&ours, &list(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)])),
            Some(TaskDifference::Extra("d".into()))
        );
        assert_eq!(
            TaskDifference::Signature("m::f".into()).to_string(),
            "task `m::f` has another signature"
        );
    }
}
