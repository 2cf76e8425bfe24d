//! A progress bar on standard error while a thread waits for jobs: `Server::wait`,
//! `wait_group`, a `par!` run, and results read one by one (`Job::result`).
//!
//! Off by default; on with `PP_PROGRESS=1` or `ServerBuilder::progress(true)`, and only
//! when standard error is a terminal (when it is not, nothing is drawn and nothing said).
//! When off, a server has no [`ProgressBar`] at all: jobs and waits pay one `None` check.
//!
//! A *session* starts when a wait begins while jobs are unfinished, and ends when none is:
//! its total is the jobs unfinished when it started plus those submitted while it runs
//! (jobs finished before the bar started are not counted, so the rate and ETA are those of
//! the work being waited for). Done counts come from the executors' statistics rows (the
//! per-node counts too), unfinished ones from the queue's pending count; a `par!` run
//! counts its own chunks. One drawing thread per server, started by the first wait, draws
//! at most [`TICK`]⁻¹ times a second, and only while some thread is blocked in a wait: a
//! wait shorter than [`FIRST_DRAW_AFTER`] draws nothing. The last draw shows the total of
//! the total and ends the line, so the bar ends at the total; it is drawn by the waiter
//! that sees the last job finished, before its wait returns.
//!
//! pp's own messages (`crate::say`) erase a bar on screen before their line
//! ([`erase_progress_line`]); other output on the terminal (the program's, or a `tracing`
//! subscriber's) lands after the bar's text until the next draw.

use crate::stats::ExecutorStats;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The environment variable that turns the progress bar on (`1`) or off (`0`).
pub(crate) const PROGRESS_ENV: &str = "PP_PROGRESS";

/// The time between two draws.
const TICK: Duration = Duration::from_millis(100);

/// How long a session runs before its first draw: shorter waits show no bar.
const FIRST_DRAW_AFTER: Duration = Duration::from_millis(200);

/// How long a waiter whose job just finished waits for the queue to count it finished, so
/// that it draws the final line itself (the result is visible a moment before the count).
const SETTLE: Duration = Duration::from_millis(2);

/// Width used when the terminal's cannot be read.
const DEFAULT_WIDTH: usize = 80;

/// The widest the bar itself (between the brackets) gets.
const MAX_BAR_CELLS: usize = 30;

/// Whether a bar is on screen without its line ended: pp's messages erase it first.
static ON_SCREEN: AtomicBool = AtomicBool::new(false);

/// Erases a progress bar drawn on the terminal, so that a whole line written next (on
/// `terminal`, standard error held locked by the caller, or standard output) starts at the left edge; the
/// next draw brings the bar back. For pp's own messages and a job's forwarded output. Costs
/// one atomic load when no bar is drawn.
pub fn erase_progress_line(terminal: &mut impl Write) {
    if ON_SCREEN.swap(false, Ordering::Relaxed) {
        let _ = terminal.write_all(b"\r\x1b[2K");
    }
}

/// `PP_PROGRESS` as the builder takes it: `None` when unset or empty. An unknown value is
/// said once per process and means off.
pub(crate) fn setting_from_env() -> Option<bool> {
    static SAID: AtomicBool = AtomicBool::new(false);
    let value = std::env::var(PROGRESS_ENV).ok()?;
    if value.trim().is_empty() {
        return None;
    }
    let setting = parse_setting(&value);
    if setting.is_none() && !SAID.swap(true, Ordering::Relaxed) {
        crate::warn!(
            "{PROGRESS_ENV}={value:?} is neither on (1, on, true, yes) nor off (0, off, false, \
             no); the progress bar stays off"
        );
    }
    Some(setting.unwrap_or(false))
}

