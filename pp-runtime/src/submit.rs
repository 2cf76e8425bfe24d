//! Submissions: [`Server::submit`], and with options [`JobBuilder`] for one job,
//! [`Template`] for many.

use crate::error::JobError;
use crate::job::{Callback, Job};
use crate::pending::Pending;
use crate::server::Server;
use crate::task::{Task, TaskFn};
use std::sync::Arc;

impl Server {
    /// Submits `task` with `args` (a tuple: `(x,)` for one argument) and returns its [`Job`].
    pub fn submit<F: TaskFn>(&self, task: Task<F>, args: F::Args) -> Job<F::Output> {
        self.job(task, args).submit()
    }

    /// Starts a submission that can carry a callback and a group; finish it with
    /// [`JobBuilder::submit`].
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
    group: Option<Arc<Pending>>,
}

impl<'s, F: TaskFn> JobBuilder<'s, F> {
    pub(crate) fn new(server: &'s Server, task: Task<F>, args: F::Args) -> Self {
        JobBuilder {
            server,
            task,
            args,
            callback: None,
            group: None,
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

    /// Submits the job.
    pub fn submit(self) -> Job<F::Output> {
        self.server
            .enqueue(self.task, self.args, self.callback, self.group)
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
    group: Option<Arc<Pending>>,
}

impl<'s, F: TaskFn> Template<'s, F> {
    pub(crate) fn new(server: &'s Server, task: Task<F>) -> Self {
        Template {
            server,
            task,
            callback: None,
            group: None,
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

    /// Submits one job with `args`.
    pub fn submit(&self, args: F::Args) -> Job<F::Output> {
        let callback = self
            .callback
            .clone()
            .map(|callback| -> Callback<F::Output> { Box::new(move |result| callback(result)) });
        self.server
            .enqueue(self.task, args, callback, self.group.clone())
    }
}
