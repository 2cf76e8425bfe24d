//! Scoped chunk runs: closures that borrow the caller's stack run as jobs on a server's
//! local pool, and the call returns only when every chunk that started has finished.
//!
//! This is what `par!` expands to. The chunks run as jobs of the server's queue (its
//! local-only part: they borrow the caller's data), one [`ChunkJob`] per worker, each
//! claiming the next unclaimed chunk of the [`Scope`] until none is left; every chunk counts
//! as a job in the statistics. In cluster mode a `par!` site's chunks are instead one job
//! each, which nodes can run from bytes (see [`crate::portable_chunk`]).
//! A caller that is itself a worker thread (`par!` inside a job, or inside another `par!`)
//! claims chunks too instead of blocking a worker its own chunks may need; any other
//! caller just waits, so no more than `ncpus` chunks run at once.

use crate::codec::{self, CodecError};
use crate::error::panic_message;
use crate::portable_chunk::PortableChunkJob;
use crate::progress::Source;
use crate::scope::{Body, ChunkJob, Remote, RemoteSide, Scope, WaitGuard};
use crate::server::Server;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::panic::resume_unwind;
use std::sync::{Arc, Mutex, PoisonError};

/// Runs `body(0)` to `body(chunks - 1)` as jobs on `server` and returns when all are over.
/// Returns the panic payload of the lowest chunk that panicked, and whether the server
/// cancelled chunks.
fn run(
    server: &Server,
    task: &'static str,
    chunks: usize,
    body: &Body<'_>,
    remote: Option<Remote<'_>>,
) -> (Option<Box<dyn Any + Send>>, bool) {
    if chunks == 0 {
        return (None, false);
    }
    let remote = remote
        .filter(|_| server.has_cluster())
        .map(|remote| RemoteSide::new(remote));
    // SAFETY: this function does not return, nor unwind, before `WaitGuard` saw every
    // chunk finished; after that, claims find no chunk left and never touch `body`.
    let scope = Arc::new(unsafe { Scope::new(task, chunks, body, remote) });
    // A caller that only waits shows the progress bar until the guard below has waited;
    // a worker thread runs chunks itself instead.
    let caller_waits = rayon::current_thread_index().is_none();
    let progress = (server.progress.as_ref())
        .filter(|_| caller_waits)
        .map(|bar| bar.wait(Source::Chunks(Arc::clone(&scope) as Arc<_>), false));
    let guard = WaitGuard(&scope);
    let queue = &server.queue;
    let workers = if scope.remote.is_some() {
        // Cluster mode: one job per chunk, which local workers and nodes alike may take.
        for _ in 0..chunks {
            queue.pending.add();
            queue.push(Box::new(PortableChunkJob::new(Arc::clone(&scope))));
        }
        chunks
    } else {
        // One job per worker that can take part: each claims chunks until none is left.
        // With no local worker the caller runs the chunks alone.
        let workers = server.pool.ncpus().min(chunks);
        for _ in 0..workers {
            queue.pending.add();
            queue.push(Box::new(ChunkJob(Arc::clone(&scope))));
        }
        workers
    };
    if workers == 0 || !caller_waits {
        // A worker thread must not just block: the chunks may need its slot.
        while scope.claim(Some(server.pool.counters())) {}
    }
    drop(guard);
    drop(progress);
    (scope.take_panic(), scope.was_cancelled())
}

/// Runs `f` on every chunk; `hit` on a result makes chunks above it skipped when they come
/// up. Returns each chunk's result (`None` for skipped chunks), in chunk order.
///
/// # Panics
/// Resumes the panic of the lowest chunk that panicked, once all started chunks are over;
/// panics if the server shut down before every chunk ran.
pub(crate) fn run_indexed<R, F, H>(
    server: &Server,
    task: &'static str,
    chunks: usize,
    hit: H,
    f: F,
) -> Vec<Option<R>>
where
    R: Send,
    F: Fn(usize) -> R + Sync,
    H: Fn(&R) -> bool + Sync,
{
    let slots: Mutex<Vec<Option<R>>> = Mutex::new((0..chunks).map(|_| None).collect());
    let put = |index: usize, result: R| {
        let hit = hit(&result);
        slots.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
        hit
    };
    let body = |index: usize| put(index, f(index));
    let outcome = run(server, task, chunks, &body, None);
    results(task, outcome, slots)
}

