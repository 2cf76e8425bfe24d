//! deploy/kubernetes/*.yaml: every document parses and, where `kubernetes-validate` is
//! installed, meets Kubernetes' own schemas; the parts agree: the headless Service, the
//! StatefulSet's pods (Pod Security "restricted", the Secret made private by the init
//! container, writable volumes where ppserver writes, the image's user), the client Job's
//! `PP_SERVERS=dns:` entry naming that Service; and the node pod's command line serves
//! jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::container::{instructions, last, node_arguments};
use crate::manifests::{documents, mount_of, Doc, FILES};
use crate::node::{check_flags, check_variable, dir_mode, flag_value, relocate, relocate_path};
use crate::node::{lint, write_secret, Deployed, RunAs};
use crate::support::temp_dir;

/// The pod template in a StatefulSet's or a Job's document.
const POD: &str = "spec.template.spec";

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

/// The node pod as the checks found it.
pub(crate) struct NodePod {
    /// ppserver's arguments: the image's entry point's, then the pod's.
    pub(crate) args: Vec<String>,
    /// `mountPath` -> (volume, read-only) of the ppserver container.
    pub(crate) mounts: BTreeMap<String, (String, bool)>,
    /// The ppserver container's environment.
    pub(crate) env: BTreeMap<String, String>,
    /// Where the node reads its secret (PP_SECRET_FILE).
    pub(crate) secret_file: String,
    /// The Secret the init container copies it from.
    secret_name: String,
}

impl NodePod {
    /// The pod's volumes as directories under `root`, made here: `mountPath` -> its
    /// directory, for [`relocate`] and [`relocate_path`].
    pub(crate) fn volumes_in(&self, root: &Path) -> Vec<(String, PathBuf)> {
        let moves: Vec<(String, PathBuf)> = self
            .mounts
            .iter()
            .map(|(at, (volume, _))| (at.clone(), root.join(volume)))
            .collect();
        for (_, dir) in &moves {
            std::fs::create_dir_all(dir).expect("a volume");
        }
        moves
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
    let (node, _) = checked(&docs);
    let nodes = docs.iter().find(|d| d.get("kind") == Some("StatefulSet"));
    start_like_the_pod(nodes.expect("checked"), &node);
}

/// The manifests checked: the node pod, and the client Job's environment.
pub(crate) fn checked(docs: &[Doc]) -> (NodePod, BTreeMap<String, String>) {
    let kinds: Vec<String> = docs.iter().map(Doc::id).collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d.get("kind") == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    let namespace = find("Namespace").must("metadata.name");
    for doc in docs.iter().filter(|d| d.get("kind") != Some("Namespace")) {
        let id = doc.id();
        assert_eq!(
            doc.get("metadata.namespace"),
            Some(namespace),
            "{id} is elsewhere"
        );
        assert!(doc.get("apiVersion").is_some(), "{id} has no apiVersion");
    }
    let service = find("Service");
    let node = check_nodes(service, find("StatefulSet"));
    let client = check_client(
        find("Job"),
        find("NetworkPolicy"),
        service,
        namespace,
        &node,
    );
    (node, client)
}

/// Checks the headless Service and the StatefulSet's ppserver container and its secret.
fn check_nodes(service: &Doc, nodes: &Doc) -> NodePod {
    assert_eq!(
        service.get("spec.clusterIP"),
        Some("None"),
        "the Service is not headless"
    );
    let port = service.must("spec.ports[0].port");
    assert_eq!(
        nodes.get("spec.serviceName"),
        Some(service.must("metadata.name"))
    );
    for (key, value) in labels(service, "spec.selector.") {
        let label = nodes.get(&format!("spec.template.metadata.labels.{key}"));
        assert_eq!(label, Some(value.as_str()), "the Service selects no node");
    }
    check_pod(nodes, POD);

    // The node container: the image's entry point, then the pod's args.
    let node = format!("{POD}.containers[0]");
    assert_eq!(nodes.get(&format!("{node}.name")), Some("ppserver"));
    let (fixed, _) = node_arguments();
    let args: Vec<String> = fixed
        .into_iter()
        .chain(nodes.list(&format!("{node}.args")))
        .collect();
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
        let path = flag_value(&args, flag).expect("set by the image");
        let writable = mounts
            .iter()
            .any(|(at, (_, ro))| !ro && path.starts_with(&format!("{at}/")));
        assert!(
            writable,
            "{flag} {path} is on the read-only root file system"
        );
    }
    // Ready while the node answers on its port (a pid file left by a killed node would
    // pass before the new one listens).
    let probed = nodes.get(&format!("{node}.readinessProbe.tcpSocket.port"));
    let port_name = nodes.get(&format!("{node}.ports[0].name"));
    assert!(
        probed.is_some() && (probed == port_name || probed == Some(port)),
        "the readiness probe is not a TCP probe of the node's port: {probed:?}"
    );
    assert!(
        nodes
            .list(&format!("{node}.readinessProbe.exec.command"))
            .is_empty(),
        "an exec readiness probe besides the TCP one"
    );

