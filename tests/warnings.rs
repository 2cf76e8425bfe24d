//! What a user sees when a node is not usable, with real `ppserver` processes on
//! 127.0.0.1: the client's standard error names the node and the reason once (not once per
//! retry), `print_stats()` shows the reason on the node's line, `PP_LOG=off` silences pp,
//! a program with its own `tracing` subscriber gets the event there and nothing on
//! standard error, and a node that comes back is announced once.
//!
//! The client runs in a child process (this test binary again, running one of the ignored
//! `*_role` tests), so that its standard error and output can be read as a user sees them.
//! Every wait is bounded by [`WAIT`]; nothing depends on how long something took.

mod support;

use pp::{NodeFailure, Server};
use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{collect_stderr, wait_bounded, Node, SECRET, WAIT};

#[pp::parallel]
fn triple(x: u64) -> u64 {
    3 * x
}

/// The environment variable naming the node a role's client uses.
const ROLE_NODE: &str = "PP_TEST_WARNINGS_NODE";

/// Set when the wrong-secret role installs its own `tracing` subscriber.
const ROLE_SUBSCRIBER: &str = "PP_TEST_WARNINGS_SUBSCRIBER";

/// What the subscriber role prints: how many warnings about the secret its subscriber saw.
const SUBSCRIBER_SAW: &str = "subscriber saw warnings about the secret: ";

/// What the comeback role prints once its node is connected.
const ROLE_CONNECTED: &str = "role: the node is connected";

/// What a role writes last on its standard error: every line before it has been read once
/// this one has.
const ROLE_DONE: &str = "role: done";

/// The words of the warning about a wrong secret.
const WRONG_SECRET: &str = "authentication failed: wrong secret?";

/// Runs the role test `role` of this binary as a child process with `env`; returns its
/// standard output and standard error once it has exited, and asserts it succeeded.
fn run_role(role: &str, env: &[(&str, &str)]) -> (String, Vec<String>) {
    let mut command = role_command(role, env);
    let mut child = command.spawn().expect("start the client process");
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let status = wait_bounded(&mut child);
    let stdout = reader.join().expect("stdout reader");
    assert!(
        status.success(),
        "the client process failed ({status}); stdout:\n{stdout}\nstderr:\n{}",
        stderr.text()
    );
    stderr.wait_for(ROLE_DONE);
    let stderr_lines: Vec<String> = stderr.text().lines().map(str::to_owned).collect();
    (stdout, stderr_lines)
}

/// The command that runs `role` with `env` (see `support::role`).
fn role_command(role: &str, env: &[(&str, &str)]) -> Command {
    let mut command = support::role::role_command(role);
    command.envs(env.iter().copied());
    command
}

/// pp's lines among `stderr`.
fn pp_lines(stderr: &[String]) -> Vec<&String> {
    stderr.iter().filter(|l| l.starts_with("pp: ")).collect()
}

/// Waits (at most [`WAIT`]) until `pred` holds for the server's only node.
fn wait_for_node(server: &Server, what: &str, pred: impl Fn(&pp::NodeStatus) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !server.active_nodes().first().is_some_and(&pred) {
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what}\n{:?}",
            server.active_nodes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Not a test on its own: the client of the wrong-secret tests, run as a child process.
/// Uses a wrong secret with the node named by [`ROLE_NODE`]; its jobs must complete
/// locally; it lets the client retry the node a few times, then prints the statistics.
#[test]
#[ignore = "a role played by a child process of another test"]
fn wrong_secret_role() {
    let Ok(node) = std::env::var(ROLE_NODE) else {
        return;
    };
    let captured = Captured::default();
    if std::env::var_os(ROLE_SUBSCRIBER).is_some() {
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    }
    let server = Server::builder()
        .ppservers([node])
        .secret("not the secret the node has")
        .ncpus(0)
        .fallback_wait(Duration::from_millis(300))
        .build()
        .expect("the cluster client starts");
    wait_for_node(&server, "the node's failure is recorded", |n| {
        n.last_failure.is_some()
    });
    let status = &server.active_nodes()[0];
    assert_eq!(
        status.last_failure,
        Some(NodeFailure::AuthenticationFailed),
        "{status:?}"
    );
    assert!(!status.connected);
    let jobs: Vec<_> = (0..20).map(|i| server.submit(triple, (i,))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(3 * i as u64));
    }
    // The client retries the node meanwhile (after 0.25, 0.5, 1 s ...): none of the
    // retries may repeat the warning.
    std::thread::sleep(Duration::from_secs(2));
    server.print_stats();
    let local = server
        .stats()
        .executors
        .iter()
        .find(|e| e.name == "local")
        .map_or(0, |e| e.jobs);
    println!("jobs done locally: {local}");
    if std::env::var_os(ROLE_SUBSCRIBER).is_some() {
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).expect("utf-8 log");
        println!("{SUBSCRIBER_SAW}{}", text.matches(WRONG_SECRET).count());
    }
    eprintln!("{ROLE_DONE}");
}

