//! A private network for discovery tests and benchmarks: network namespaces joined by a
//! bridge, all created here and deleted on drop (even after a failure).
//!
//! Host `i` of a lab (counting from 0) is `10.77.0.{i+1}/24` on its `eth0`, a veth whose
//! other end is a port of the bridge `br0` in a namespace of its own; each host has a
//! default route on `eth0` so that `255.255.255.255` reaches the bridge, unless the lab is
//! built [without one](Lab::without_default_route), as on many private cluster networks.
//! Nothing is added to the namespace the test runs in: no address, route or broadcast
//! leaves the lab.
//!
//! Needs root (or `CAP_SYS_ADMIN`) and `ip` from iproute2; [`Lab::unavailable`] says
//! plainly when either is missing, so that the caller can skip.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The namespaces of one lab; deleted on drop.
pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
    created: Vec<String>,
    /// Whether each host gets a default route on `eth0`.
    default_route: bool,
}

/// Runs `ip args`, returning its error output on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Lab {
    /// Why labs cannot be built here, if they cannot. Checked once per process, so that
    /// tests running at once do not race for the probe namespace.
    pub fn unavailable() -> Option<String> {
        static CHECKED: OnceLock<Option<String>> = OnceLock::new();
        CHECKED.get_or_init(Lab::check).clone()
    }

    fn check() -> Option<String> {
        if Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some("`ip` (iproute2) is not installed".into());
        }
        if !is_root() {
            return Some("network namespaces need root".into());
        }
        // Root in a container may still lack the capability.
        let probe = format!("ppd-{}-probe", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(()) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(e) => Some(format!("cannot create a network namespace: {e}")),
        }
    }

    /// Builds a lab with one host per name in `hosts`, named `tag` among this process's
    /// labs.
    ///
    /// # Panics
    /// When a step fails (the namespaces made so far are deleted).
    pub fn new(tag: &str, hosts: &[&str]) -> Lab {
        Lab::build_with(tag, hosts, true)
    }

    /// The same lab with no default route on its hosts: only the subnet's own route, so a
    /// datagram to `255.255.255.255` fails with "network unreachable".
    ///
    /// # Panics
    /// When a step fails (the namespaces made so far are deleted).
    pub fn without_default_route(tag: &str, hosts: &[&str]) -> Lab {
        Lab::build_with(tag, hosts, false)
    }

    fn build_with(tag: &str, hosts: &[&str], default_route: bool) -> Lab {
        let mut lab = Lab {
            prefix: format!("ppd-{}-{tag}", std::process::id()),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            created: Vec::new(),
            default_route,
        };
        if let Err(e) = lab.build() {
            panic!("cannot build the network lab: {e}");
        }
        lab
    }

    fn build(&mut self) -> Result<(), String> {
        let switch = self.switch();
        self.add_namespace(&switch)?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..self.hosts.len() {
            let ns = self.ns(&self.hosts[i].clone());
            self.add_namespace(&ns)?;
            let port = format!("p{i}");
            let cidr = format!("{}/24", Ipv4Addr::new(10, 77, 0, i as u8 + 1));
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &switch, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "addr", "add", &cidr, "brd", "+", "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            if self.default_route {
                ip(&["-n", &ns, "route", "add", "default", "dev", "eth0"])?;
            }
        }
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// The namespace of the bridge.
    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The address of `host`.
    pub fn ip(&self, host: &str) -> Ipv4Addr {
        let i = self
            .hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host {host} in the lab"));
        Ipv4Addr::new(10, 77, 0, i as u8 + 1)
    }

    /// The lab's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 255)
    }

    /// `program` run in `host`'s namespace (`ip netns exec` execs it: same process id).
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host), program]);
        command
    }

    /// `program` run in the namespace of the lab's bridge: loopback and a bridge with no
    /// address, so no IPv4 route and no broadcast-capable interface with an address.
    pub fn isolated_command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.switch(), program]);
        command
    }

    /// Moves the calling thread into `host`'s namespace: sockets it opens, and threads it
    /// starts, live there. Call it on a thread of its own.
    ///
    /// # Panics
    /// When the namespace cannot be entered.
    pub fn enter(&self, host: &str) {
        enter_namespace(&self.ns(host));
    }
}

