//! The worker's loop: answers the jobs that come on its input pipe, one at a time, in order.

use std::io::{BufReader, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use pp_runtime::codec;
use pp_runtime::registry::{registry, InvokeError};

use crate::protocol::pipe::{
    read_frame_into, write_frame, ArgsArea, FromWorker, InputView, WorkerError, WorkerHello,
};
use crate::protocol::{JobOutput, JobReply, JobView, Outcome};

/// Serves jobs from `input` to `output` until `input` ends cleanly between frames.
///
/// Writes the [`WorkerHello`] first, then answers each [`WorkerInput`](super::WorkerInput) with a
/// [`FromWorker::Reply`], flushed at once (this one catches no output). Jobs run through [`Registry::invoke`](pp_runtime::Registry::invoke),
/// which catches panics. [`enter_worker_mode_if_requested`](super::enter_worker_mode_if_requested) runs it on the process's pipes
/// (with the node's shared argument area); tests may run it on buffers, where a
/// [`SharedJob`](super::SharedJob) fails for want of an area.
///
/// # Errors
/// An I/O error on either side, a frame above `limit`, a truncated or undecodable frame.
pub fn run_worker<R: Read, W: Write>(input: R, output: W, limit: u32) -> Result<(), WorkerError> {
    serve(input, output, limit, &mut [None, None], None)
}

/// The catch of what jobs print on this platform.
#[cfg(unix)]
pub(super) type Capture = super::capture::Capture;
#[cfg(not(unix))]
pub(super) type Capture = NoCapture;

/// Nothing is caught on this platform.
#[cfg(not(unix))]
pub(super) enum NoCapture {}

#[cfg(not(unix))]
impl NoCapture {
    pub(super) fn start_job(&self, _: u64) {
        match *self {}
    }

    pub(super) fn end_job(&self, _: u64) -> Option<crate::protocol::JobOutput> {
        match *self {}
    }
}

/// The worker's view of a shared argument area on this platform.
#[cfg(unix)]
pub(super) type AreaView = super::area_view::AreaView;
#[cfg(not(unix))]
pub(super) type AreaView = NoAreaView;

/// No shared argument area exists on this platform.
#[cfg(not(unix))]
pub(super) enum NoAreaView {}

#[cfg(not(unix))]
impl NoAreaView {
    pub(super) fn bytes(&mut self, _: u64, _: u64) -> Result<&[u8], String> {
        match *self {}
    }
}

/// [`run_worker`], with the shared argument areas the node gave ([`ArgsArea::Worker`],
/// then [`ArgsArea::Session`]), and the `capture` of what jobs print when the node asked
/// for it (each job's output goes just before its reply).
pub(super) fn serve<R: Read, W: Write>(
    input: R,
    output: W,
    limit: u32,
    areas: &mut [Option<AreaView>; 2],
    capture: Option<&Capture>,
) -> Result<(), WorkerError> {
    let mut input = BufReader::new(input);
    let mut output = say_hello(output, limit)?;
    let mut buffer = Vec::new();
    while let Some(len) = read_frame_into(&mut input, &mut buffer, "job", limit)? {
        let body = &buffer[..len];
        // Borrowed: the arguments are decoded straight from the frame (or the shared
        // area), not copied first.
        let input: InputView<'_> =
            codec::decode_borrowed(body, u64::from(limit)).map_err(|source| {
                WorkerError::Codec {
                    what: "job",
                    source,
                }
            })?;
        let (job, args) = match input {
            InputView::Job(job) => {
                let args = job.args;
                (job, Ok(args))
            }
            InputView::Shared(job) => {
                let area = match job.area {
                    ArgsArea::Worker => &mut areas[0],
                    ArgsArea::Session => &mut areas[1],
                };
                let args = match area {
                    Some(area) => area.bytes(job.offset, job.len),
                    None => Err(format!(
                        "the node sent the arguments in a shared area ({:?}), and this \
                         worker has none",
                        job.area
                    )),
                };
                let view = JobView {
                    job_id: job.job_id,
                    task: job.task,
                    fingerprint: job.fingerprint,
                    timeout: None,
                    args: &[],
                };
                (view, args)
            }
        };
        if let Some(capture) = capture {
            capture.start_job(job.job_id);
        }
        let (outcome, run_time) = match args {
            Err(why) => (
                Outcome::Failed(format!(
                    "cannot read the arguments of task `{}`: {why}",
                    job.task
                )),
                Duration::ZERO,
            ),
            Ok(args) => run_job_timed(job.task, job.fingerprint, args),
        };
        let printed = capture.and_then(|capture| capture.end_job(job.job_id));
        for piece in printed.map(JobOutput::into_pieces).unwrap_or_default() {
            // Within the frame limit by the capture's bound; were it not, the output alone
            // is lost, not the worker.
            match write_frame(&mut output, &FromWorker::Output(piece), "output", limit) {
                Err(WorkerError::TooLarge { .. }) => {}
                other => other?,
            }
        }
        let reply = FromWorker::Reply(JobReply {
            job_id: job.job_id,
            outcome,
            run_time,
        });
        match write_frame(&mut output, &reply, "reply", limit) {
            Err(WorkerError::TooLarge { len, limit, .. }) => {
                let reply = FromWorker::Reply(JobReply {
                    job_id: job.job_id,
                    outcome: Outcome::Failed(format!(
                        "the result of task `{}` is {len} bytes when encoded, above the \
                         node's limit of {limit} bytes",
                        job.task
                    )),
                    run_time,
                });
                write_frame(&mut output, &reply, "reply", limit)?;
            }
            other => other?,
        }
        if len <= KEEP_BUFFER && buffer.len() > KEEP_BUFFER {
            buffer = Vec::new();
        }
    }
    Ok(())
}

/// Writes this process's [`WorkerHello`] on `output`, the first frame of every worker;
/// returns the buffered output.
pub(super) fn say_hello<W: Write>(output: W, limit: u32) -> Result<BufWriter<W>, WorkerError> {
    let mut output = BufWriter::new(output);
    write_frame(
        &mut output,
        &WorkerHello::of_this_process(),
        "worker hello",
        limit,
    )?;
    Ok(output)
}

/// Runs one job of this program's registry, as every kind of worker does: the task named
/// `task`, if its signature has `fingerprint`, on the encoded `args`.
pub fn run_job(task: &str, fingerprint: u64, args: &[u8]) -> Outcome {
    match registry().invoke(task, Some(fingerprint), args) {
        Ok(result) => Outcome::Ok(result),
        Err(InvokeError::Panicked(message)) => Outcome::Panicked(message),
        Err(other) => Outcome::Failed(other.to_string()),
    }
}

/// [`run_job`], timed: the outcome and how long the job ran here, which the reply carries
/// so that the client's statistics count the job's run time, not its round trip.
pub(super) fn run_job_timed(task: &str, fingerprint: u64, args: &[u8]) -> (Outcome, Duration) {
    let start = Instant::now();
    let outcome = run_job(task, fingerprint, args);
    (outcome, start.elapsed())
}

/// A job frame buffer up to this size is kept for the next job. A larger one is kept only
/// while large jobs follow one another: refilling pages already mapped costs far less than
/// faulting in fresh ones, and the first small job lets it go.
const KEEP_BUFFER: usize = 1 << 20;
