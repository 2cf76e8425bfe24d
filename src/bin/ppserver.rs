//! `ppserver`: the node daemon of a pp cluster.
//!
//! Start it on each machine that should run jobs, with the cluster's shared secret:
//!
//! ```text
//! PP_SECRET='a long random secret' ppserver            # port 60000, one worker per core
//! ppserver --secret-file ~/.pp-secret -p 60001 -w 4 -t 3600
//! ```
//! Clients set `PP_SERVERS=host:port,...` and the same `PP_SECRET`. With `-a` the node
//! also announces itself by UDP broadcast on the discovery port (60000) and answers
//! probes, so that clients with `PP_SERVERS=*` find it. The node logs to
//! standard error, prints `ppserver listening on ADDR with N workers` once it accepts
//! connections, stops cleanly on SIGTERM or Ctrl-C and logs its statistics on SIGUSR1.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pp_net::discovery::DiscoveryConfig;
use pp_net::node::{self, NodeConfig};
use pp_net::Secret;

const USAGE: &str = "\
usage: ppserver [options]

Runs jobs for pp clients that share its secret.

options:
  -p, --port PORT         port to listen on (default 60000; 0 picks a free port)
  -i, --interface ADDR    address to listen on (default 0.0.0.0)
  -w, --workers N         worker processes per client (default: the number of cores)
  -s, --secret SECRET     the cluster's shared secret (visible to other local users in
                          the process list: prefer --secret-file or PP_SECRET)
      --secret-file PATH  read the secret from a file (trailing newline ignored)
  -t, --timeout SECONDS   exit after SECONDS with no client connected
  -P, --pid-file PATH     write the process id to PATH while running
  -d, --debug [LEVEL]     log level: error, warn, info, debug or trace
                          (default info; -d alone means debug)
      --cache-dir DIR     where uploaded programs are cached (created with mode 0700;
                          default $XDG_CACHE_HOME/pp or ~/.cache/pp)
      --max-upload BYTES  largest program a client may upload (default 512M;
                          suffixes K, M, G are powers of 1024)
  -a, --autodiscovery     announce this node by UDP broadcast and answer the probes
                          of clients with PP_SERVERS=* (no secret is sent)
      --discovery-port PORT
                          UDP port of autodiscovery (default 60000, whatever the
                          job port; 0 picks a free one, for unicast probes only)
  -b, --broadcast ADDR    where announcements go (default 255.255.255.255; a
                          subnet's broadcast address such as 192.168.1.255 also works)
  -h, --help              print this help

limits (see SECURITY.md; sizes take the suffixes K, M, G):
      --max-connections N       connections at once, handshakes included (default 64);
                                past it the oldest connection still in its handshake
                                makes room, or the new one is closed
      --handshake-timeout SECS  time to complete the handshake (default 5)
      --setup-timeout SECS      time for each setup message: hello, each upload chunk
                                (default 30)
      --write-timeout SECS      time a write to a client may make no progress before the
                                client is disconnected (default 60)
      --max-message BYTES       largest message (frame) either way, 64K to 1G
                                (default 64M); also bounds decoding and job results
      --max-cache BYTES         bytes of programs the cache keeps (default 4G)
      --max-jobs-per-client N   jobs a client may have on the node: queued, running or
                                with a result not yet sent (default 4096)
      --worker-memory BYTES     address-space limit of each worker process
                                (default: none); a job past it kills its worker

environment:
  PP_SECRET, PP_SECRET_FILE   the secret, when no option gives it
";

/// Bounds of `--max-message`: room for an upload chunk and a job, and at most what the codec
/// decodes.
const MIN_MESSAGE: u64 = 64 << 10;
const MAX_MESSAGE: u64 = 1 << 30;

const NO_SECRET: &str = "ppserver: no secret given: pass --secret, --secret-file or set \
                         PP_SECRET (every client needs the same secret)";

/// The command line, parsed.
#[derive(Debug, Default)]
struct Options {
    port: Option<u16>,
    interface: Option<String>,
    workers: Option<usize>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    timeout: Option<Duration>,
    pid_file: Option<PathBuf>,
    level: Option<tracing::Level>,
    cache_dir: Option<PathBuf>,
    max_upload: Option<u64>,
    autodiscovery: bool,
    discovery_port: Option<u16>,
    broadcast: Option<IpAddr>,
    max_connections: Option<usize>,
    handshake_timeout: Option<Duration>,
    setup_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    max_message: Option<u64>,
    max_cache: Option<u64>,
    max_jobs_per_client: Option<usize>,
    worker_memory: Option<u64>,
    help: bool,
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ppserver: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let secret = match secret(&options) {
        Ok(secret) => secret,
        Err(message) => {
            eprintln!("{message}");
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
        .with_max_level(options.level.unwrap_or(tracing::Level::INFO))
        .init();
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
    let result = runtime.block_on(async {
        let (ready, listening) = tokio::sync::oneshot::channel();
        let node = tokio::spawn(node::serve(config, Some(ready)));
        if let Ok(addr) = listening.await {
            if let Some(path) = &pid_file {
                if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
                    tracing::warn!("cannot write the pid file {}: {e}", path.display());
                }
            }
            eprintln!("ppserver listening on {addr} with {workers} workers");
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

/// The secret from the options or the environment, in that order.
fn secret(options: &Options) -> Result<Secret, String> {
    let from_file = |path: &std::path::Path| -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "ppserver: cannot read the secret file {}: {e}",
                path.display()
            )
        })?;
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    };
    let text = if let Some(secret) = &options.secret {
        secret.clone()
    } else if let Some(path) = &options.secret_file {
        from_file(path)?
    } else if let Some(secret) = std::env::var_os("PP_SECRET").filter(|s| !s.is_empty()) {
        secret
            .into_string()
            .map_err(|_| "ppserver: PP_SECRET is not valid UTF-8".to_owned())?
    } else if let Some(path) = std::env::var_os("PP_SECRET_FILE").filter(|s| !s.is_empty()) {
        from_file(std::path::Path::new(&path))?
    } else {
        return Err(NO_SECRET.to_owned());
    };
    Secret::new(text).map_err(|_| NO_SECRET.to_owned())
}

fn config(options: &Options, secret: Secret) -> Result<NodeConfig, String> {
    let mut config = NodeConfig::new(secret);
    let port = options.port.unwrap_or(node::DEFAULT_PORT);
    let interface = options.interface.as_deref().unwrap_or("0.0.0.0");
    config.listen = listen_address(interface, port)?;
    if let Some(workers) = options.workers {
        config.workers = workers;
    }
    config.idle_timeout = options.timeout;
    if let Some(dir) = &options.cache_dir {
        config.cache_dir = dir.clone();
    }
    if let Some(bytes) = options.max_upload {
        config.max_upload = bytes;
    }
    if options.autodiscovery {
        let mut discovery = DiscoveryConfig::default();
        if let Some(port) = options.discovery_port {
            discovery.port = port;
        }
        if let Some(broadcast) = options.broadcast {
            discovery.broadcast = broadcast;
        }
        config.discovery = Some(discovery);
    } else if options.discovery_port.is_some() || options.broadcast.is_some() {
        return Err("--discovery-port and --broadcast need -a (--autodiscovery)".into());
    }
    if let Some(n) = options.max_connections {
        config.max_connections = n;
    }
    if let Some(timeout) = options.handshake_timeout {
        config.channel.handshake_timeout = timeout;
    }
    if let Some(timeout) = options.setup_timeout {
        config.setup_timeout = timeout;
    }
    if let Some(timeout) = options.write_timeout {
        config.channel.write_timeout = Some(timeout);
    }
    if let Some(bytes) = options.max_message {
        if !(MIN_MESSAGE..=MAX_MESSAGE).contains(&bytes) {
            return Err(format!(
                "--max-message must be between {MIN_MESSAGE} and {MAX_MESSAGE} bytes (64K to 1G)"
            ));
        }
        // In range, so it fits.
        config.channel.max_message = bytes as u32;
    }
    if let Some(bytes) = options.max_cache {
        config.max_cache_bytes = bytes;
    }
    if let Some(n) = options.max_jobs_per_client {
        config.max_queued_jobs = n;
    }
    config.worker_memory = options.worker_memory;
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

/// Parses the arguments (after the program name).
fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        // `--name=value` and `--name value` are the same.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => args.next().ok_or_else(|| format!("{name} needs {what}")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => options.help = true,
            "-p" | "--port" => {
                let text = value("a port number")?;
                let port = text.parse().map_err(|_| format!("bad port `{text}`"))?;
                set(&mut options.port, port, &name)?;
            }
            "-i" | "--interface" => set(&mut options.interface, value("an address")?, &name)?,
            "-w" | "--workers" => {
                let text = value("a number of workers")?;
                let workers = text
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("bad number of workers `{text}` (at least 1)"))?;
                set(&mut options.workers, workers, &name)?;
            }
            "-s" | "--secret" => set(&mut options.secret, value("the secret")?, &name)?,
            "--secret-file" => set(&mut options.secret_file, value("a path")?.into(), &name)?,
            "-t" | "--timeout" | "--handshake-timeout" | "--setup-timeout" | "--write-timeout" => {
                let seconds = parse_seconds(&value("a number of seconds")?)?;
                let slot = match name.as_str() {
                    "--handshake-timeout" => &mut options.handshake_timeout,
                    "--setup-timeout" => &mut options.setup_timeout,
                    "--write-timeout" => &mut options.write_timeout,
                    _ => &mut options.timeout,
                };
                set(slot, seconds, &name)?;
            }
            "--max-connections" | "--max-jobs-per-client" => {
                let (slot, what) = match name.as_str() {
                    "--max-connections" => {
                        (&mut options.max_connections, "a number of connections")
                    }
                    _ => (&mut options.max_jobs_per_client, "a number of jobs"),
                };
                let n = parse_count(&value(what)?)?;
                set(slot, n, &name)?;
            }
            "--max-message" | "--max-cache" | "--worker-memory" => {
                let text = value("a size in bytes")?;
                let bytes = parse_size(&text).ok_or_else(|| format!("bad size `{text}`"))?;
                let slot = match name.as_str() {
                    "--max-message" => &mut options.max_message,
                    "--max-cache" => &mut options.max_cache,
                    _ => &mut options.worker_memory,
                };
                set(slot, bytes, &name)?;
            }
            "-P" | "--pid-file" => set(&mut options.pid_file, value("a path")?.into(), &name)?,
            "-d" | "--debug" => {
                let level = match inline {
                    Some(text) => Some(text),
                    // The level is optional: take the next argument only if it is one.
                    None => args.next_if(|next| parse_level(next).is_some()),
                };
                let level = match level {
                    Some(text) => parse_level(&text).ok_or_else(|| {
                        format!("bad log level `{text}` (error, warn, info, debug, trace)")
                    })?,
                    None => tracing::Level::DEBUG,
                };
                set(&mut options.level, level, &name)?;
            }
            "--cache-dir" => set(&mut options.cache_dir, value("a directory")?.into(), &name)?,
            "--max-upload" => {
                let text = value("a size in bytes")?;
                let bytes = parse_size(&text).ok_or_else(|| format!("bad size `{text}`"))?;
                set(&mut options.max_upload, bytes, &name)?;
            }
            "-a" | "--autodiscovery" => {
                if options.autodiscovery {
                    return Err(format!("{name} is given more than once"));
                }
                options.autodiscovery = true;
            }
            "--discovery-port" => {
                let text = value("a port number")?;
                let port = text.parse().map_err(|_| format!("bad port `{text}`"))?;
                set(&mut options.discovery_port, port, &name)?;
            }
            "-b" | "--broadcast" => {
                let text = value("an IP address")?;
                let ip = text
                    .parse()
                    .map_err(|_| format!("bad broadcast address `{text}` (an IP address)"))?;
                set(&mut options.broadcast, ip, &name)?;
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(options)
}

/// Stores an option's value; giving the same option twice is an error.
fn set<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} is given more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_level(text: &str) -> Option<tracing::Level> {
    match text.to_ascii_lowercase().as_str() {
        "error" => Some(tracing::Level::ERROR),
        "warn" | "warning" => Some(tracing::Level::WARN),
        "info" => Some(tracing::Level::INFO),
        "debug" => Some(tracing::Level::DEBUG),
        "trace" => Some(tracing::Level::TRACE),
        _ => None,
    }
}

/// A duration in seconds, fractions allowed, above 0.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad duration `{text}` (seconds, above 0)"))
}

