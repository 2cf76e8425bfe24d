//! Straggler copies across real `ppserver` processes on 127.0.0.1: one node is made much
//! slower than the other, deterministically: every job it takes waits on its node until the
//! test removes a "hold" file (the node stays healthy and answers heartbeats). With copies
//! on, the run ends without that node; with copies off, its jobs wait for it.
//!
//! Every wait is bounded by [`WAIT`]; no assertion depends on how long something took.

mod support;

use pp::Server;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{assert_each_once, client, jobs_of, temp_dir, wait_until, Node, WAIT};

/// Sleeps `millis` ms; on the node whose pid is `held_on`, first waits (at most a minute)
/// while the file `hold` exists. Returns `x` and the pid of the node that ran it.
#[pp::parallel]
fn held_echo(x: u64, millis: u64, held_on: u32, hold: String) -> (u64, u32) {
    let node = std::os::unix::process::parent_id();
    if node == held_on {
        let start = Instant::now();
        while Path::new(&hold).exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(millis));
    (x, node)
}

/// A remote-only client of `nodes` with straggler copies `on` or off, once connected to
/// every node.
fn cluster(nodes: &[&Node], on: bool) -> Server {
    let server = client(nodes, |b| b.duplicate_stragglers(on));
    wait_until(&server, "every node connected", || {
        server.active_nodes().iter().all(|n| n.connected)
    });
    server
}

/// A hold file that exists until [`Hold::release`] or drop.
struct Hold(PathBuf);

impl Hold {
    fn new() -> Self {
        let dir = temp_dir("hold");
        std::fs::create_dir_all(&dir).expect("create the hold directory");
        let path = dir.join("hold");
        std::fs::write(&path, b"held").expect("create the hold file");
        Hold(path)
    }

    fn path(&self) -> String {
        self.0.to_str().expect("utf-8 temp dir").to_owned()
    }

