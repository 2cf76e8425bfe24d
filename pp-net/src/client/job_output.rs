//! Printing what jobs on nodes wrote: each line on this program's standard output or
//! standard error, as the job wrote it there, prefixed with the node (`[10.0.0.5:60000]
//! text`); what jobs in isolated local workers wrote ([`print_local`]) goes the same way,
//! unprefixed, as a job on a thread would print it.
//!
//! A job's output comes in pieces of whole lines, printed in order. A session's task hands
//! each piece ([`JobOutput`]) to a printer thread and goes on at once: a
//! terminal that scrolls slowly, or a pipe nobody reads, holds up the printer only, never
//! the network thread (whose heartbeats keep the nodes). The printer writes one whole line
//! at a time, holding the stream's lock for that line only, so lines of the program's own
//! `println!` never cut into them. What waits for the printer is bounded
//! ([`QUEUE_BOUND`] bytes); an output that finds it full is dropped and said so.
//!
//! A job's result is delivered after its lines are printed: while the printer has output
//! waiting, a session hands it the job's completion too ([`then`]), which it runs in turn,
//! so a program that prints its results (or its statistics) after reading them never sees
//! a job's lines come after. A job whose output was all printed already, or that printed
//! nothing, completes at once on the session's task. The client waits for what is left
//! when it shuts down ([`flush`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::protocol::{JobOutput, OUTPUT_BOUND};

/// Most bytes of output waiting for the printer; an output that would go beyond is dropped
/// (one job's whole output always fits in an empty queue).
const QUEUE_BOUND: usize = 8 * OUTPUT_BOUND;

/// Prints `output`, from a job on node `node` (`host:port`), in the background.
pub(crate) fn print(node: &str, output: JobOutput) {
    let Some(printer) = printer() else {
        return;
    };
    let len = output.stdout.len() + output.stderr.len();
    let queued = printer.queued.fetch_add(len, Ordering::AcqRel);
    if queued > 0 && queued + len > QUEUE_BOUND {
        printer.queued.fetch_sub(len, Ordering::AcqRel);
        printer.dropped_jobs.fetch_add(1, Ordering::Relaxed);
        printer
            .dropped_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        return;
    }
    let printed = Printed {
        node: node.to_owned(),
        output,
    };
    if printer.sender.send(Work::Print(printed)).is_err() {
        printer.queued.fetch_sub(len, Ordering::AcqRel);
    }
}

/// Runs `complete` (a job's completion) once every output handed over so far has been
/// printed: at once when the printer has nothing waiting (or none was ever started),
/// else on the printer's thread after the outputs before it. Never dropped, whatever the
/// queue's bound.
pub(crate) fn then(complete: impl FnOnce() + Send + 'static) {
    let printer = PRINTER.get().and_then(Option::as_ref);
    match printer {
        Some(printer) if printer.queued.load(Ordering::Acquire) > 0 => {
            if let Err(unsent) = printer.sender.send(Work::Then(Box::new(complete))) {
                if let Work::Then(complete) = unsent.0 {
                    complete();
                }
            }
        }
        _ => complete(),
    }
}

/// Prints `output`, from a job in an isolated local worker, in the background, with no
/// prefix: it is this program's own job.
pub(crate) fn print_local(output: JobOutput) {
    print(LOCAL, output);
}

/// The "node" of [`print_local`]: no prefix.
const LOCAL: &str = "";

