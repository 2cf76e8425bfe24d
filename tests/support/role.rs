//! Running a test of this binary as a child process (a "role"), to see what a program
//! prints on its standard streams or to kill it: the test binary is run again with
//! `--exact ROLE --ignored --nocapture`, without the `PP_` variables of the parent's
//! environment, which the caller sets as the role needs.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

/// The variables a role starts without, whatever the test's own environment holds.
const CLEARED: &[&str] = &[
    "PP_SERVERS",
    "PP_LISTEN",
    "PP_SECRET",
    "PP_SECRET_FILE",
    "PP_NCPUS",
    "PP_WORKER",
    "PP_LOG",
    "PP_OUTPUT",
    "PP_PROGRESS",
    "PP_ISOLATED",
    "RUST_LOG",
];

/// A command that runs the ignored test `role` of this binary, alone, with its standard
/// input closed and its standard output and error piped.
pub fn role_command(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("this test"));
    as_role(&mut command, role);
    command
}

/// Makes `command` (this binary, or a launcher of it such as `ip netns exec NS BINARY`)
/// run the ignored test `role` as [`role_command`] does.
pub fn as_role<'c>(command: &'c mut Command, role: &str) -> &'c mut Command {
    command.args([
        "--exact",
        role,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for name in CLEARED {
        command.env_remove(name);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
}

/// What a role's process wrote, and how it ended.
pub struct Ran {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `command` (piped, as [`as_role`] leaves it) to its end, at most
/// [`WAIT`](super::WAIT); returns what it wrote.
pub fn run(command: &mut Command) -> Ran {
    let mut child = command.spawn().expect("start the role's process");
    let stdout = read_in_background(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = read_in_background(child.stderr.take().map(|s| Box::new(s) as _));
    let status = super::wait_bounded(&mut child);
    Ran {
        status,
        stdout: stdout.join().expect("the stdout reader"),
        stderr: stderr.join().expect("the stderr reader"),
    }
}

/// Reads `stream` to its end on a thread of its own (so that neither pipe of a child
/// fills while the other is read); an absent stream reads as empty.
pub fn read_in_background(stream: Option<Box<dyn Read + Send>>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