/// A `PP_PROGRESS` value: `Some(on)`, or `None` for a value that means neither.
fn parse_setting(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Whether a server asked to show progress draws it: only on a terminal.
pub(crate) fn drawable() -> bool {
    std::io::stderr().is_terminal()
}

/// What the bar reads from a server's queue (implemented by the queue, in `server`).
pub(crate) trait QueueCounts: Send + Sync {
    /// Jobs submitted and not yet finished (what `wait` waits for).
    fn unfinished(&self) -> usize;
    /// Jobs still in the queue, not yet taken by an executor.
    fn queued(&self) -> usize;
    /// The executors' statistics rows: jobs done per place.
    fn rows(&self) -> Vec<ExecutorStats>;
}

/// What the bar reads from a `par!` run (implemented by its scope).
pub(crate) trait ChunkCounts: Send + Sync {
    /// Chunks over (run or skipped), and chunks in all.
    fn chunks_over(&self) -> (usize, usize);
}

/// What a session counts: the server's jobs, or one `par!` run's chunks.
#[derive(Clone)]
pub(crate) enum Source {
    /// Jobs of the server's queue.
    Queue,
    /// Chunks of one `par!` run.
    Chunks(Arc<dyn ChunkCounts>),
}

/// A server's progress bar: the sessions and the thread that draws them.
pub(crate) struct ProgressBar {
    queue: Weak<dyn QueueCounts>,
    state: Mutex<BarState>,
    /// Wakes the drawing thread: a session started, or the server stops.
    wake: Condvar,
    drawer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct BarState {
    /// Threads blocked in a wait now.
    blocked: usize,
    session: Option<Session>,
    stopping: bool,
    drawer_started: bool,
}

struct Session {
    source: Source,
    started: Instant,
    /// Jobs done per executor row when the session started.
    rows_before: Vec<(String, u64)>,
    /// Whether a line was drawn: then the session's end draws the final line.
    shown: bool,
    last_draw: Option<Instant>,
}

/// What one line shows.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    done: u64,
    total: u64,
    elapsed: Duration,
    /// Jobs done per place since the session started (places with none left out).
    places: Vec<(String, u64)>,
}

/// A thread's wait, counted while it blocks; ends the session if the wait saw the last job
/// finish. Made by [`ProgressBar::wait`].
pub(crate) struct ProgressWait<'a> {
    bar: &'a ProgressBar,
    /// The wait was for one job's result, which is visible before the job counts finished.
    settle: bool,
}

impl Drop for ProgressWait<'_> {
    fn drop(&mut self) {
        self.bar.end_wait(self.settle);
    }
}

