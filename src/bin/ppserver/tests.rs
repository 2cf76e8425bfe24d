//! The flags as clap parses them, and what reaches the node's configuration.

use std::net::IpAddr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use pp_net::discovery::DiscoveryConfig;
use pp_net::node::NodeConfig;
use pp_net::Secret;

use super::config;
use crate::options::Options;

/// Parses a command line written as one string (after the program name).
fn args(line: &str) -> Result<Options, clap::Error> {
    Options::try_parse_from(std::iter::once("ppserver").chain(line.split_whitespace()))
}

/// The message of a command line's error.
fn error(line: &str) -> String {
    args(line).unwrap_err().to_string()
}

fn config_of(options: &Options) -> Result<NodeConfig, String> {
    config(options, Secret::new("s").unwrap())
}

#[test]
fn the_command_line_is_well_formed() {
    Options::command().debug_assert();
}

#[test]
fn flags_in_short_long_and_equals_forms() {
    let o = args("-p 0 --interface=127.0.0.1 -w 3 -t 1.5 -d --max-upload 64M").unwrap();
    assert_eq!(o.port, 0);
    assert_eq!(o.interface, "127.0.0.1");
    assert_eq!(o.workers, Some(3));
    assert_eq!(o.timeout.map(|t| t.0), Some(Duration::from_millis(1500)));
    assert_eq!(o.level, tracing::Level::DEBUG);
    assert_eq!(o.limits.max_upload.0, 64 << 20);
    assert_eq!(args("-d warn").unwrap().level, tracing::Level::WARN);
    assert_eq!(args("--debug=trace").unwrap().level, tracing::Level::TRACE);
    assert_eq!(args("-d -p 1").unwrap().level, tracing::Level::DEBUG);
    assert_eq!(args("").unwrap().level, tracing::Level::INFO);
}

#[test]
fn defaults_are_the_nodes() {
    let from_flags = config_of(&args("").unwrap()).unwrap();
    let defaults = NodeConfig::new(Secret::new("s").unwrap());
    assert_eq!(from_flags.listen, defaults.listen);
    assert_eq!(from_flags.workers, defaults.workers);
    assert_eq!(from_flags.idle_timeout, None);
    assert_eq!(from_flags.cache_dir, defaults.cache_dir);
    assert_eq!(from_flags.max_upload, defaults.max_upload);
    assert_eq!(from_flags.max_cache_bytes, defaults.max_cache_bytes);
    assert_eq!(from_flags.channel, defaults.channel);
    assert_eq!(from_flags.max_connections, defaults.max_connections);
    assert_eq!(from_flags.setup_timeout, defaults.setup_timeout);
    assert_eq!(from_flags.max_queued_jobs, defaults.max_queued_jobs);
    assert_eq!(from_flags.discovery, None);
    assert_eq!(from_flags.worker_memory, None);
}

#[test]
fn limits_reach_the_configuration() {
    let o = args(
        "--max-connections 8 --handshake-timeout 0.5 --setup-timeout 2 --max-message 1M \
         --max-cache 1G --max-jobs-per-client 16 --worker-memory 512M --write-timeout 3",
    )
    .unwrap();
    let config = config_of(&o).unwrap();
    assert_eq!(config.max_connections, 8);
    assert_eq!(config.channel.handshake_timeout, Duration::from_millis(500));
    assert_eq!(config.setup_timeout, Duration::from_secs(2));
    assert_eq!(config.channel.write_timeout, Some(Duration::from_secs(3)));
    assert_eq!(config.channel.max_message, 1 << 20);
    assert_eq!(config.max_cache_bytes, 1 << 30);
    assert_eq!(config.max_queued_jobs, 16);
    assert_eq!(config.worker_memory, Some(512 << 20));
    assert!(error("--max-message 1K").contains("--max-message"));
    assert!(error("--max-message 2G").contains("64K to 1G"));
    assert!(args("--max-message 1G").is_ok());
    assert!(error("--max-connections 0").contains("at least 1"));
    assert!(error("--handshake-timeout -1").contains("duration"));
}

#[test]
fn mistakes_are_reported() {
    let kind = |line: &str| args(line).unwrap_err().kind();
    assert!(error("-p").contains("a value is required for '--port <PORT>'"));
    assert_eq!(kind("-p 1 -p 2"), ErrorKind::ArgumentConflict);
    assert!(error("-p 1 -p 2").contains("cannot be used multiple times"));
    assert!(error("-w 0").contains("--workers"));
    assert_eq!(kind("--bogus"), ErrorKind::UnknownArgument);
    assert!(error("--bogus").contains("unexpected argument '--bogus'"));
    assert!(error("--debug=loud").contains("log level"));
    assert!(error("--max-upload 0").contains("bad size"));
    assert_eq!(kind("-a -a"), ErrorKind::ArgumentConflict);
    assert!(error("-b nowhere").contains("--broadcast"));
}

#[test]
fn autodiscovery_flags() {
    let o = args("-a --discovery-port 6100 -b 10.0.0.255").unwrap();
    let discovery = config_of(&o).unwrap().discovery.unwrap();
    assert_eq!(discovery.port, 6100);
    assert_eq!(discovery.broadcast, "10.0.0.255".parse::<IpAddr>().unwrap());
    let o = args("--autodiscovery").unwrap();
    assert_eq!(
        config_of(&o).unwrap().discovery,
        Some(DiscoveryConfig::default())
    );
    assert_eq!(config_of(&args("").unwrap()).unwrap().discovery, None);
    assert!(error("-b 10.0.0.255").contains("--autodiscovery"));
    assert!(error("--discovery-port 6100").contains("--autodiscovery"));
}

#[test]
fn join_takes_host_and_port_and_turns_listening_off_unless_asked() {
    let o = args("--join 10.0.0.1:7000 --join client:7001").unwrap();
    assert_eq!(o.join, ["10.0.0.1:7000", "client:7001"]);
    let c = config_of(&o).unwrap();
    assert_eq!(c.join, ["10.0.0.1:7000", "client:7001"]);
    assert!(!c.listening, "a joining node opens no port unless asked");
    let matches = Options::command()
        .try_get_matches_from(["ppserver", "--join", "[::1]:7000", "-p", "0"])
        .unwrap();
    let o = Options::from_matches(&matches).unwrap();
    assert!(config_of(&o).unwrap().listening);
    assert!(config_of(&args("").unwrap()).unwrap().listening);
    for bad in ["client", "client:0", "client:x", ":7000", "::1:7000"] {
        assert!(
            error(&format!("--join {bad}")).contains("HOST:PORT"),
            "{bad}"
        );
    }
    assert!(config_of(&args("--join c:1 -a").unwrap())
        .unwrap_err()
        .contains("-a"));
}
