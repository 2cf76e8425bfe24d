//! Job control seen from remote executors: the retries policy of `TimedOut` and
//! `WorkerCrashed` attempts, and cancels of jobs queued, held or given back.

use super::*;

#[test]
fn a_timed_out_job_is_not_retried_by_default_and_says_its_limit() {
    let (fixture, job) = queued_job_with(JobLimits {
        timeout: Some(Duration::from_millis(250)),
        retries: None,
    });
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let node = fixture.register_executor("a:1");
    let taken = feed.take().unwrap();
    assert_eq!(taken.timeout(), Some(Duration::from_millis(250)));
    feed.complete(
        taken,
        &node,
        Outcome::TimedOut(Duration::from_millis(250)),
        Duration::ZERO,
    );
    assert!(feed.take().is_none(), "not retried");
    assert_eq!(
        job.result(),
        Err(JobError::TimedOut {
            task: DOUBLE.id().into(),
            after: Duration::from_millis(250),
            attempts: 1
        })
    );
    assert_eq!(rescheduled(queue), 0);
    assert_eq!(in_flight(queue), 0);
    assert_eq!(queue.counters.timed_out.load(Ordering::SeqCst), 1);
    assert_eq!(queue.executor_stats()[1].jobs, 1, "the failure counts once");
    queue.shutdown();
}

#[test]
fn retries_count_timeouts_and_crashes_and_the_error_names_the_attempts() {
    let (fixture, job) = queued_job_with(retries(3));
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let nodes = ["a:1", "b:2", "c:3", "d:4"].map(|name| fixture.register_executor(name));
    for (attempt, node) in nodes.iter().enumerate() {
        let taken = feed.take().expect("queued again");
        assert_eq!(taken.failed_on().len(), attempt);
        let outcome = if attempt % 2 == 0 {
            Outcome::TimedOut(Duration::from_secs(1))
        } else {
            Outcome::WorkerCrashed("worker killed by SIGKILL".into())
        };
        feed.complete(taken, node, outcome, Duration::ZERO);
    }
    assert!(feed.take().is_none());
    assert_eq!(rescheduled(queue), 3);
    match job.result() {
        Err(JobError::WorkerCrashed { message, .. }) => {
            assert!(message.contains("attempt 4"), "{message}");
            assert!(message.contains("a:1, b:2, c:3, d:4"), "{message}");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    queue.shutdown();
}

#[test]
fn explicit_retries_bound_the_attempts_of_a_job_that_times_out() {
    for (retries_set, attempts) in [(0, 1), (4, 5)] {
        let (fixture, job) = queued_job_with(retries(retries_set));
        let (queue, feed) = (&fixture.queue, &fixture.feed);
        let node = fixture.register_executor("a:1");
        for _ in 0..attempts {
            let taken = feed.take().expect("queued again");
            let outcome = Outcome::TimedOut(Duration::from_secs(1));
            feed.complete(taken, &node, outcome, Duration::ZERO);
        }
        assert!(feed.take().is_none());
        assert!(
            matches!(job.result(), Err(JobError::TimedOut { attempts: a, .. }) if a == attempts),
            "retries({retries_set})"
        );
        queue.shutdown();
    }
}

#[test]
fn a_cancelled_queued_job_is_skipped_by_takers_and_not_counted_queued() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    assert_eq!(queue.queued(), 1);
    assert!(job.cancel());
    assert!(!job.cancel());
    assert_eq!(queue.queued(), 0);
    assert_eq!(queue.pending.count(), 0);
    assert!(
        feed.take().is_none(),
        "the cancelled job is dropped, not taken"
    );
    assert_eq!(queue.queued(), 0);
    assert_eq!(in_flight(queue), 0);
    assert_eq!(
        fixture.nodes.1.load(Ordering::SeqCst),
        0,
        "no executor held it"
    );
    assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    queue.shutdown();
}

#[test]
fn a_cancelled_job_in_an_executors_hands_leaves_the_flight_and_the_executors_are_told() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let node = fixture.register_executor("a:1");
    let taken = feed.take().unwrap();
    assert_eq!(in_flight(queue), 1);
    assert!(!taken.is_settled());
    assert!(job.cancel());
    assert!(taken.is_settled());
    assert_eq!(in_flight(queue), 0);
    assert_eq!(queue.pending.count(), 0);
    assert_eq!(fixture.nodes.1.load(Ordering::SeqCst), 1);
    // The executor's late report is dropped, counted nowhere.
    let bytes = crate::codec::encode(&42u64).unwrap();
    feed.complete(taken, &node, Outcome::Ok(bytes), Duration::ZERO);
    assert_eq!(in_flight(queue), 0);
    assert_eq!(queue.executor_stats()[1].jobs, 0);
    assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    queue.shutdown();
}

#[test]
fn a_job_cancelled_while_given_back_is_not_queued_again() {
    let (fixture, job) = queued_job();
    let (queue, feed) = (&fixture.queue, &fixture.feed);
    let node = fixture.register_executor("a:1");
    let taken = feed.take().unwrap();
    assert!(job.cancel());
    feed.lost(taken, &node);
    assert_eq!(queue.queued(), 0);
    assert!(feed.take().is_none());
    assert_eq!(in_flight(queue), 0);
    assert_eq!(rescheduled(queue), 0);
    assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    queue.shutdown();
}