#[test]
fn a_wrong_secret_is_named_once_on_stderr_and_in_the_statistics() {
    let node = Node::start(2, &[]);
    let name = node.name();
    let (stdout, stderr) = run_role("wrong_secret_role", &[(ROLE_NODE, &name)]);
    let warnings: Vec<_> = pp_lines(&stderr)
        .into_iter()
        .filter(|l| l.contains(WRONG_SECRET))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning about the secret, whatever the retries; stderr:\n{}",
        stderr.join("\n")
    );
    let warning = warnings[0];
    assert!(warning.contains(&format!("node {name}: ")), "{warning}");
    assert!(warning.contains("PP_SECRET"), "{warning}");
    assert!(warning.contains("its jobs run"), "{warning}");
    assert!(
        stdout.contains(&format!(
            "node {name}: not connected ({WRONG_SECRET}), lost 0 times, connected 0 times"
        )),
        "print_stats shows the reason; stdout:\n{stdout}"
    );
    assert!(stdout.contains("jobs done locally: 20"), "{stdout}");
    eprintln!(
        "client stderr:\n{}\nclient stdout:\n{stdout}",
        stderr.join("\n")
    );
    // The node did see the retries: each one failed its handshake there.
    eprintln!(
        "node log lines about the client's authentication: {}",
        node.log.count("authentication failed")
    );
}

#[test]
fn retries_say_nothing_new_at_the_default_level() {
    let node = Node::start(1, &[]);
    let name = node.name();
    let (_, stderr) = run_role(
        "wrong_secret_role",
        &[(ROLE_NODE, &name), ("PP_LOG", "debug")],
    );
    let text = stderr.join("\n");
    let said = format!("pp: node {name}: {WRONG_SECRET}");
    assert_eq!(
        stderr.iter().filter(|l| l.starts_with(&said)).count(),
        1,
        "one warning:\n{text}"
    );
    let retried = format!("pp: debug: node {name}: still not usable: {WRONG_SECRET}");
    assert!(
        stderr.iter().any(|l| l.starts_with(&retried)),
        "the client retried, and said so only at the debug level:\n{text}"
    );
}

#[test]
fn pp_log_off_silences_pp() {
    let node = Node::start(1, &[]);
    let name = node.name();
    let (stdout, stderr) = run_role(
        "wrong_secret_role",
        &[(ROLE_NODE, &name), ("PP_LOG", "off")],
    );
    assert!(
        pp_lines(&stderr).is_empty(),
        "nothing of pp's on stderr; stderr:\n{}",
        stderr.join("\n")
    );
    assert!(
        stdout.contains(WRONG_SECRET),
        "the statistics still say why; stdout:\n{stdout}"
    );
}

#[test]
fn a_program_with_a_subscriber_gets_the_warning_there_once_and_nothing_on_stderr() {
    let node = Node::start(1, &[]);
    let name = node.name();
    let (stdout, stderr) = run_role(
        "wrong_secret_role",
        &[(ROLE_NODE, &name), (ROLE_SUBSCRIBER, "1")],
    );
    assert!(
        pp_lines(&stderr).is_empty(),
        "nothing of pp's on stderr; stderr:\n{}",
        stderr.join("\n")
    );
    assert!(
        stdout.contains(&format!("{SUBSCRIBER_SAW}1\n")),
        "the subscriber saw the warning once; stdout:\n{stdout}"
    );
}