    // The secret: mounted from the Secret, copied mode 0400 by the init container, into
    // memory, to where the node's PP_SECRET_FILE points.
    let env = nodes.env(&node);
    let secret_file = env
        .get("PP_SECRET_FILE")
        .expect("the node's PP_SECRET_FILE")
        .clone();
    let init = format!("{POD}.initContainers[0]");
    let copy = nodes.list(&format!("{init}.command"));
    assert_eq!(copy[..3], ["install", "-m", "0400"], "the copy is private");
    assert_eq!(
        copy[4], secret_file,
        "the init container writes the node's secret file"
    );
    let source = nodes.volume(POD, &mount_of(&nodes.mounts(&init), &copy[3]));
    let secret_name = nodes
        .must(&format!("{source}.secret.secretName"))
        .to_owned();
    let copy_volume = mount_of(&nodes.mounts(&init), &copy[4]);
    assert_eq!(
        mount_of(&mounts, &secret_file),
        copy_volume,
        "the node reads the copy"
    );
    let medium = format!("{}.emptyDir.medium", nodes.volume(POD, &copy_volume));
    assert_eq!(nodes.get(&medium), Some("Memory"), "the copy is in memory");
    NodePod {
        args,
        mounts,
        env,
        secret_file,
        secret_name,
    }
}

/// Checks the client Job: every node through the Service's DNS name, the nodes' Secret,
/// and the labels the nodes' NetworkPolicy lets in. Returns the client's environment.
fn check_client(
    job: &Doc,
    policy: &Doc,
    service: &Doc,
    namespace: &str,
    node: &NodePod,
) -> BTreeMap<String, String> {
    check_pod(job, POD);
    let client = format!("{POD}.containers[0]");
    let env = job.env(&client);
    let expected = format!(
        "dns:{}.{namespace}.svc.cluster.local:{}",
        service.must("metadata.name"),
        service.must("spec.ports[0].port")
    );
    assert_eq!(env.get("PP_SERVERS"), Some(&expected));
    let secret = env
        .get("PP_SECRET_FILE")
        .expect("the client's PP_SECRET_FILE");
    let volume = job.volume(POD, &mount_of(&job.mounts(&client), secret));
    let name = job.get(&format!("{volume}.secret.secretName"));
    assert_eq!(
        name,
        Some(node.secret_name.as_str()),
        "not the nodes' Secret"
    );
    for (key, value) in labels(policy, "spec.ingress[0].from[0].podSelector.matchLabels.") {
        let label = job.get(&format!("spec.template.metadata.labels.{key}"));
        assert_eq!(
            label,
            Some(value.as_str()),
            "the policy shuts the client out"
        );
    }
    env
}

/// The fields under `prefix`, by the rest of their path (the labels of a selector).
fn labels(doc: &Doc, prefix: &str) -> Vec<(String, String)> {
    doc.fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
        .collect()
}

/// Starts the node as the pod would and gives it jobs: each mount a directory of its own,
/// open to all (an emptyDir's mode 0777); as the pod's user, which is the image's (when
/// the test is root); the secret is the init container's copy, the user's own.
fn start_like_the_pod(nodes: &Doc, node: &NodePod) {
    let root = temp_dir("kubernetes");
    let id = |key: &str| -> u32 {
        let key = format!("{POD}.securityContext.{key}");
        nodes.must(&key).parse().expect("a numeric id")
    };
    let pod_user = format!("{}:{}", id("runAsUser"), id("runAsGroup"));
    let image_user = last(&instructions(), "USER");
    assert_eq!(
        pod_user, image_user,
        "the pod runs as another user than the image's"
    );
    let run_as = RunAs::new(id("runAsUser"), id("runAsGroup"), &root.join("bin"));
    let moves = node.volumes_in(&root);
    for (_, dir) in &moves {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let secret_path = relocate_path(&node.secret_file, &moves);
    write_secret(secret_path.as_ref(), 0o400);
    if let Some(run_as) = &run_as {
        run_as.own(secret_path.as_ref());
    }
    let env: Vec<(String, String)> = node
        .env
        .iter()
        .map(|(k, v)| (k.clone(), relocate_path(v, &moves)))
        .collect();
    let deployed = Deployed::start_as(&relocate(&node.args, &moves), &env, run_as.as_ref());
    if let Some(run_as) = &run_as {
        assert_eq!(
            deployed.uid(),
            run_as.uid,
            "the node runs as the deployment's user"
        );
    }
    deployed.serves_jobs();
    let cache = flag_value(&node.args, "--cache-dir").expect("set by the image");
    let cache = relocate_path(cache, &moves);
    assert_eq!(dir_mode(cache.as_ref()), 0o700, "the cache is private");
    deployed.stop_cleanly();
    let _ = std::fs::remove_dir_all(&root);
}
