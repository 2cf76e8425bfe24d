//! The attempt policy of jobs that fail remotely, and straggler copies, driven by hand on a
//! queue with no local worker.

use super::*;
use crate::executor::{Executor, QueueView};
use crate::job::{Job, JobState, Polling, SPIN};
use crate::limits::JobLimits;
use crate::remote::RETRY_ELSEWHERE_WAIT;
use crate::stats::ExecutorStats;
use crate::task::Task;
use crate::typed_job::TypedJob;
use std::sync::Mutex;
use std::time::Instant;

/// A remote executor driven by the test: its rows are the nodes the test registered; it
/// counts the times it was told of jobs settled without it.
#[derive(Default)]
struct TestNodes(Mutex<Vec<ExecutorHandle>>, std::sync::atomic::AtomicUsize);

impl Executor for TestNodes {
    fn notify(&self, _queue: QueueView<'_>) {}

    fn settled_elsewhere(&self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }

    fn stats_rows(&self, rows: &mut Vec<ExecutorStats>) {
        rows.extend(self.0.lock().unwrap().iter().map(ExecutorHandle::stats));
    }

    fn shutdown(&self) {}
}

/// A queue with its local pool (no worker) and a test executor, and the feed on it.
struct Fixture {
    queue: Arc<JobQueue>,
    feed: JobFeed,
    nodes: Arc<TestNodes>,
    _pool: Arc<LocalPool>,
}

impl Fixture {
    /// A node's row in the statistics.
    fn register_executor(&self, name: &str) -> ExecutorHandle {
        let handle = ExecutorHandle::new(name);
        self.nodes.0.lock().unwrap().push(handle.clone());
        handle
    }
}

fn double(x: u64) -> u64 {
    2 * x
}

const DOUBLE: Task<fn(u64) -> u64> = Task::new("remote::tests::double", 1, double);

/// A queue with no local worker and a feed allowing 3 attempts.
fn fixture() -> Fixture {
    let queue = JobQueue::new();
    let pool = LocalPool::start(&queue, 0, true).unwrap();
    let nodes = Arc::new(TestNodes::default());
    queue.attach_remote(Arc::clone(&nodes) as Arc<dyn Executor>);
    let feed = JobFeed::new(&queue, &pool, 3);
    Fixture {
        queue,
        feed,
        nodes,
        _pool: pool,
    }
}

/// [`fixture`] with one queued job.
fn queued_job() -> (Fixture, Job<u64>) {
    queued_job_with(JobLimits::default())
}

/// [`fixture`] with one queued job with `limits`.
fn queued_job_with(limits: JobLimits) -> (Fixture, Job<u64>) {
    let fixture = fixture();
    let state =
        Arc::new(JobState::with_poll(Polling::spinning(SPIN)).for_job(DOUBLE.id(), None, None));
    fixture.queue.pending.add();
    let job = TypedJob::new(DOUBLE, (21,), Arc::clone(&state)).with_limits(limits);
    fixture.queue.push(Box::new(job));
    let handle = Job::on_queue(state, DOUBLE.id(), Arc::downgrade(&fixture.queue));
    (fixture, handle)
}

fn retries(n: u32) -> JobLimits {
    JobLimits {
        timeout: Some(Duration::from_secs(1)),
        retries: Some(n),
    }
}

fn rescheduled(queue: &JobQueue) -> u64 {
    queue.counters.rescheduled.load(Ordering::Relaxed)
}

fn in_flight(queue: &JobQueue) -> usize {
    queue.counters.in_flight.load(Ordering::SeqCst)
}

#[test]
fn a_job_lost_with_its_node_runs_again_until_the_attempt_limit_then_names_the_nodes() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    for (attempt, node) in ["a:1", "b:2", "c:3"].into_iter().enumerate() {
        let taken = feed.take().expect("the job is queued again");
        assert_eq!(taken.failed_on().len(), attempt);
        feed.lost(taken, &fixture.register_executor(node));
    }
    assert!(feed.take().is_none(), "not queued after the third loss");
    assert_eq!(in_flight(queue), 0, "a failed job is no longer in flight");
    assert_eq!(rescheduled(queue), 2);
    assert_eq!(
        queue.pending.count(),
        0,
        "the failed job counts as finished"
    );
    match job.result() {
        Err(JobError::NodeLost { task, nodes }) => {
            assert_eq!(task, "remote::tests::double");
            assert_eq!(nodes, ["a:1", "b:2", "c:3"]);
        }
        other => panic!("expected NodeLost, got {other:?}"),
    }
    queue.shutdown();
}

