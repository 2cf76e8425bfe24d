//! `ppserver`: the node daemon of a pp cluster.
//!
//! Start it on each machine that should run jobs, with the cluster's shared secret:
//!
//! ```text
//! PP_SECRET='a long random secret' ppserver            # port 60000, one worker per core
//! ppserver --secret-file ~/.pp-secret -p 60001 -w 4 -t 3600
//! ```
//! Clients set `PP_SERVERS=host:port,...` and the same `PP_SECRET`. With `--join HOST:PORT`
//! the node dials a client that listens (`PP_LISTEN`) instead, and opens no port of its own
//! unless `-p` or `-i` is given. With `-a` the node
//! also announces itself by UDP broadcast on the discovery port (60000) and answers
//! probes, so that clients with `PP_SERVERS=*` find it. The node logs to
//! standard error, prints `ppserver listening on ADDR with N workers` once it accepts
//! connections, stops cleanly on SIGTERM or Ctrl-C and logs its statistics on SIGUSR1.
//!
//! The flags are declared in [`options`] (clap prints `--help` from them), the kinds of
//! value they take are parsed in [`values`]; the secret is read and checked in [`secret`],
//! and [`traces`] keeps it inside the process; this file turns them into a [`NodeConfig`]
//! and serves.

mod options;
mod secret;
mod traces;
mod values;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use pp_net::discovery::DiscoveryConfig;
use pp_net::node::{self, NodeConfig};
use pp_net::Secret;

use crate::options::Options;

fn main() -> ExitCode {
    // Help, version and a mistake on the command line end here (status 0, 0 and 2).
    let mut options = Options::from_command_line();
    // A node's workers speak to it on their standard output, which only Unix lets them
    // move aside from what jobs print; a Windows program is a client of Unix nodes.
    if cfg!(not(unix)) {
        eprintln!(
            "ppserver: nodes run on Unix only (Linux, macOS, the BSDs); on Windows, run the \
             program as a client of such nodes"
        );
        return ExitCode::FAILURE;
    }
    // Before the secret is read, so that it never is in a dumpable process; and while the
    // process has one thread, as clearing the environment needs.
    let mut warnings = Vec::new();
    if let Err(e) = traces::forbid_core_dumps() {
        warnings.push(format!("cannot make the node non-dumpable: {e}"));
    }
    let read = secret::read(&mut options);
    if let Err(e) = traces::clear_environment() {
        warnings.push(format!(
            "cannot overwrite PP_SECRET in the initial environment: {e}"
        ));
    }
    traces::scrub_stack();
    let secret = match read {
        Ok(secret) => {
            warnings.extend(secret.warnings);
            secret.secret
        }
        Err(e) => {
            eprintln!("ppserver: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match config(&options, secret) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ppserver: {message}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(options.level)
        .init();
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    match run(config, options.pid_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ppserver: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: NodeConfig, pid_file: Option<PathBuf>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ppserver")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let workers = config.workers;
    let opens_port = config.listening;
    let joining = config.join.clone();
    let result = runtime.block_on(async {
        let (ready, listening) = tokio::sync::oneshot::channel();
        let node = tokio::spawn(node::serve(config, Some(ready)));
        if let Ok(addr) = listening.await {
            if let Some(path) = &pid_file {
                if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
                    tracing::warn!("cannot write the pid file {}: {e}", path.display());
                }
            }
            if opens_port {
                eprintln!("ppserver listening on {addr} with {workers} workers");
            }
            for client in &joining {
                eprintln!("ppserver joining {client} with {workers} workers");
            }
        }
        match node.await {
            Ok(result) => result.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(format!("the node failed: {e}")),
        }
    });
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The node's configuration: its defaults, with what the flags say.
fn config(options: &Options, secret: Secret) -> Result<NodeConfig, String> {
    let mut config = NodeConfig::new(secret);
    let limits = &options.limits;
    config.listen = listen_address(&options.interface, options.port)?;
    if let Some(workers) = options.workers {
        config.workers = workers;
    }
    config.idle_timeout = options.timeout.map(|timeout| timeout.0);
    config.cache_dir = options.cache_dir.clone();
    if options.autodiscovery {
        let mut discovery = DiscoveryConfig::default();
        discovery.port = options.discovery_port;
        discovery.broadcast = options.broadcast;
        config.discovery = Some(discovery);
    }
    config.max_upload = limits.max_upload.0;
    config.max_connections = limits.max_connections;
    config.channel.handshake_timeout = limits.handshake_timeout.0;
    config.setup_timeout = limits.setup_timeout.0;
    config.channel.write_timeout = Some(limits.write_timeout.0);
    // At most 1G (its parser's bound), so it fits.
    config.channel.max_message = limits.max_message.0 as u32;
    config.max_cache_bytes = limits.max_cache.0;
    config.max_queued_jobs = limits.max_jobs_per_client;
    config.worker_memory = limits.worker_memory.map(|size| size.0);
    config.join = options.join.clone();
    // A node that joins its clients opens a port only when asked to.
    config.listening = options.join.is_empty() || options.listen_given;
    if options.autodiscovery && !config.listening {
        return Err(
            "-a announces the port the node listens on: with --join, give -p (or -i) too".into(),
        );
    }
    Ok(config)
}

fn listen_address(interface: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = interface.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (interface, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the interface {interface}: {e}"))?
        .next()
        .ok_or_else(|| format!("the interface {interface} has no address"))
}

#[cfg(test)]
mod tests;