impl ProgressBar {
    /// A bar for the server whose queue is `queue`; no thread until the first wait.
    pub(crate) fn new(queue: Weak<dyn QueueCounts>) -> Arc<ProgressBar> {
        Arc::new(ProgressBar {
            queue,
            state: Mutex::new(BarState::default()),
            wake: Condvar::new(),
            drawer: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BarState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the calling thread as blocked in a wait until the returned guard is dropped;
    /// starts a session (and the drawing thread) if work of `source` is unfinished. `settle`:
    /// the wait is for one job's result (see [`SETTLE`]).
    pub(crate) fn wait(self: &Arc<Self>, source: Source, settle: bool) -> ProgressWait<'_> {
        let mut state = self.lock();
        state.blocked += 1;
        if state.session.is_none() && !state.stopping {
            if let Some(queue) = self.queue.upgrade() {
                if !is_finished(&source, queue.as_ref()) {
                    state.session = Some(Session {
                        source,
                        started: Instant::now(),
                        rows_before: queue.rows().into_iter().map(|r| (r.name, r.jobs)).collect(),
                        shown: false,
                        last_draw: None,
                    });
                    self.start_drawer(&mut state);
                    self.wake.notify_all();
                }
            }
        }
        ProgressWait { bar: self, settle }
    }

    fn start_drawer(self: &Arc<Self>, state: &mut BarState) {
        if state.drawer_started {
            return;
        }
        state.drawer_started = true;
        let bar = Arc::clone(self);
        match std::thread::Builder::new()
            .name("pp-progress".into())
            .spawn(move || bar.draw_loop())
        {
            Ok(handle) => *self.drawer.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
            Err(error) => crate::debug!(%error, "no thread for the progress bar; none is drawn"),
        }
    }

    fn end_wait(&self, settle: bool) {
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        if settle && self.lock().session.as_ref().is_some_and(|s| s.shown) {
            let until = Instant::now() + SETTLE;
            while queue.unfinished() == 1 && queue.queued() == 0 && Instant::now() < until {
                std::thread::yield_now();
            }
        }
        let mut state = self.lock();
        state.blocked = state.blocked.saturating_sub(1);
        let finished = state
            .session
            .as_ref()
            .is_some_and(|session| is_finished(&session.source, queue.as_ref()));
        if finished {
            if let Some(session) = state.session.take() {
                if session.shown {
                    draw(&snapshot(&session, queue.as_ref()), true);
                }
            }
        }
    }

    /// The drawing thread: a draw per [`TICK`] while a session runs and a thread waits.
    fn draw_loop(&self) {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return;
            }
            let Some(session) = &state.session else {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let due = match session.last_draw {
                Some(last) => last + TICK,
                None => session.started + FIRST_DRAW_AFTER,
            };
            let now = Instant::now();
            if now < due {
                state = self
                    .wake
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            self.tick(&mut state, now);
        }
    }

    /// One draw: the final line if the session's work is all done, else the bar if a thread
    /// is blocked (with none blocked the bar stays as it is).
    fn tick(&self, state: &mut BarState, now: Instant) {
        let Some(queue) = self.queue.upgrade() else {
            state.session = None;
            return;
        };
        let blocked = state.blocked;
        let Some(session) = state.session.as_mut() else {
            return;
        };
        session.last_draw = Some(now);
        if is_finished(&session.source, queue.as_ref()) {
            if session.shown {
                draw(&snapshot(session, queue.as_ref()), true);
            }
            state.session = None;
        } else if blocked > 0 {
            draw(&snapshot(session, queue.as_ref()), false);
            session.shown = true;
        }
    }

    /// Ends a bar on screen (the server is dropped) and stops the drawing thread.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stopping = true;
        if let (Some(session), Some(queue)) = (state.session.take(), self.queue.upgrade()) {
            if session.shown {
                draw(&snapshot(&session, queue.as_ref()), true);
            }
        }
        self.wake.notify_all();
        drop(state);
        let drawer = self.drawer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(drawer) = drawer {
            // The thread only draws; a panic there is not the server's to report.
            let _ = drawer.join();
        }
    }
}

fn is_finished(source: &Source, queue: &dyn QueueCounts) -> bool {
    match source {
        Source::Queue => queue.unfinished() == 0,
        Source::Chunks(chunks) => {
            let (over, all) = chunks.chunks_over();
            over >= all
        }
    }
}

fn snapshot(session: &Session, queue: &dyn QueueCounts) -> Snapshot {
    let rows = queue.rows();
    let places: Vec<(String, u64)> = rows
        .into_iter()
        .map(|row| {
            let before = session
                .rows_before
                .iter()
                .find(|(name, _)| *name == row.name)
                .map_or(0, |(_, jobs)| *jobs);
            (row.name, row.jobs.saturating_sub(before))
        })
        .filter(|(_, jobs)| *jobs > 0)
        .collect();
    let (done, total) = match &session.source {
        Source::Queue => {
            let done: u64 = places.iter().map(|(_, jobs)| jobs).sum();
            (done, done + queue.unfinished() as u64)
        }
        Source::Chunks(chunks) => {
            let (over, all) = chunks.chunks_over();
            (over as u64, all as u64)
        }
    };
    Snapshot {
        done,
        total,
        elapsed: session.started.elapsed(),
        places,
    }
}

/// Draws `snapshot` over the bar's line; `last`: the session's final line, which ends the
/// line.
fn draw(snapshot: &Snapshot, last: bool) {
    let line = render(snapshot, terminal_width(), last);
    let mut stderr = std::io::stderr().lock();
    // A terminal that fails a write has nothing better to show.
    let _ = stderr.write_all(format!("\r\x1b[2K{line}").as_bytes());
    if last {
        let _ = stderr.write_all(b"\n");
    }
    let _ = stderr.flush();
    ON_SCREEN.store(!last, Ordering::Relaxed);
}

/// The bar's line, at most `width - 1` characters (a line that fills the last column may
/// wrap, and `\r` would then not reach its start):
/// `[#########.........] 57/200  28.5 jobs/s  ETA 5s  local: 40, 127.0.0.1:60000: 17`.
fn render(snapshot: &Snapshot, width: usize, last: bool) -> String {
    let Snapshot {
        done,
        total,
        elapsed,
        ref places,
    } = *snapshot;
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    let time = if last {
        format!("in {}", duration_text(seconds))
    } else if rate > 0.0 {
        let left = total.saturating_sub(done) as f64 / rate;
        format!("ETA {}", duration_text(left))
    } else {
        "ETA ?".to_owned()
    };
    let mut info = format!(" {done}/{total}  {rate:.1} jobs/s  {time}");
    if !places.is_empty() {
        info.push(' ');
        for (i, (name, jobs)) in places.iter().enumerate() {
            let _ = write!(info, "{} {name}: {jobs}", if i == 0 { "" } else { "," });
        }
    }
    let room = width.saturating_sub(1);
    let info_len = info.chars().count();
    let cells = room.saturating_sub(info_len + 2).clamp(10, MAX_BAR_CELLS);
    // An empty total counts as complete.
    let filled = (cells as u64 * done.min(total))
        .checked_div(total)
        .map_or(cells, |cells| cells as usize);
    let line = format!(
        "[{}{}]{info}",
        "#".repeat(filled),
        ".".repeat(cells - filled)
    );
    line.chars().take(room).collect()
}

/// `42s`, `3m05s`, `2h07m`.
fn duration_text(seconds: f64) -> String {
    let whole = seconds.round().max(0.0) as u64;
    match whole {
        0..60 => format!("{:.1}s", seconds.max(0.0)),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
    }
}

/// The terminal's width in columns, from standard error; [`DEFAULT_WIDTH`] if unknown.
fn terminal_width() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ writes a `winsize` into the struct we pass, nothing else.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
        if ok && size.ws_col > 0 {
            return usize::from(size.ws_col);
        }
    }
    DEFAULT_WIDTH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(done: u64, total: u64, secs: u64) -> Snapshot {
        Snapshot {
            done,
            total,
            elapsed: Duration::from_secs(secs),
            places: vec![("local".into(), 40), ("127.0.0.1:60000".into(), 17)],
        }
    }

    #[test]
    fn settings_parse_and_unknown_values_are_refused() {
        assert_eq!(parse_setting("1"), Some(true));
        assert_eq!(parse_setting(" ON "), Some(true));
        assert_eq!(parse_setting("0"), Some(false));
        assert_eq!(parse_setting("off"), Some(false));
        assert_eq!(parse_setting("loud"), None);
    }

    #[test]
    fn a_line_shows_counts_rate_eta_and_places() {
        let line = render(&snapshot(57, 200, 2), 120, false);
        assert!(line.starts_with("[########"), "{line}");
        assert!(
            line.ends_with("] 57/200  28.5 jobs/s  ETA 5.0s  local: 40, 127.0.0.1:60000: 17"),
            "{line}"
        );
        let last = render(&snapshot(200, 200, 4), 120, true);
        assert!(last.starts_with(&format!("[{}]", "#".repeat(30))), "{last}");
        assert!(last.contains(" 200/200  50.0 jobs/s  in 4.0s"), "{last}");
    }

    #[test]
    fn a_line_fits_the_terminal() {
        for width in [1, 20, 40, 80] {
            let line = render(&snapshot(57, 200, 2), width, false);
            assert!(line.chars().count() < width.max(2), "{width}: {line}");
        }
        assert_eq!(
            render(&snapshot(0, 10, 0), 80, false).matches('#').count(),
            0
        );
        assert!(render(&snapshot(0, 10, 0), 80, false).contains("ETA ?"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(4.04), "4.0s");
        assert_eq!(duration_text(185.0), "3m05s");
        assert_eq!(duration_text(7620.0), "2h07m");
    }
}