#[test]
fn a_rescheduled_job_completes_once_and_counts_once() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let (a, b) = (
        fixture.register_executor("a:1"),
        fixture.register_executor("b:2"),
    );
    feed.lost(feed.take().unwrap(), &a);
    let taken = feed.take().unwrap();
    assert_eq!(taken.failed_on(), ["a:1"]);
    let bytes = crate::codec::encode(&42u64).unwrap();
    feed.complete(taken, &b, Outcome::Ok(bytes), Duration::ZERO);
    assert_eq!(job.result(), Ok(42));
    let rows = queue.executor_stats();
    let jobs: Vec<(&str, u64)> = rows.iter().map(|r| (r.name.as_str(), r.jobs)).collect();
    assert_eq!(jobs, [("local", 0), ("a:1", 0), ("b:2", 1)]);
    assert_eq!(rescheduled(queue), 1);
    assert_eq!(queue.pending.count(), 0);
    queue.shutdown();
}

#[test]
fn a_worker_crash_is_an_attempt_and_the_last_one_is_the_error() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let node = fixture.register_executor("a:1");
    for _ in 0..3 {
        let taken = feed.take().expect("queued again after a crash");
        let outcome = Outcome::WorkerCrashed("worker killed by SIGABRT".into());
        feed.complete(taken, &node, outcome, Duration::ZERO);
    }
    assert!(feed.take().is_none());
    assert_eq!(rescheduled(queue), 2);
    match job.result() {
        Err(JobError::WorkerCrashed { message, .. }) => {
            assert!(message.starts_with("worker killed by SIGABRT"), "{message}");
            assert!(message.contains("attempt 3"), "{message}");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    assert_eq!(queue.executor_stats()[1].jobs, 1, "the failure counts once");
    queue.shutdown();
}

#[test]
fn a_job_given_back_at_shutdown_is_not_an_attempt() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    feed.requeue(feed.take().unwrap());
    assert_eq!(rescheduled(queue), 0);
    let taken = feed.take().unwrap();
    assert!(taken.failed_on().is_empty());
    queue.shutdown();
    feed.requeue(taken);
    assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
}

#[test]
fn a_straggler_copy_that_completes_first_wins_and_the_job_counts_once() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let (a, b) = (
        fixture.register_executor("a:1"),
        fixture.register_executor("b:2"),
    );
    let mut first = feed.take().unwrap();
    let mut copy = first.duplicate().expect("a first copy can be duplicated");
    assert!(first.duplicate().is_none(), "at most two copies");
    assert!(copy.duplicate().is_none(), "at most two copies");
    assert_eq!(copy.encode_args(), first.encode_args());
    let bytes = |v: u64| crate::codec::encode(&v).unwrap();
    feed.complete(copy, &b, Outcome::Ok(bytes(42)), Duration::ZERO);
    assert!(first.is_completed());
    assert_eq!(queue.pending.count(), 0);
    // The slow copy's result comes later: dropped, not counted again.
    feed.complete(first, &a, Outcome::Ok(bytes(7)), Duration::ZERO);
    assert_eq!(queue.pending.count(), 0, "not decremented twice");
    assert_eq!(job.result(), Ok(42));
    let rows = queue.executor_stats();
    let jobs: Vec<(&str, u64)> = rows.iter().map(|r| (r.name.as_str(), r.jobs)).collect();
    assert_eq!(jobs, [("local", 0), ("a:1", 0), ("b:2", 1)]);
    queue.shutdown();
}