/// Not a test on its own: the client of `a_node_that_comes_back_is_announced_once`, run as
/// a child process. Prints [`ROLE_CONNECTED`] once its node is, then waits until it has connected
/// a second time and runs a job there.
#[test]
#[ignore = "a role played by a child process of another test"]
fn comeback_role() {
    let Ok(node) = std::env::var(ROLE_NODE) else {
        return;
    };
    let server = Server::builder()
        .ppservers([node.as_str()])
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .build()
        .expect("the cluster client starts");
    wait_for_node(&server, "the node connects", |n| n.connected);
    println!("\n{ROLE_CONNECTED}");
    std::io::stdout().flush().expect("flush stdout");
    wait_for_node(&server, "the node connects again", |n| {
        n.connected && n.connections == 2
    });
    assert_eq!(server.submit(triple, (7,)).result(), Ok(21));
    server.print_stats();
    eprintln!("{ROLE_DONE}");
}

#[test]
fn a_node_that_comes_back_is_announced_once() {
    let node = Node::start(1, &[]);
    let name = node.name();
    let port = node.addr.port();
    let mut child = role_command("comeback_role", &[(ROLE_NODE, &name)])
        .spawn()
        .expect("start the client process");
    let stderr = collect_stderr(&mut child);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    let deadline = Instant::now() + WAIT;
    while !line.contains(ROLE_CONNECTED) {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .expect("read the client's stdout");
        assert!(
            read > 0 && Instant::now() < deadline,
            "the client never connected; stderr:\n{}",
            stderr.text()
        );
    }
    assert!(
        !stderr.contains("connected"),
        "a first connection says nothing at the default level:\n{}",
        stderr.text()
    );
    drop(node);
    stderr.wait_for(&format!("pp: node {name}: connection lost"));
    let _node = Node::start_on(port, 1, &[]);
    let status = wait_bounded(&mut child);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    assert!(
        status.success(),
        "the client failed; stderr:\n{}",
        stderr.text()
    );
    stderr.wait_for(ROLE_DONE);
    let text = stderr.text();
    eprintln!("client stderr:\n{text}\nclient stdout:\n{rest}");
    assert_eq!(
        stderr.count(&format!(
            "pp: node {name}: connected again (1 worker) after \"connection lost: "
        )),
        1,
        "one line when the node is back:\n{text}"
    );
    assert_eq!(stderr.count("connected again"), 1, "{text}");
    assert_eq!(
        stderr.count("connection lost"),
        2,
        "the loss, then the return:\n{text}"
    );
}

/// A loopback port with nothing listening: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

#[test]
fn each_failure_is_classified_in_the_nodes_status() {
    let refusing = Node::start(1, &["--max-upload", "1000"]);
    let closed = format!("127.0.0.1:{}", closed_port());
    let server = Server::builder()
        .ppservers([closed.clone(), refusing.name()])
        .secret(SECRET)
        .ncpus(1)
        .build()
        .expect("the cluster client starts");
    let deadline = Instant::now() + WAIT;
    while server
        .active_nodes()
        .iter()
        .any(|n| n.last_failure.is_none())
    {
        assert!(Instant::now() < deadline, "{:?}", server.active_nodes());
        std::thread::sleep(Duration::from_millis(10));
    }
    let nodes = server.active_nodes();
    let failure = |name: &str| {
        let node = nodes.iter().find(|n| n.address == name).expect("the node");
        assert_eq!(node.connection, pp::NodeConnection::Down, "{node:?}");
        assert!(node.last_failure_at.is_some());
        node.last_failure.clone().expect("a failure")
    };
    assert_eq!(failure(&closed), NodeFailure::ConnectionRefused);
    match failure(&refusing.name()) {
        NodeFailure::ProgramNotRunnable(reason) => {
            assert!(reason.contains("--max-upload"), "{reason}")
        }
        other => panic!("expected ProgramNotRunnable, got {other:?}"),
    }
    let table = server.stats().to_string();
    assert!(
        table.contains(&format!(
            "node {closed}: not connected (connection refused)"
        )),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "node {}: not connected (the node cannot run this program: the program is ",
            refusing.name()
        )),
        "{table}"
    );
    eprintln!("{table}");
}
