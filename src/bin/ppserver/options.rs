//! `ppserver`'s command line, declared once for clap: every flag with its short and long
//! name, its default and its help text (the doc comment on its field).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser};
use pp_net::discovery::{DEFAULT_BROADCAST, DEFAULT_DISCOVERY_PORT};
use pp_net::node::{
    default_cache_dir, DEFAULT_MAX_CACHE_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_QUEUED_JOBS,
    DEFAULT_MAX_UPLOAD, DEFAULT_PORT, DEFAULT_SETUP_TIMEOUT, DEFAULT_WRITE_TIMEOUT,
};
use pp_net::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE};

use crate::values::{parse_count, parse_level, ByteSize, Seconds};

/// Bounds of `--max-message`: room for an upload chunk and a job, and at most what the codec
/// decodes.
const MIN_MESSAGE: u64 = 64 << 10;
const MAX_MESSAGE: u64 = 1 << 30;

/// Heading of the flags that bound what a client can make the node do.
const LIMITS: &str = "Limits (see SECURITY.md; sizes take the suffixes K, M, G)";

/// Shown after the flags: where the secret comes from when no flag gives it.
const ENVIRONMENT: &str = "\
Environment:
  PP_SECRET       The secret, when neither --secret nor --secret-file gives it
  PP_SECRET_FILE  A file holding the secret, when PP_SECRET is unset or empty";

/// The command line, parsed.
#[derive(Debug, Parser)]
#[command(
    name = "ppserver",
    version,
    about = "Runs jobs for pp clients that share its secret.",
    after_help = ENVIRONMENT,
    // So that `-t -1` is a bad duration rather than an unknown flag `-1`.
    allow_negative_numbers = true
)]
pub(crate) struct Options {
    /// Port to listen on (0 picks a free port)
    #[arg(short, long, value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub(crate) port: u16,

    /// Address or host name to listen on
    #[arg(short, long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub(crate) interface: String,

    /// Worker processes per client [default: the number of cores]
    #[arg(short, long, value_name = "N", value_parser = parse_count)]
    pub(crate) workers: Option<usize>,

    /// The cluster's shared secret
    ///
    /// Visible to other local users in the process list: prefer --secret-file or PP_SECRET.
    #[arg(short, long, value_name = "SECRET")]
    pub(crate) secret: Option<String>,

    /// Read the secret from a file (trailing newline ignored)
    ///
    /// Keep it readable by the node's user only (chmod 600): a warning says otherwise.
    #[arg(long, value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,

    /// Start even with a weak secret
    ///
    /// A secret must have at least 16 bytes, of at least 5 different values, and not be only
    /// whitespace: anyone who records a handshake can test guesses of it offline.
    #[arg(long)]
    pub(crate) allow_weak_secret: bool,

    /// Exit after SECONDS with no client connected
    #[arg(short, long, value_name = "SECONDS")]
    pub(crate) timeout: Option<Seconds>,

    /// Write the process id to PATH while running
    #[arg(short = 'P', long, value_name = "PATH")]
    pub(crate) pid_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace
    ///
    /// -d alone means debug.
    #[arg(
        short = 'd',
        long = "debug",
        value_name = "LEVEL",
        num_args = 0..=1,
        default_value = "info",
        default_missing_value = "debug",
        value_parser = parse_level,
    )]
    pub(crate) level: tracing::Level,

    /// Where uploaded programs are cached
    ///
    /// By default $XDG_CACHE_HOME/pp, else ~/.cache/pp.
    ///
    /// Created with mode 0700; a directory another user owns is refused.
    #[arg(long, value_name = "DIR", default_value_os_t = default_cache_dir())]
    pub(crate) cache_dir: PathBuf,

    /// Announce this node by UDP broadcast and answer probes
    ///
    /// Clients with PP_SERVERS=* then find it. No secret is sent.
    #[arg(short, long)]
    pub(crate) autodiscovery: bool,

    /// UDP port of autodiscovery (needs -a)
    ///
    /// Whatever the job port; 0 picks a free one, for unicast probes only.
    #[arg(
        long,
        value_name = "PORT",
        requires = "autodiscovery",
        default_value_t = DEFAULT_DISCOVERY_PORT,
    )]
    pub(crate) discovery_port: u16,

    /// Where announcements go (needs -a)
    ///
    /// A subnet's broadcast address such as 192.168.1.255 also works.
    #[arg(
        short,
        long,
        value_name = "ADDR",
        requires = "autodiscovery",
        default_value_t = DEFAULT_BROADCAST,
    )]
    pub(crate) broadcast: IpAddr,

    /// Join the client listening at HOST:PORT (its PP_LISTEN); repeatable
    ///
    /// The node dials the client and serves it on that connection, redialing while it
    /// runs: for clients that cannot reach the node (NAT, batch jobs). With --join the
    /// node listens only if -p or -i is given.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_join)]
    pub(crate) join: Vec<String>,

    /// Whether -p or -i was on the command line (a joining node listens only then).
    #[arg(skip)]
    pub(crate) listen_given: bool,

    /// What a client may make the node hold, and for how long.
    #[command(flatten, next_help_heading = LIMITS)]
    pub(crate) limits: Limits,
}