#[test]
fn the_group_of_a_copied_job_counts_it_once() {
    let fixture = fixture();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let group = Arc::new(crate::group::Group::default());
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let state = Arc::new(JobState::with_poll(Polling::spinning(SPIN)).for_job(
        DOUBLE.id(),
        Some(Box::new(move |_: &Result<u64, JobError>| {
            counted.fetch_add(1, Ordering::SeqCst);
        })),
        Some(Arc::clone(&group)),
    ));
    queue.pending.add();
    group.pending.add();
    queue.push(Box::new(TypedJob::new(DOUBLE, (21,), Arc::clone(&state))));
    let node = fixture.register_executor("a:1");
    let mut first = feed.take().unwrap();
    let copy = first.duplicate().unwrap();
    for taken in [first, copy] {
        let bytes = crate::codec::encode(&42u64).unwrap();
        feed.complete(taken, &node, Outcome::Ok(bytes), Duration::ZERO);
    }
    assert_eq!(group.pending.count(), 0);
    assert_eq!(queue.pending.count(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the callback ran once");
    assert_eq!(queue.executor_stats()[1].jobs, 1);
    assert_eq!(Job::new(state, DOUBLE.id()).result(), Ok(42));
    queue.shutdown();
}

#[test]
fn a_copy_lost_while_the_other_runs_is_dropped_and_the_last_one_is_rescheduled() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let (a, b, c) = (
        fixture.register_executor("a:1"),
        fixture.register_executor("b:2"),
        fixture.register_executor("c:3"),
    );
    let mut first = feed.take().unwrap();
    let copy = first.duplicate().unwrap();
    feed.lost(first, &a);
    assert!(
        feed.take().is_none(),
        "the other copy still runs: nothing requeued"
    );
    assert_eq!(rescheduled(queue), 0);
    feed.lost(copy, &b);
    let again = feed.take().expect("both copies lost: the job runs again");
    assert_eq!(again.failed_on(), ["b:2"]);
    assert_eq!(rescheduled(queue), 1);
    assert!(feed.take().is_none(), "requeued once");
    let bytes = crate::codec::encode(&42u64).unwrap();
    feed.complete(again, &c, Outcome::Ok(bytes), Duration::ZERO);
    assert_eq!(job.result(), Ok(42));
    assert_eq!(queue.pending.count(), 0);
    queue.shutdown();
}

#[test]
fn a_copy_lost_after_the_job_completed_is_dropped() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let (a, b) = (
        fixture.register_executor("a:1"),
        fixture.register_executor("b:2"),
    );
    let mut first = feed.take().unwrap();
    let copy = first.duplicate().unwrap();
    let bytes = crate::codec::encode(&42u64).unwrap();
    feed.complete(first, &a, Outcome::Ok(bytes), Duration::ZERO);
    let outcome = Outcome::WorkerCrashed("worker killed by SIGKILL".into());
    feed.complete(copy, &b, outcome, Duration::ZERO);
    assert!(feed.take().is_none(), "a completed job is not rescheduled");
    assert_eq!(rescheduled(queue), 0);
    assert_eq!(queue.pending.count(), 0);
    assert_eq!(job.result(), Ok(42));
    queue.shutdown();
}

#[test]
fn two_copies_given_back_at_shutdown_cancel_the_job_once() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let mut first = feed.take().unwrap();
    let copy = first.duplicate().unwrap();
    queue.shutdown();
    feed.requeue(first);
    feed.requeue(copy);
    assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    assert_eq!(queue.pending.count(), 0);
    assert_eq!(queue.counters.cancelled.load(Ordering::Relaxed), 1);
    assert_eq!(in_flight(queue), 0);
}

