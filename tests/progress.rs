//! The progress bar as a user sees it: examples/progress.rs runs in a real terminal
//! (`tmux`, with a fixed size) with `PP_PROGRESS=1` and a `ppserver` node, and the screen
//! is read while it runs (`tmux capture-pane`): the bar is there, it moves, it shows the
//! node's jobs, and each wait's bar ends at its total. With standard error piped, the same
//! run draws nothing.
//!
//! The example runs in this test binary re-run in the role of `child_mode` (ignored, so that
//! it runs only as a child: `support/role.rs`), in the mode `PP_PROGRESS_TEST_CHILD` says.

#[path = "../examples/progress.rs"]
#[allow(clippy::duplicate_mod, dead_code, unreachable_pub)]
mod progress_example;
mod support;

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::role::role_command;
use support::{Node, SECRET, WAIT};

/// Selects what a child run of this binary does: `example` runs the example on a server
/// from the environment; `servers` builds two servers and runs nothing.
const CHILD_ENV: &str = "PP_PROGRESS_TEST_CHILD";

/// Jobs of the child's last wait, one of whose callbacks panics: pp says so mid-bar.
const MESSAGE_JOBS: u64 = 60;
/// The job whose callback panics.
const MESSAGE_AT: u64 = 30;

/// The last line a child in the terminal prints, with its exit code.
const EXIT_MARK: &str = "child exited with";

/// The child's role: what [`CHILD_ENV`] says, nothing when it is not set.
#[test]
#[ignore = "a role, run in a child process by the tests below"]
fn child_mode() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("example") => {
            let server = pp::Server::builder()
                .ncpus(1)
                .from_env()
                .and_then(pp::ServerBuilder::build)
                .expect("the server starts");
            let sums = progress_example::run(&server).expect("every job succeeds");
            assert_eq!(sums, progress_example::expected());
            println!("sums: {sums:?}");
            // pp's message about a panicking callback, in the middle of a bar. The panic
            // itself prints nothing: the message is pp's.
            std::panic::set_hook(Box::new(|_| {}));
            let panicking = server
                .template(progress_example::slow_square)
                .callback(|result| {
                    if result == &Ok(MESSAGE_AT * MESSAGE_AT) {
                        panic!("a callback fails on purpose");
                    }
                });
            for x in 0..MESSAGE_JOBS {
                drop(panicking.submit((x,)));
            }
            server.wait();
            assert_eq!(server.stats().callback_panics, 1);
        }
        Ok("servers") => {
            for _ in 0..2 {
                let server = pp::Server::builder().ncpus(1).from_env().unwrap().build();
                drop(server.expect("the server starts"));
            }
        }
        _ => {}
    }
}

/// A command that runs [`child_mode`] of this binary in `mode`, its output piped.
fn child_command(mode: &str) -> Command {
    let mut command = role_command("child_mode");
    command.env(CHILD_ENV, mode);
    command
}

/// A `tmux` server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts a detached session of `columns` x `rows` running `command` (a shell line).
    fn start(columns: u16, rows: u16, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("pp-progress-test-{}", std::process::id()),
        };
        let (columns, rows) = (columns.to_string(), rows.to_string());
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "pp", "-x", &columns, "-y", &rows])
            .arg(command)
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    /// The screen and its history, as text.
    fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-S", "-200", "-t", "pp"])
            .output()
            .expect("run tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// Whether tmux can run here; when it cannot and we are not root (who gets it from
/// .ci/run), says why the test is skipped.
fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        found || !root,
        "tmux is missing: .ci/run installs it (apt-get install tmux)"
    );
    if !found {
        eprintln!("SKIPPED: tmux is not installed and we are not root to install it");
    }
    found
}