/// As [`run_indexed`], for a `par!` site whose chunks may also run on nodes in cluster
/// mode: `local(i)` computes chunk `i`'s partial here, `encode(i)` gives the arguments of
/// the site's registered function for chunk `i` (whose result is the same partial, encoded),
/// and `map` turns a partial into the chunk's result.
///
/// # Panics
/// As [`run_indexed`]; a chunk that failed on a node panics with the node's message.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_indexed_remote<P, R, F, M, H, E>(
    server: &Server,
    task: &'static str,
    fingerprint: u64,
    chunks: usize,
    hit: H,
    local: F,
    map: M,
    encode: E,
) -> Vec<Option<R>>
where
    P: DeserializeOwned,
    R: Send,
    F: Fn(usize) -> P + Sync,
    M: Fn(P) -> R + Sync,
    H: Fn(&R) -> bool + Sync,
    E: Fn(usize) -> Result<Vec<u8>, CodecError> + Sync,
{
    let slots: Mutex<Vec<Option<R>>> = Mutex::new((0..chunks).map(|_| None).collect());
    let put = |index: usize, result: R| {
        let hit = hit(&result);
        slots.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
        hit
    };
    let body = |index: usize| put(index, map(local(index)));
    let store = |index: usize, bytes: &[u8]| -> Result<bool, String> {
        let part: P = codec::decode(bytes).map_err(|e| e.to_string())?;
        Ok(put(index, map(part)))
    };
    let remote = Remote {
        fingerprint,
        encode: &encode,
        store: &store,
    };
    let outcome = run(server, task, chunks, &body, Some(remote));
    results(task, outcome, slots)
}

/// The chunks' results once every chunk is over: resumes the lowest chunk's panic.
fn results<R>(
    task: &'static str,
    (panic, cancelled): (Option<Box<dyn Any + Send>>, bool),
    slots: Mutex<Vec<Option<R>>>,
) -> Vec<Option<R>> {
    if let Some(payload) = panic {
        crate::debug!(
            task,
            "a chunk panicked: {}",
            panic_message(payload.as_ref())
        );
        resume_unwind(payload);
    }
    assert!(
        !cancelled,
        "pp: the server shut down before every chunk of `{task}` ran"
    );
    slots.into_inner().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Runs `f(0)`, `f(1)`, ..., `f(chunks - 1)` as jobs on this server's local workers and
    /// returns their results in index order. The closure may borrow from the caller's stack:
    /// the call returns only when every chunk has finished.
    ///
    /// The chunks run on this server's local workers (never on remote nodes: they borrow
    /// the caller's data), at most [`ncpus`](Server::ncpus) at once, ahead of queued
    /// submitted jobs since the caller waits for them; each chunk counts as a job in
    /// [`stats`](Server::stats). Called from a worker thread (inside a job, or inside
    /// another chunk), the calling thread runs chunks too, so nesting cannot deadlock.
    /// This is the runner behind [`par!`](https://docs.rs/pp/latest/pp/macro.par.html).
    ///
    /// # Panics
    /// If a chunk panics, chunks not yet started are skipped and, once the started ones
    /// have finished, the panic of the lowest panicking chunk resumes here. Also panics if
    /// the server shuts down before every chunk ran.
    ///
    /// # Examples
    /// ```
    /// let server = pp::Server::builder().ncpus(2).build()?;
    /// let data: Vec<u64> = (1..=100).collect();
    /// let sums = server.run_chunks(4, |i| data[i * 25..(i + 1) * 25].iter().sum::<u64>());
    /// assert_eq!(sums, vec![325, 950, 1575, 2200]);
    /// # Ok::<(), pp::Error>(())
    /// ```
    pub fn run_chunks<R, F>(&self, chunks: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(usize) -> R + Sync,
    {
        self.run_chunks_as("pp::run_chunks", chunks, f)
    }

    /// Runs `f` on chunks `0..chunks` as [`run_chunks`](Server::run_chunks) does and returns
    /// the `Some` of the lowest chunk that gave one. Once a chunk gave `Some`, chunks above
    /// it that have not started are skipped; chunks below it still run, so the result is
    /// the same as trying the chunks one after the other.
    ///
    /// # Panics
    /// As [`run_chunks`](Server::run_chunks).
    ///
    /// # Examples
    /// ```
    /// let server = pp::Server::builder().ncpus(2).build()?;
    /// let first = server.find_chunk(100, |i| (i % 7 == 3).then_some(i));
    /// assert_eq!(first, Some(3));
    /// # Ok::<(), pp::Error>(())
    /// ```
    pub fn find_chunk<R, F>(&self, chunks: usize, f: F) -> Option<R>
    where
        R: Send,
        F: Fn(usize) -> Option<R> + Sync,
    {
        self.find_chunk_as("pp::find_chunk", chunks, f)
    }

    /// [`run_chunks`](Server::run_chunks) with the task id that statistics and logs show.
    pub(crate) fn run_chunks_as<R, F>(&self, task: &'static str, chunks: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(usize) -> R + Sync,
    {
        run_indexed(self, task, chunks, |_| false, f)
            .into_iter()
            .map(|result| result.expect("a chunk that was not skipped has a result"))
            .collect()
    }

    /// [`find_chunk`](Server::find_chunk) with the task id that statistics and logs show.
    pub(crate) fn find_chunk_as<R, F>(&self, task: &'static str, chunks: usize, f: F) -> Option<R>
    where
        R: Send,
        F: Fn(usize) -> Option<R> + Sync,
    {
        run_indexed(self, task, chunks, Option::is_some, f)
            .into_iter()
            .flatten()
            .flatten()
            .next()
    }
}