/// A job is active from when a remote executor takes it until a completion of it is kept
/// (before its result can be read) or it goes back to the queue; its straggler's copy does
/// not count again. The node's row counts the run time the node reported, and the round
/// trip is kept apart.
#[test]
fn a_job_in_a_remote_executors_hands_is_active_until_its_result_is_kept() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let (a, b) = (
        fixture.register_executor("a:1"),
        fixture.register_executor("b:2"),
    );
    let mut first = feed.take().unwrap();
    assert_eq!((in_flight(queue), queue.queued()), (1, 0));
    let copy = first.duplicate().unwrap();
    assert_eq!(in_flight(queue), 1, "a copy is the same job");
    feed.lost(first, &a);
    assert_eq!(in_flight(queue), 1, "the copy still runs");
    feed.lost(copy, &b);
    assert_eq!(
        (in_flight(queue), queue.queued()),
        (0, 1),
        "back in the queue"
    );
    let again = feed.take().unwrap();
    assert_eq!(in_flight(queue), 1);
    a.record_round_trip(Duration::from_millis(900));
    let bytes = crate::codec::encode(&42u64).unwrap();
    feed.complete(again, &a, Outcome::Ok(bytes), Duration::from_millis(250));
    assert_eq!(in_flight(queue), 0);
    assert_eq!(job.result(), Ok(42));
    let row = a.stats();
    assert_eq!((row.jobs, row.job_time), (1, Duration::from_millis(250)));
    assert_eq!(a.average(), Duration::from_millis(250));
    assert_eq!(a.round_trip_average(), Duration::from_millis(900));
    queue.shutdown();
}

#[test]
fn a_retried_job_goes_to_another_node_while_one_can_take_it() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let (a, b) = (
        fixture.register_executor("a:1"),
        fixture.register_executor("b:2"),
    );
    let taken = feed
        .take_for(&a, || panic!("no retried job: not asked"))
        .job();
    feed.lost(taken.expect("the job is queued"), &a);
    match feed.take_for(&a, || true) {
        Take::NotBefore(at) => assert!(at > Instant::now(), "{at:?}"),
        other => panic!("a:1 failed it and b:2 can take it: {other:?}"),
    }
    assert_eq!(queue.queued(), 1, "left for another node");
    let taken = feed.take_for(&b, || true).job().expect("b:2 takes it");
    assert_eq!(taken.failed_on(), ["a:1"]);
    let bytes = crate::codec::encode(&42u64).unwrap();
    feed.complete(taken, &b, Outcome::Ok(bytes), Duration::ZERO);
    assert_eq!(job.result(), Ok(42));
    queue.shutdown();
}

#[test]
fn a_retried_job_goes_back_to_its_node_when_no_other_place_can_take_it() {
    let (fixture, _job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let a = fixture.register_executor("a:1");
    feed.lost(feed.take().unwrap(), &a);
    let taken = feed.take_for(&a, || false).job();
    assert!(taken.is_some(), "the only node takes it back at once");
    feed.requeue(taken.unwrap());
    queue.shutdown();
}

#[test]
fn a_retried_job_left_alone_too_long_is_taken_back() {
    let (fixture, _job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let a = fixture.register_executor("a:1");
    feed.lost(feed.take().unwrap(), &a);
    assert!(feed.take_for(&a, || true).job().is_none());
    // As if the other nodes had been full since the job was given back.
    queue.age_retries(RETRY_ELSEWHERE_WAIT);
    let taken = feed.take_for(&a, || true).job();
    assert!(taken.is_some(), "never held back past the wait");
    feed.requeue(taken.unwrap());
    queue.shutdown();
}

#[test]
fn local_workers_and_plain_takers_take_any_retried_job() {
    let (fixture, _job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let a = fixture.register_executor("a:1");
    feed.lost(feed.take().unwrap(), &a);
    let job = queue
        .pop_local()
        .expect("a local worker takes the retried job");
    assert_eq!(queue.queued(), 0);
    job.fail(JobError::Cancelled { task: "t".into() });
    queue.shutdown();
}

#[path = "job_control_tests.rs"]
mod job_control;