/// The bars on a screen: `(done, total)` of every line that has one, and whether it is a
/// final line (`in 1.2s` rather than `ETA ...`).
fn bars(screen: &str) -> Vec<(u64, u64, bool)> {
    screen
        .lines()
        .filter(|line| line.starts_with('[') && line.contains(" jobs/s"))
        .filter_map(|line| {
            let counts = line.split("] ").nth(1)?.split_whitespace().next()?;
            let (done, total) = counts.split_once('/')?;
            Some((
                done.parse().ok()?,
                total.parse().ok()?,
                line.contains(" jobs/s  in "),
            ))
        })
        .collect()
}

/// Shell quoting for one word.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[test]
fn the_bar_moves_shows_the_node_and_ends_at_the_total_in_a_terminal() {
    if !tmux_available() {
        return;
    }
    let node = Node::start(1, &[]);
    let exe = std::env::current_exe().expect("the test binary");
    let line = format!(
        "env PP_PROGRESS=1 {CHILD_ENV}=example PP_SERVERS={} PP_SECRET={} PP_LOG=warn \
         {} --exact child_mode --ignored --nocapture --test-threads=1; echo \"{EXIT_MARK} $?\"; sleep 60",
        node.name(),
        quoted(SECRET),
        quoted(exe.to_str().expect("utf-8 path")),
    );
    let tmux = Tmux::start(150, 50, &line);

    let deadline = Instant::now() + WAIT;
    let mut moving = BTreeSet::new();
    let mut captures = 0;
    let screen = loop {
        let screen = tmux.screen();
        captures += 1;
        if screen.contains(EXIT_MARK) {
            break screen;
        }
        moving.extend(
            bars(&screen)
                .into_iter()
                .filter(|&(_, _, last)| !last)
                .map(|(done, total, _)| (done, total)),
        );
        assert!(
            Instant::now() < deadline,
            "the example did not end within {WAIT:?}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(40));
    };
    println!("{captures} captures; the last screen:\n{screen}");
    println!("bars seen moving: {moving:?}");

    assert!(
        screen.contains(&format!("{EXIT_MARK} 0")),
        "the example failed:\n{screen}"
    );
    assert!(
        moving.len() >= 2,
        "fewer than two different counts in {captures} captures: {moving:?}"
    );
    let finals: Vec<_> = bars(&screen).into_iter().filter(|b| b.2).collect();
    let totals = [
        progress_example::JOBS,
        progress_example::CHUNKS as u64,
        progress_example::WAITED_JOBS,
        MESSAGE_JOBS,
    ];
    assert_eq!(
        finals,
        totals.map(|t| (t, t, true)).to_vec(),
        "each wait's bar ends at its total:\n{screen}"
    );
    let node_shown = format!("{}: ", node.name());
    assert!(
        screen
            .lines()
            .any(|l| l.contains(" jobs/s") && l.contains("local: ") && l.contains(&node_shown)),
        "a bar shows the jobs of `local` and of {node_shown}:\n{screen}"
    );
    // The program's lines start at the left edge: the bar's line ended before them; pp's
    // message erased the bar before its line.
    assert!(
        screen.lines().any(|l| l.starts_with("sums: Sums")),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("pp: error: a job callback panicked")),
        "{screen}"
    );
}

#[test]
fn no_bar_when_standard_error_is_piped() {
    let Output {
        status,
        stdout,
        stderr,
    } = child_command("example")
        .env("PP_PROGRESS", "1")
        .output()
        .expect("run the example");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("sums: Sums"), "{stdout}");
    for text in ["jobs/s", "\r", "\x1b["] {
        assert!(
            !stderr.contains(text) && !stdout.contains(text),
            "{text:?} in the output:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn an_unknown_setting_is_said_once() {
    let output = child_command("servers")
        .env("PP_PROGRESS", "loud")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let said: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("pp: ") && l.contains("PP_PROGRESS"))
        .collect();
    println!("{said:?}");
    assert_eq!(said.len(), 1, "said once for two servers:\n{stderr}");
    assert!(said[0].contains("\"loud\"") && said[0].contains("stays off"));
}
