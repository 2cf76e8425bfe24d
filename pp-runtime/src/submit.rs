//! Submissions: [`Server::submit`], and with options [`JobBuilder`] for one job,
//! [`Template`] for many.

use crate::error::JobError;
use crate::group::Group;
use crate::job::{Callback, Job};
use crate::limits::JobLimits;
use crate::server::Server;
use crate::task::{Task, TaskFn};
use std::sync::Arc;
use std::time::Duration;

impl Server {
    /// Submits `task` with `args` (a tuple: `(x,)` for one argument) and returns its [`Job`].
    pub fn submit<F: TaskFn>(&self, task: Task<F>, args: F::Args) -> Job<F::Output> {
        self.job(task, args).submit()
    }

    /// Starts a submission that can carry a callback, a group, a time limit and retries;
    /// finish it with [`JobBuilder::submit`].
    pub fn job<F: TaskFn>(&self, task: Task<F>, args: F::Args) -> JobBuilder<'_, F> {
        JobBuilder::new(self, task, args)
    }

    /// A template for many submissions of `task` with the same callback and group
    /// (PP's `Template`).
    pub fn template<F: TaskFn>(&self, task: Task<F>) -> Template<'_, F> {
        Template::new(self, task)
    }
}

/// One submission being set up; made by [`Server::job`].
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// #[pp::parallel]
/// fn double(x: u64) -> u64 {
///     2 * x
/// }
///
/// let server = pp::Server::new()?;
/// let total = Arc::new(AtomicU64::new(0));
/// for x in 0..4 {
///     let total = Arc::clone(&total);
///     server
///         .job(double, (x,))
///         .callback(move |r| { total.fetch_add(*r.as_ref().unwrap(), Ordering::Relaxed); })
///         .group("doubles")
///         .submit();
/// }
/// server.wait_group("doubles");
/// assert_eq!(total.load(Ordering::Relaxed), 12);
/// # Ok::<(), pp::Error>(())
/// ```
#[must_use = "nothing is submitted until `.submit()` is called"]
pub struct JobBuilder<'s, F: TaskFn> {
    server: &'s Server,
    task: Task<F>,
    args: F::Args,
    callback: Option<Callback<F::Output>>,
    group: Option<Arc<Group>>,
    limits: JobLimits,
}

impl<'s, F: TaskFn> JobBuilder<'s, F> {
    pub(crate) fn new(server: &'s Server, task: Task<F>, args: F::Args) -> Self {
        JobBuilder {
            server,
            task,
            args,
            callback: None,
            group: None,
            limits: JobLimits::default(),
        }
    }

    /// Runs `callback` on the job's result (or error) when it finishes, on the worker
    /// thread, before the job counts as finished for `wait()`. A panic in the callback is
    /// logged and counted in the statistics; it does not affect the job's result.
    pub fn callback(
        mut self,
        callback: impl FnOnce(&Result<F::Output, JobError>) + Send + 'static,
    ) -> Self {
        self.callback = Some(Box::new(callback));
        self
    }

    /// Puts the job in group `group`, which [`Server::wait_group`] waits for.
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(self.server.group(group));
        self
    }

    /// Limits each attempt of the job to `limit`, counted from when it starts running (time
    /// in the queue does not count); default: the server's
    /// [`job_timeout`](crate::ServerBuilder::job_timeout), or none.
    ///
    /// At the deadline the job ends with [`JobError::TimedOut`]: [`Job::result`], the
    /// future and the callback are released then. On a node (or an isolated local worker)
    /// the worker running it is stopped and replaced. On a local worker thread, which
    /// cannot be stopped, the job runs on until it returns, its result dropped (it is not
    /// retried); a long job can call [`should_stop`](crate::should_stop) to return early.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// #[pp::parallel]
    /// fn patient(ms: u64) -> u64 {
    ///     let start = std::time::Instant::now();
    ///     while start.elapsed() < Duration::from_millis(ms) && !pp::should_stop() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///     }
    ///     ms
    /// }
    ///
    /// let server = pp::Server::builder().ncpus(1).build()?;
    /// let job = server.job(patient, (60_000,)).timeout(Duration::from_millis(50)).submit();
    /// assert!(matches!(job.result(), Err(pp::JobError::TimedOut { .. })));
    /// # Ok::<(), pp::Error>(())
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.limits.timeout = Some(limit);
        self
    }

    /// How many times the job runs again after an attempt that ended `TimedOut` or
    /// `WorkerCrashed` (on a node or an isolated local worker) before it fails with that
    /// error; default: the server's [`retries`](crate::ServerBuilder::retries), which
    /// explains the defaults without it.
    pub fn retries(mut self, retries: u32) -> Self {
        self.limits.retries = Some(retries);
        self
    }

    /// Submits the job.
    pub fn submit(self) -> Job<F::Output> {
        self.server
            .enqueue(self.task, self.args, self.callback, self.group, self.limits)
    }
}

type SharedCallback<R> = Arc<dyn Fn(&Result<R, JobError>) + Send + Sync>;

/// A task with a fixed callback and group, for many submissions (PP's `Template`);
/// made by [`Server::template`].
#[must_use = "a Template does nothing until `.submit(args)` is called"]
pub struct Template<'s, F: TaskFn> {
    server: &'s Server,
    task: Task<F>,
    callback: Option<SharedCallback<F::Output>>,
    group: Option<Arc<Group>>,
    limits: JobLimits,
}

impl<'s, F: TaskFn> Template<'s, F> {
    pub(crate) fn new(server: &'s Server, task: Task<F>) -> Self {
        Template {
            server,
            task,
            callback: None,
            group: None,
            limits: JobLimits::default(),
        }
    }

    /// The callback every job of this template runs; see [`JobBuilder::callback`].
    pub fn callback(
        mut self,
        callback: impl Fn(&Result<F::Output, JobError>) + Send + Sync + 'static,
    ) -> Self {
        self.callback = Some(Arc::new(callback));
        self
    }

    /// The group every job of this template joins.
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(self.server.group(group));
        self
    }

    /// The time limit of each attempt of every job of this template; see
    /// [`JobBuilder::timeout`].
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.limits.timeout = Some(limit);
        self
    }

    /// The retries of every job of this template; see [`JobBuilder::retries`].
    pub fn retries(mut self, retries: u32) -> Self {
        self.limits.retries = Some(retries);
        self
    }

    /// Submits one job with `args`.
    pub fn submit(&self, args: F::Args) -> Job<F::Output> {
        let callback = self
            .callback
            .clone()
            .map(|callback| -> Callback<F::Output> { Box::new(move |result| callback(result)) });
        self.server
            .enqueue(self.task, args, callback, self.group.clone(), self.limits)
    }
}
