//! `deploy/` checked against the real `ppserver`: the container file, the Kubernetes
//! manifests and the systemd unit name only flags that `ppserver --help` lists and
//! variables that the code reads (renaming either breaks this test), their parts agree
//! with each other (ports, paths, names), and each one's command line, started here as
//! it would be deployed (paths moved into a temporary directory, the port picked free),
//! serves jobs without a warning.
//!
//! Tools are used where present and skipped with a line on stderr where not (`.ci/run`
//! installs them): `systemd-analyze` verifies the unit and rates its exposure, Python's
//! `yaml` parses every manifest, and systemd, booted as PID 1 of a namespace of the test's
//! own, really starts the unit (as root). No container engine or Kubernetes cluster runs
//! here: the image and the pods are checked through their command lines, and the
//! Kubernetes deployment is played out in network namespaces (as root): node pods, and the
//! client Job finding them through the headless Service's name.

mod support;

#[path = "support/netns.rs"]
mod netns;

#[path = "deploy/container.rs"]
mod container;
#[path = "deploy/kube_cluster.rs"]
mod kube_cluster;
#[path = "deploy/kubernetes.rs"]
mod kubernetes;
#[path = "deploy/manifests.rs"]
mod manifests;
#[path = "deploy/node.rs"]
mod node;
#[path = "deploy/systemd.rs"]
mod systemd;
#[path = "deploy/systemd_boot.rs"]
mod systemd_boot;

/// Keeps the worker hook in this binary, whatever else the linker drops: the deployed
/// nodes run this test binary as their workers.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

/// The job the deployed nodes run.
#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}
