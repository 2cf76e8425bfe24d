//! deploy/kubernetes/*.yaml: every document parses (Python's `yaml.safe_load_all`, as
//! strict as Kubernetes' own reader about syntax), and the parts agree: the headless
//! Service, the StatefulSet's pods (non-root, read-only root file system, the Secret made
//! private by the init container, writable volumes where ppserver writes), the client
//! Job's `PP_SERVERS=dns:` entry naming that Service; and the node pod's command line
//! serves jobs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::container::node_arguments;
use crate::node::{check_flags, check_variable, dir_mode, flag_value, relocate, relocate_path};
use crate::node::{lint, repo, write_secret, Deployed, RunAs};
use crate::support::temp_dir;

const FILES: [&str; 3] = ["namespace.yaml", "nodes.yaml", "client-job.yaml"];

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
struct Doc {
    fields: BTreeMap<String, String>,
}

impl Doc {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    fn must(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key} in {}", self.id()))
    }

    fn id(&self) -> String {
        format!(
            "{}/{}",
            self.get("kind").unwrap_or("?"),
            self.get("metadata.name").unwrap_or("?")
        )
    }

    /// The prefixes `key[0]`, `key[1]`, ... of a list.
    fn items(&self, key: &str) -> Vec<String> {
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
    fn list(&self, key: &str) -> Vec<String> {
        self.items(key)
            .iter()
            .filter_map(|item| self.get(item))
            .map(str::to_owned)
            .collect()
    }

    /// `NAME` -> `value` of a container's `env`.
    fn env(&self, container: &str) -> BTreeMap<String, String> {
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
    fn mounts(&self, container: &str) -> BTreeMap<String, (String, bool)> {
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
    fn volume(&self, pod: &str, name: &str) -> String {
        let items = self.items(&format!("{pod}.volumes"));
        items
            .into_iter()
            .find(|v| self.get(&format!("{v}.name")) == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    }
}

/// The documents of every manifest; `None` (with a line on stderr) without Python's yaml.
fn documents() -> Option<Vec<Doc>> {
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

/// The volume kinds Pod Security "restricted" (the namespace's label) allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Asserts what Pod Security "restricted" and the deployment ask of a pod template and
/// every container in it.
fn check_pod(doc: &Doc, pod: &str) {
    let context = |key: &str| doc.get(&format!("{pod}.securityContext.{key}"));
    assert_eq!(context("runAsNonRoot"), Some("true"), "{}", doc.id());
    assert_eq!(
        context("seccompProfile.type"),
        Some("RuntimeDefault"),
        "{}",
        doc.id()
    );
    for volume in doc.items(&format!("{pod}.volumes")) {
        let allowed = RESTRICTED_VOLUMES.iter().any(|kind| {
            doc.fields
                .keys()
                .any(|k| k.starts_with(&format!("{volume}.{kind}")))
        });
        assert!(
            allowed,
            "{}: {volume} is not allowed by \"restricted\"",
            doc.id()
        );
    }
    for container in doc
        .items(&format!("{pod}.initContainers"))
        .into_iter()
        .chain(doc.items(&format!("{pod}.containers")))
    {
        let field = |key: &str| {
            doc.get(&format!("{container}.{key}"))
                .unwrap_or("")
                .to_owned()
        };
        let what = format!("{} {}", doc.id(), field("name"));
        assert_eq!(
            field("securityContext.readOnlyRootFilesystem"),
            "true",
            "{what}"
        );
        assert_eq!(
            field("securityContext.allowPrivilegeEscalation"),
            "false",
            "{what}"
        );
        assert_eq!(
            field("securityContext.capabilities.drop[0]"),
            "ALL",
            "{what}"
        );
        assert!(
            !field("resources.limits.memory").is_empty(),
            "{what}: no memory limit"
        );
        for name in doc.env(&container).keys() {
            check_variable(name, &what);
        }
    }
}

#[test]
fn the_manifests_parse_agree_and_the_node_pods_command_line_serves_jobs() {
    let paths: Vec<String> = FILES
        .iter()
        .map(|f| format!("deploy/kubernetes/{f}"))
        .collect();
    let mut validate = vec!["--strict"];
    validate.extend(paths.iter().map(String::as_str));
    lint(
        "kubernetes-validate",
        &validate,
        "`pip install kubernetes-validate` installs it (Kubernetes' own schemas)",
    );
    let Some(docs) = documents() else { return };
    let kinds: Vec<String> = docs.iter().map(Doc::id).collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d.get("kind") == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    let namespace = find("Namespace").must("metadata.name");
    for doc in docs.iter().filter(|d| d.get("kind") != Some("Namespace")) {
        assert_eq!(
            doc.get("metadata.namespace"),
            Some(namespace),
            "{} is elsewhere",
            doc.id()
        );
        assert!(
            doc.get("apiVersion").is_some(),
            "{} has no apiVersion",
            doc.id()
        );
    }

    let service = find("Service");
    assert_eq!(
        service.get("spec.clusterIP"),
        Some("None"),
        "the Service is not headless"
    );
    let port = service.must("spec.ports[0].port");
    let nodes = find("StatefulSet");
    assert_eq!(
        nodes.get("spec.serviceName"),
        Some(service.must("metadata.name"))
    );
    let pod = "spec.template.spec";
    for (key, value) in service
        .fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("spec.selector.")?, v)))
    {
        assert_eq!(
            nodes.get(&format!("spec.template.metadata.labels.{key}")),
            Some(value.as_str()),
            "the Service selects no node"
        );
    }
    check_pod(nodes, pod);

    // The node container: the image's entry point, then the pod's args.
    let node = format!("{pod}.containers[0]");
    assert_eq!(nodes.get(&format!("{node}.name")), Some("ppserver"));
    let pod_args = nodes.list(&format!("{node}.args"));
    let (fixed, _) = node_arguments();
    let args: Vec<String> = fixed.iter().chain(&pod_args).cloned().collect();
    check_flags(&args, "the StatefulSet's ppserver");
    assert_eq!(
        flag_value(&args, "--port"),
        Some(port),
        "--port is not the Service's port"
    );
    assert_eq!(
        nodes.get(&format!("{node}.ports[0].containerPort")),
        Some(port)
    );
    let mounts = nodes.mounts(&node);
    for flag in ["--cache-dir", "--pid-file"] {
        let path = flag_value(&args, flag).unwrap();
        let writable = mounts
            .iter()
            .any(|(at, (_, ro))| !ro && path.starts_with(&format!("{at}/")));
        assert!(
            writable,
            "{flag} {path} is on the read-only root file system"
        );
    }
    let probe = nodes.list(&format!("{node}.readinessProbe.exec.command"));
    assert_eq!(
        probe,
        ["test", "-s", flag_value(&args, "--pid-file").unwrap()],
        "ready once listening"
    );

    // The secret: mounted from the Secret, copied mode 0400 by the init container to
    // where the node's PP_SECRET_FILE points.
    let secret_file = nodes
        .env(&node)
        .remove("PP_SECRET_FILE")
        .expect("the node's PP_SECRET_FILE");
    let init = format!("{pod}.initContainers[0]");
    let copy = nodes.list(&format!("{init}.command"));
    assert_eq!(copy[..3], ["install", "-m", "0400"], "the copy is private");
    assert_eq!(
        copy[4], secret_file,
        "the init container writes the node's secret file"
    );
    let source_volume = mount_of(&nodes.mounts(&init), &copy[3]);
    let secret_name = nodes
        .must(&format!(
            "{}.secret.secretName",
            nodes.volume(pod, &source_volume)
        ))
        .to_owned();
    let copy_volume = mount_of(&nodes.mounts(&init), &copy[4]);
    assert_eq!(
        mount_of(&mounts, &secret_file),
        copy_volume,
        "the node reads the copy"
    );
    assert_eq!(
        nodes.get(&format!(
            "{}.emptyDir.medium",
            nodes.volume(pod, &copy_volume)
        )),
        Some("Memory")
    );

    // The client: every node through the Service's DNS name, the same Secret.
    let job = find("Job");
    check_pod(job, pod);
    let client = format!("{pod}.containers[0]");
    let env = job.env(&client);
    let expected = format!(
        "dns:{}.{namespace}.svc.cluster.local:{port}",
        service.must("metadata.name")
    );
    assert_eq!(env.get("PP_SERVERS"), Some(&expected));
    let job_secret = env
        .get("PP_SECRET_FILE")
        .expect("the client's PP_SECRET_FILE");
    let volume = job.volume(pod, &mount_of(&job.mounts(&client), job_secret));
    assert_eq!(
        job.get(&format!("{volume}.secret.secretName")),
        Some(secret_name.as_str())
    );
    let labels = |doc: &Doc, prefix: &str| -> Vec<(String, String)> {
        doc.fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect()
    };
    let policy = find("NetworkPolicy");
    for (key, value) in labels(policy, "spec.ingress[0].from[0].podSelector.matchLabels.") {
        assert_eq!(
            job.get(&format!("spec.template.metadata.labels.{key}")),
            Some(value.as_str()),
            "the policy shuts the client out"
        );
    }

    // The node as the pod starts it: each mount a directory of its own, open to all (an
    // emptyDir's mode 0777); as the pod's user (when the test is root), which is the
    // image's; the secret is the init container's copy, the user's own.
    let root = temp_dir("kubernetes");
    let id = |key: &str| -> u32 {
        let key = format!("{pod}.securityContext.{key}");
        nodes.must(&key).parse().expect("a numeric id")
    };
    let image_user = crate::container::last(&crate::container::instructions(), "USER");
    let pod_user = format!("{}:{}", id("runAsUser"), id("runAsGroup"));
    assert_eq!(
        pod_user, image_user,
        "the pod runs as another user than the image's"
    );
    let run_as = RunAs::new(id("runAsUser"), id("runAsGroup"), &root.join("bin"));
    let moves: Vec<(String, PathBuf)> = mounts
        .iter()
        .map(|(at, (volume, _))| (at.clone(), root.join(volume)))
        .collect();
    for (_, dir) in &moves {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("a volume");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let secret_path = relocate_path(&secret_file, &moves);
    write_secret(secret_path.as_ref(), 0o400);
    if let Some(run_as) = &run_as {
        run_as.own(secret_path.as_ref());
    }
    let env: Vec<(String, String)> = nodes
        .env(&node)
        .into_iter()
        .map(|(k, v)| (k, relocate_path(&v, &moves)))
        .collect();
    let deployed = Deployed::start_as(&relocate(&args, &moves), &env, run_as.as_ref());
    if let Some(run_as) = &run_as {
        assert_eq!(
            deployed.uid(),
            run_as.uid,
            "the node runs as the deployment's user"
        );
    }
    deployed.serves_jobs();
    let cache = relocate_path(flag_value(&args, "--cache-dir").unwrap(), &moves);
    assert_eq!(dir_mode(cache.as_ref()), 0o700, "the cache is private");
    deployed.stop_cleanly();
    let _ = std::fs::remove_dir_all(&root);
}

/// The volume mounted where `path` is (a mount path that is `path` or its parent).
fn mount_of(mounts: &BTreeMap<String, (String, bool)>, path: &str) -> String {
    mounts
        .iter()
        .find(|(at, _)| path == at.as_str() || path.starts_with(&format!("{at}/")))
        .map(|(_, (volume, _))| volume.clone())
        .unwrap_or_else(|| panic!("nothing is mounted where {path} is ({mounts:?})"))
}
