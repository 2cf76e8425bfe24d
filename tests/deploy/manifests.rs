//! The Kubernetes manifests as the tests read them: each YAML document parsed by Python's
//! `yaml.safe_load_all` (as strict as Kubernetes' own reader about syntax) and flattened
//! into `path=value` lines, so that a test can look fields up without a YAML crate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::node::repo;

/// The manifests, in deploy/kubernetes/.
pub(crate) const FILES: [&str; 3] = ["namespace.yaml", "nodes.yaml", "client-job.yaml"];

/// Prints each document as `--- FILE` and one `path=value` line per scalar, paths as
/// `spec.template.spec.containers[0].args[1]`.
const FLATTEN: &str = r#"
import sys, yaml
def flat(prefix, value, out):
    if isinstance(value, dict):
        for key, item in value.items():
            flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            flat(f"{prefix}[{i}]", item, out)
    elif isinstance(value, bool):
        out.append(f"{prefix}={'true' if value else 'false'}")
    else:
        out.append(f"{prefix}={value}".replace("\n", "\\n"))
for path in sys.argv[1:]:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                sys.exit(f"{path}: a document that is not a mapping")
            print(f"--- {path}")
            out = []
            flat("", doc, out)
            print("\n".join(out))
"#;

/// One YAML document, flattened.
pub(crate) struct Doc {
    /// Every scalar, by its path.
    pub(crate) fields: BTreeMap<String, String>,
}

impl Doc {
    /// The scalar at `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The scalar at `key`, which must be there.
    pub(crate) fn must(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key} in {}", self.id()))
    }

    /// `Kind/name`, for messages.
    pub(crate) fn id(&self) -> String {
        format!(
            "{}/{}",
            self.get("kind").unwrap_or("?"),
            self.get("metadata.name").unwrap_or("?")
        )
    }

    /// The prefixes `key[0]`, `key[1]`, ... of a list.
    pub(crate) fn items(&self, key: &str) -> Vec<String> {
        (0..)
            .map(|i| format!("{key}[{i}]"))
            .take_while(|item| {
                self.fields
                    .range(item.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(item.as_str()))
            })
            .collect()
    }

    /// The scalars of a list of scalars.
    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        self.items(key)
            .iter()
            .filter_map(|item| self.get(item))
            .map(str::to_owned)
            .collect()
    }

    /// `NAME` -> `value` of a container's `env`.
    pub(crate) fn env(&self, container: &str) -> BTreeMap<String, String> {
        let items = self.items(&format!("{container}.env"));
        items
            .iter()
            .map(|e| {
                (
                    self.must(&format!("{e}.name")).into(),
                    self.must(&format!("{e}.value")).into(),
                )
            })
            .collect()
    }

    /// `mountPath` -> (volume, read-only) of a container's mounts.
    pub(crate) fn mounts(&self, container: &str) -> BTreeMap<String, (String, bool)> {
        let items = self.items(&format!("{container}.volumeMounts"));
        items
            .iter()
            .map(|m| {
                let read_only = self.get(&format!("{m}.readOnly")) == Some("true");
                (
                    self.must(&format!("{m}.mountPath")).into(),
                    (self.must(&format!("{m}.name")).into(), read_only),
                )
            })
            .collect()
    }

    /// The pod volume `name`'s prefix.
    pub(crate) fn volume(&self, pod: &str, name: &str) -> String {
        let items = self.items(&format!("{pod}.volumes"));
        items
            .into_iter()
            .find(|v| self.get(&format!("{v}.name")) == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    }
}

/// The documents of every manifest; `None` (with a line on stderr) without Python's yaml.
pub(crate) fn documents() -> Option<Vec<Doc>> {
    let dir = repo().join("deploy/kubernetes");
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    let output = match Command::new("python3")
        .arg("-c")
        .arg(FLATTEN)
        .args(&paths)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            eprintln!("skipped: python3 cannot run ({e}); .ci/run installs python3-yaml");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'yaml'") {
        eprintln!("skipped: Python has no yaml module; .ci/run installs python3-yaml");
        return None;
    }
    assert!(
        output.status.success(),
        "a manifest does not parse:\n{stderr}"
    );
    let mut docs = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if line.starts_with("--- ") {
            docs.push(Doc {
                fields: BTreeMap::new(),
            });
        } else if let (Some(doc), Some((key, value))) = (docs.last_mut(), line.split_once('=')) {
            doc.fields.insert(key.to_owned(), value.to_owned());
        }
    }
    Some(docs)
}

/// The volume mounted where `path` is (a mount path that is `path` or its parent).
pub(crate) fn mount_of(mounts: &BTreeMap<String, (String, bool)>, path: &str) -> String {
    mounts
        .iter()
        .find(|(at, _)| path == at.as_str() || path.starts_with(&format!("{at}/")))
        .map(|(_, (volume, _))| volume.clone())
        .unwrap_or_else(|| panic!("nothing is mounted where {path} is ({mounts:?})"))
}