/// A count of at least 1.
fn parse_count(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .ok_or_else(|| format!("bad number `{text}` (at least 1)"))
}

/// `1048576`, `512K`, `64M`, `2G` (powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Options, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn flags_in_short_long_and_equals_forms() {
        let o = args("-p 0 --interface=127.0.0.1 -w 3 -t 1.5 -d --max-upload 64M").unwrap();
        assert_eq!(o.port, Some(0));
        assert_eq!(o.interface.as_deref(), Some("127.0.0.1"));
        assert_eq!(o.workers, Some(3));
        assert_eq!(o.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(o.level, Some(tracing::Level::DEBUG));
        assert_eq!(o.max_upload, Some(64 << 20));
        assert_eq!(args("-d warn").unwrap().level, Some(tracing::Level::WARN));
        assert_eq!(
            args("--debug=trace").unwrap().level,
            Some(tracing::Level::TRACE)
        );
    }

    #[test]
    fn limits_reach_the_configuration() {
        let o = args(
            "--max-connections 8 --handshake-timeout 0.5 --setup-timeout 2 --max-message 1M \
             --max-cache 1G --max-jobs-per-client 16 --worker-memory 512M --write-timeout 3",
        )
        .unwrap();
        let config = config(&o, Secret::new("s").unwrap()).unwrap();
        assert_eq!(config.max_connections, 8);
        assert_eq!(config.channel.handshake_timeout, Duration::from_millis(500));
        assert_eq!(config.setup_timeout, Duration::from_secs(2));
        assert_eq!(config.channel.write_timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.channel.max_message, 1 << 20);
        assert_eq!(config.max_cache_bytes, 1 << 30);
        assert_eq!(config.max_queued_jobs, 16);
        assert_eq!(config.worker_memory, Some(512 << 20));
        let small = args("--max-message 1K").unwrap();
        assert!(config_of(&small).unwrap_err().contains("--max-message"));
        assert!(args("--max-connections 0")
            .unwrap_err()
            .contains("at least 1"));
        assert!(args("--handshake-timeout -1")
            .unwrap_err()
            .contains("duration"));
    }

    fn config_of(options: &Options) -> Result<NodeConfig, String> {
        config(options, Secret::new("s").unwrap())
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(args("-p").unwrap_err().contains("needs"));
        assert!(args("-p 1 -p 2").unwrap_err().contains("more than once"));
        assert!(args("-w 0").unwrap_err().contains("workers"));
        assert!(args("--bogus").unwrap_err().contains("unknown"));
        assert!(args("--debug=loud").unwrap_err().contains("log level"));
        assert_eq!(parse_size("0"), None);
        assert!(args("-a -a").unwrap_err().contains("more than once"));
        assert!(args("-b nowhere").unwrap_err().contains("broadcast"));
    }

    #[test]
    fn autodiscovery_flags() {
        let o = args("-a --discovery-port 6100 -b 10.0.0.255").unwrap();
        let secret = Secret::new("a long random secret").unwrap();
        let discovery = config(&o, secret.clone()).unwrap().discovery.unwrap();
        assert_eq!(discovery.port, 6100);
        assert_eq!(discovery.broadcast, "10.0.0.255".parse::<IpAddr>().unwrap());
        let o = args("--autodiscovery").unwrap();
        assert_eq!(
            config(&o, secret.clone()).unwrap().discovery,
            Some(DiscoveryConfig::default())
        );
        assert_eq!(
            config(&args("").unwrap(), secret.clone())
                .unwrap()
                .discovery,
            None
        );
        let o = args("-b 10.0.0.255").unwrap();
        assert!(config(&o, secret).unwrap_err().contains("-a"));
    }
}