impl Options {
    /// Parses the process's command line (exiting on help, version or a mistake), noting
    /// whether a listening address was given.
    pub(crate) fn from_command_line() -> Options {
        let matches = Options::command().get_matches();
        Options::from_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The options of parsed `matches`.
    pub(crate) fn from_matches(matches: &ArgMatches) -> Result<Options, clap::Error> {
        let mut options = Options::from_arg_matches(matches)?;
        let given = |id| matches.value_source(id) == Some(ValueSource::CommandLine);
        options.listen_given = given("port") || given("interface");
        Ok(options)
    }
}

/// A client to join: `HOST:PORT` (`[v6]:PORT`), with a port from 1 to 65535.
fn parse_join(text: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not HOST:PORT (the client's PP_LISTEN)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty() && (!host.contains(':') || host.starts_with('['));
    match port.parse::<u16>() {
        Ok(port) if port > 0 && host_ok => Ok(text.to_owned()),
        _ => Err(bad()),
    }
}

/// The flags that bound what a client can make the node do (SECURITY.md, "Limits").
#[derive(Debug, Args)]
pub(crate) struct Limits {
    /// Largest program a client may upload
    #[arg(long, value_name = "BYTES", default_value_t = ByteSize(DEFAULT_MAX_UPLOAD))]
    pub(crate) max_upload: ByteSize,

    /// Connections at once, handshakes included
    ///
    /// Past it, the oldest one still in its handshake makes room, or the new one is closed.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_count,
        default_value_t = DEFAULT_MAX_CONNECTIONS,
    )]
    pub(crate) max_connections: usize,

    /// Time to complete the handshake
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(DEFAULT_HANDSHAKE_TIMEOUT))]
    pub(crate) handshake_timeout: Seconds,

    /// Time for each setup message
    ///
    /// The hello, and each chunk of an upload.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(DEFAULT_SETUP_TIMEOUT))]
    pub(crate) setup_timeout: Seconds,

    /// Time a write to a client may make no progress
    ///
    /// Then the client is disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(DEFAULT_WRITE_TIMEOUT))]
    pub(crate) write_timeout: Seconds,

    /// Largest message (frame) either way, 64K to 1G
    ///
    /// Also bounds decoding and job results.
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = parse_message_size,
        default_value_t = ByteSize(u64::from(DEFAULT_MAX_MESSAGE)),
    )]
    pub(crate) max_message: ByteSize,

    /// Bytes of programs the cache keeps
    ///
    /// Uploads in progress count with their announced size; one that cannot fit, even
    /// after evicting the programs not in use, is refused.
    #[arg(long, value_name = "BYTES", default_value_t = ByteSize(DEFAULT_MAX_CACHE_BYTES))]
    pub(crate) max_cache: ByteSize,

    /// Jobs a client may have on the node
    ///
    /// Queued, running or with a result not yet sent.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_count,
        default_value_t = DEFAULT_MAX_QUEUED_JOBS,
    )]
    pub(crate) max_jobs_per_client: usize,

    /// Address-space limit of each worker process [default: none]
    ///
    /// A job past it kills its worker.
    #[arg(long, value_name = "BYTES")]
    pub(crate) worker_memory: Option<ByteSize>,
}

/// A size for `--max-message`: one the channel can carry and the codec will decode.
fn parse_message_size(text: &str) -> Result<ByteSize, String> {
    let size: ByteSize = text.parse()?;
    if (MIN_MESSAGE..=MAX_MESSAGE).contains(&size.0) {
        Ok(size)
    } else {
        Err(format!(
            "must be between {MIN_MESSAGE} and {MAX_MESSAGE} bytes (64K to 1G)"
        ))
    }
}