    fn release(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `n` jobs of `millis` ms held on `slow`, each counting its completions, and whether the
/// hold was released when its callback ran.
struct Run {
    jobs: Vec<pp::Job<(u64, u32)>>,
    completions: Arc<Vec<AtomicU32>>,
    after_release: Arc<Vec<AtomicBool>>,
    released: Arc<AtomicBool>,
}

impl Run {
    fn submit(server: &Server, n: u64, millis: u64, slow: &Node, hold: &Hold) -> Run {
        let completions: Arc<Vec<AtomicU32>> =
            Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        let after_release: Arc<Vec<AtomicBool>> =
            Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
        let released = Arc::new(AtomicBool::new(false));
        let jobs = (0..n)
            .map(|i| {
                let (completions, after, released) = (
                    Arc::clone(&completions),
                    Arc::clone(&after_release),
                    Arc::clone(&released),
                );
                server
                    .job(held_echo, (i, millis, slow.pid(), hold.path()))
                    .callback(move |_| {
                        completions[i as usize].fetch_add(1, Ordering::SeqCst);
                        after[i as usize].store(released.load(Ordering::SeqCst), Ordering::SeqCst);
                    })
                    .submit()
            })
            .collect();
        Run {
            jobs,
            completions,
            after_release,
            released,
        }
    }

    fn release(&self, hold: &Hold) {
        self.released.store(true, Ordering::SeqCst);
        hold.release();
    }

    /// Waits for every job (bounded) and returns the pid of the node that ran each.
    fn results(self) -> (Vec<u32>, Arc<Vec<AtomicU32>>, Arc<Vec<AtomicBool>>) {
        let mut nodes = Vec::new();
        for (i, job) in self.jobs.into_iter().enumerate() {
            assert!(job.wait_timeout(WAIT), "job {i} finished within {WAIT:?}");
            let (x, node) = job.result().expect("every job succeeds");
            assert_eq!(x, i as u64, "the right result");
            nodes.push(node);
        }
        (nodes, self.completions, self.after_release)
    }
}

/// After the hold is released, submits small batches until `slow` wins a job of its own:
/// its connection delivers in order, so the late results of the copies it held have come
/// back (and been dropped) by then. Returns how many jobs it submitted.
fn drain_slow_node(server: &Server, slow: &Node) -> u64 {
    let before = jobs_of(server, &slow.name());
    let deadline = Instant::now() + WAIT;
    let mut submitted = 0;
    while jobs_of(server, &slow.name()) == before {
        assert!(
            Instant::now() < deadline,
            "the released node won no job within {WAIT:?}\n{}",
            server.stats()
        );
        let jobs: Vec<_> = (0..10)
            .map(|i| server.submit(held_echo, (i, 10, 0, String::new())))
            .collect();
        submitted += 10;
        for (i, job) in jobs.into_iter().enumerate() {
            assert!(job.wait_timeout(WAIT));
            assert_eq!(job.result().map(|(x, _)| x), Ok(i as u64));
        }
    }
    submitted
}

#[test]
fn with_copies_on_a_slow_node_does_not_hold_the_end_of_the_run() {
    let (slow, fast) = (Node::start(1, &[]), Node::start(1, &[]));
    let hold = Hold::new();
    let server = cluster(&[&slow, &fast], true);
    let n = 30;
    let run = Run::submit(&server, n, 20, &slow, &hold);
    let released = Arc::clone(&run.released);
    // The hold is still there: every job must complete without the slow node.
    let (nodes, completions, after_release) = run.results();
    assert!(!released.load(Ordering::SeqCst));
    assert!(
        nodes.iter().all(|&pid| pid == fast.pid()),
        "every job was won by the fast node (pids {nodes:?}, fast {}, slow {})",
        fast.pid(),
        slow.pid()
    );
    assert!(server.wait_timeout(WAIT), "pending reached zero");
    assert_each_once(&completions, "each callback ran once");
    assert!(after_release.iter().all(|a| !a.load(Ordering::SeqCst)));
    let stats = server.stats();
    eprintln!("{stats}");
    assert_eq!(stats.total_jobs(), n, "each job counted once\n{stats}");
    assert_eq!(jobs_of(&server, &fast.name()), n, "{stats}");
    assert_eq!(jobs_of(&server, &slow.name()), 0, "{stats}");
    assert_eq!(stats.rescheduled_jobs, 0, "no node was lost\n{stats}");
    let slow_status = server
        .active_nodes()
        .into_iter()
        .find(|s| s.address == slow.addr.to_string())
        .expect("the slow node's status");
    assert!(
        slow_status.connected && slow_status.losses == 0,
        "{slow_status:?}"
    );

    // Released, the slow node finishes the copies it held: their results are dropped.
    hold.release();
    let extra = drain_slow_node(&server, &slow);
    assert!(server.wait_timeout(WAIT));
    assert_each_once(&completions, "the late copies completed nothing again");
    let stats = server.stats();
    assert_eq!(stats.total_jobs(), n + extra, "{stats}");
}

#[test]
fn with_copies_off_the_slow_node_keeps_its_jobs_until_it_finishes_them() {
    let (slow, fast) = (Node::start(1, &[]), Node::start(1, &[]));
    let hold = Hold::new();
    let server = cluster(&[&slow, &fast], false);
    let n = 30;
    let run = Run::submit(&server, n, 20, &slow, &hold);
    // The slow node took jobs, and nothing else runs them: its row stays empty, and the
    // fast node's row never reaches every job, until the hold is released.
    wait_until(&server, "the queue is empty", || {
        server.stats().queued_jobs == 0
    });
    assert_eq!(jobs_of(&server, &slow.name()), 0);
    run.release(&hold);
    let (nodes, completions, after_release) = run.results();
    assert!(server.wait_timeout(WAIT), "pending reached zero");
    let on_slow: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i] == slow.pid())
        .collect();
    assert!(
        !on_slow.is_empty(),
        "the slow node ran the jobs it took (pids {nodes:?}, slow {})",
        slow.pid()
    );
    assert!(
        on_slow
            .iter()
            .all(|&i| after_release[i].load(Ordering::SeqCst)),
        "its jobs completed only after the release"
    );
    assert_each_once(&completions, "each callback ran once");
    let stats = server.stats();
    eprintln!("{stats}");
    assert_eq!(stats.total_jobs(), n, "{stats}");
    assert_eq!(
        jobs_of(&server, &slow.name()),
        on_slow.len() as u64,
        "{stats}"
    );
    assert_eq!(
        jobs_of(&server, &fast.name()),
        n - on_slow.len() as u64,
        "the fast node's row does not include the slow node's jobs\n{stats}"
    );
}