/// Waits until every output handed over so far has been printed, or `timeout` has
/// passed (a stream nobody reads): the client calls it as it shuts down, so that a program
/// that ends right after its last result still prints what its jobs wrote.
pub(crate) fn flush(timeout: Duration) {
    let Some(printer) = PRINTER.get().and_then(Option::as_ref) else {
        return;
    };
    let deadline = Instant::now() + timeout;
    while printer.queued.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the printer does, in the order handed over.
enum Work {
    /// Print one job's output.
    Print(Printed),
    /// Complete a job whose output was handed over before.
    Then(Box<dyn FnOnce() + Send>),
}

/// One job's output on its way to the printer.
struct Printed {
    node: String,
    output: JobOutput,
}

/// The printer thread's end, shared by every session.
struct Printer {
    sender: Sender<Work>,
    /// Bytes sent and not yet printed.
    queued: Arc<AtomicUsize>,
    /// Outputs dropped because the queue was full, and their bytes, since the printer
    /// last said so.
    dropped_jobs: Arc<AtomicU64>,
    dropped_bytes: Arc<AtomicU64>,
}

/// The printer, once started; `None` inside if its thread could not start.
static PRINTER: OnceLock<Option<Printer>> = OnceLock::new();

/// The printer, started with the first output; `None` if its thread cannot start.
fn printer() -> Option<&'static Printer> {
    PRINTER
        .get_or_init(|| {
            let (sender, receiver) = channel::<Work>();
            let queued = Arc::new(AtomicUsize::new(0));
            let dropped_jobs = Arc::new(AtomicU64::new(0));
            let dropped_bytes = Arc::new(AtomicU64::new(0));
            let printer = Printer {
                sender,
                queued: Arc::clone(&queued),
                dropped_jobs: Arc::clone(&dropped_jobs),
                dropped_bytes: Arc::clone(&dropped_bytes),
            };
            let started = std::thread::Builder::new()
                .name("pp-job-output".into())
                .spawn(move || {
                    for work in receiver {
                        let printed = match work {
                            Work::Print(printed) => printed,
                            Work::Then(complete) => {
                                complete();
                                continue;
                            }
                        };
                        let len = printed.output.stdout.len() + printed.output.stderr.len();
                        write_output(&printed.node, &printed.output);
                        queued.fetch_sub(len, Ordering::AcqRel);
                        let jobs = dropped_jobs.swap(0, Ordering::Relaxed);
                        if jobs > 0 {
                            let bytes = dropped_bytes.swap(0, Ordering::Relaxed);
                            pp_runtime::warn!(
                                "the output of {jobs} jobs on nodes ({bytes} bytes) was not \
                                 printed: this program's standard output or error did not \
                                 keep up"
                            );
                        }
                    }
                });
            match started {
                Ok(_) => Some(printer),
                Err(error) => {
                    pp_runtime::warn!(
                        "cannot start the thread that prints what jobs on nodes write \
                         ({error}); their output is lost"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Writes one job's output: its standard output lines on standard output, its standard
/// error lines and the note of a cut on standard error. Write errors (a closed stream) are
/// ignored: there is nowhere else to print.
fn write_output(node: &str, output: &JobOutput) {
    let mut line = Vec::new();
    write_lines(&mut std::io::stdout(), node, &output.stdout, &mut line);
    let mut stderr = std::io::stderr();
    write_lines(&mut stderr, node, &output.stderr, &mut line);
    if output.dropped > 0 {
        // The bound, unless the node's message limit is below it (then it is a little less).
        let cut = format!(
            "{}pp: output cut after {} ({} bytes dropped)\n",
            prefix(node),
            size(OUTPUT_BOUND),
            output.dropped
        );
        let _ = stderr.write_line(cut.as_bytes());
    }
}

/// `[node] `, or nothing for a local job ([`LOCAL`]).
fn prefix(node: &str) -> String {
    if node == LOCAL {
        String::new()
    } else {
        format!("[{node}] ")
    }
}

/// Writes `bytes` to `stream` line by line, each prefixed with `[node] ` (nothing for a
/// local job); a last line with no newline gets one, bytes that are not UTF-8 are
/// replaced. `line` is scratch space.
fn write_lines<S: LockStream>(stream: &mut S, node: &str, bytes: &[u8], line: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let prefix = prefix(node);
    for text in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
        line.clear();
        line.extend_from_slice(prefix.as_bytes());
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        if stream.write_line(line).is_err() {
            return;
        }
    }
}

/// A standard stream, written one whole line under its lock.
trait LockStream {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()>;
}

// A progress bar on the terminal (on standard error) is erased first, so that the line
// starts at the left edge; the bar's next draw brings it back.
impl LockStream for std::io::Stdout {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        pp_runtime::erase_progress_line(&mut std::io::stderr().lock());
        self.lock().write_all(line)
    }
}

impl LockStream for std::io::Stderr {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let mut stderr = self.lock();
        pp_runtime::erase_progress_line(&mut stderr);
        stderr.write_all(line)
    }
}

impl LockStream for Vec<u8> {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.write_all(line)
    }
}

/// `1 MiB` for whole mebibytes, else bytes.
fn size(bytes: usize) -> String {
    if bytes > 0 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_lines(&mut out, "10.0.0.5:60000", bytes, &mut Vec::new());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_line_gets_the_prefix_and_a_last_partial_line_its_newline() {
        assert_eq!(
            lines(b"one\ntwo\nthree"),
            "[10.0.0.5:60000] one\n[10.0.0.5:60000] two\n[10.0.0.5:60000] three\n"
        );
        assert_eq!(lines(b"one\n"), "[10.0.0.5:60000] one\n");
        assert_eq!(lines(b"\n\n"), "[10.0.0.5:60000] \n[10.0.0.5:60000] \n");
        assert_eq!(lines(b""), "");
    }

    #[test]
    fn a_local_job_s_lines_have_no_prefix() {
        let mut out = Vec::new();
        write_lines(&mut out, LOCAL, b"one\ntwo", &mut Vec::new());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced() {
        assert_eq!(lines(b"a\xffb\n"), "[10.0.0.5:60000] a\u{fffd}b\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