/// `/etc/netns/NS/` of a lab host, made for the test and removed on drop: `ip netns exec`
/// (so [`Lab::command`]) puts each file there in place of the one in `/etc` (a `hosts`
/// file, say).
pub struct HostEtc(PathBuf);

impl HostEtc {
    /// Writes `text` as the file `name` (`hosts`).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for HostEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Lab {
    /// A fresh `/etc/netns/NS/` for `host` (see [`HostEtc`]).
    ///
    /// # Panics
    /// When it cannot be made.
    pub fn etc(&self, host: &str) -> HostEtc {
        let dir = Path::new("/etc/netns").join(self.ns(host));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        HostEtc(dir)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces (and the veth peers with them).
        for name in self.created.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Moves the calling thread into namespace `name` (see [`Lab::enter`]).
fn enter_namespace(name: &str) {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    // SAFETY: setns only reads the descriptor, which stays open for the call; it changes
    // the network namespace of this thread alone.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "cannot enter {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// Two namespaces, a client's and a node's, joined by a veth pair, where only the node can
/// open connections: as a node behind NAT sees its client, without NAT or a firewall.
///
/// The client's namespace has `10.78.0.1/32` and no route to the node's `10.78.0.2/32`,
/// except in a table used only for TCP packets from port [`OneWay::CLIENT_PORT`] (a policy
/// rule on the source port): so the client can answer connections to that port, and a
/// connection it opens to the node fails at once ("network unreachable"). The node's
/// namespace routes to the client's address. Deleted on drop.
pub struct OneWay {
    client: String,
    node: String,
    created: Vec<String>,
}

impl OneWay {
    /// The port the client listens on, the only one it can answer from.
    pub const CLIENT_PORT: u16 = 7000;

    /// Builds the two namespaces, named after `tag` and this process.
    ///
    /// # Panics
    /// When a step fails (the namespaces made so far are deleted).
    pub fn new(tag: &str) -> OneWay {
        let prefix = format!("ppj-{}-{tag}", std::process::id());
        let mut net = OneWay {
            client: format!("{prefix}-c"),
            node: format!("{prefix}-n"),
            created: Vec::new(),
        };
        if let Err(e) = net.build() {
            panic!("cannot build the one-way network: {e}");
        }
        net
    }

    fn build(&mut self) -> Result<(), String> {
        let (c, n) = (self.client.clone(), self.node.clone());
        for ns in [&c, &n] {
            ip(&["netns", "add", ns])?;
            self.created.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "n0", "netns", &n,
        ])?;
        let port = Self::CLIENT_PORT.to_string();
        ip(&["-n", &c, "addr", "add", "10.78.0.1/32", "dev", "c0"])?;
        ip(&["-n", &c, "link", "set", "c0", "up"])?;
        ip(&["-n", &n, "addr", "add", "10.78.0.2/32", "dev", "n0"])?;
        ip(&["-n", &n, "link", "set", "n0", "up"])?;
        ip(&["-n", &n, "route", "add", "10.78.0.1/32", "dev", "n0"])?;
        ip(&[
            "-n",
            &c,
            "route",
            "add",
            "10.78.0.2/32",
            "dev",
            "c0",
            "table",
            "100",
        ])?;
        ip(&[
            "-n", &c, "rule", "add", "pref", "100", "ipproto", "tcp", "sport", &port, "table",
            "100",
        ])
    }

    /// The client's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, 0, 1)
    }

    /// The node's address.
    pub fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, 0, 2)
    }

    /// `program` run in the node's namespace.
    pub fn node_command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.node, program]);
        command
    }

    /// Moves the calling thread into the client's namespace (see [`Lab::enter`]).
    pub fn enter_client(&self) {
        enter_namespace(&self.client);
    }
}

impl Drop for OneWay {
    fn drop(&mut self) {
        for name in self.created.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
