"""The driver of benches/peers/run.sh: runs every system's workloads, alternating systems,
and prints the Markdown table for BENCHMARKS.md.

Standard library only (it runs on the machine's python3); the Python peers run in the
virtual environment given by --venv-python, our side is the `peers` bench binary.

A round runs every configuration (system, workers) once, each in a fresh process that runs
its workloads once (after an unmeasured warm-up); the order of configurations rotates from
round to round, so that drift hits every system alike. Each figure is the median over the
rounds. Every agent run has a time limit; the servers (our `ppserver`, ppft's `ppserver`
stock and with TCP_NODELAY) listen on 127.0.0.1 only and are stopped at the end, also on
error; their PIDs are written to <out>/server.pids so that run.sh can stop them too.

Environment knobs (see BENCHMARKS.md): PEERS_RUNS, PEERS_QUICK, PEERS_SYSTEMS,
PEERS_TIMEOUT, PEERS_TINY, PEERS_TINY_PPFT_REMOTE, PEERS_LATENCY, PEERS_LATENCY_REMOTE.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "peers benchmark secret, long and random enough for a loopback run"
EXAMPLES = ["sum_primes", "ln2", "md5"]
ALL = EXAMPLES + ["tiny", "latency"]
SERVERS_ONLY = ["tiny", "latency"]

# System names: label in the tables, kind of agent.
SYSTEMS = {
    "pp": ("pp", "rust"),
    "rayon": ("rayon", "rust"),
    "serial": ("serial (Rust)", "rust"),
    "pyserial": ("serial (Python)", "python"),
    "ppft": ("ppft", "python"),
    "pool": ("ProcessPool", "python"),
    "dask": ("Dask", "python"),
    "ray": ("Ray", "python"),
    "pp-remote": ("pp + ppserver", "rust"),
    "ppft-remote": ("ppft + ppserver", "python"),
    "ppft-remote-nodelay": ("ppft + ppserver, TCP_NODELAY patched", "python"),
}
LOCAL_COLUMNS = ["pp", "rayon", "serial", "pyserial", "ppft", "pool", "dask", "ray"]
REMOTE_COLUMNS = ["pp-remote", "ppft-remote", "ppft-remote-nodelay"]

# (system, workers, workloads): one agent run per round each.
CONFIGS = [
    ("pp", 1, EXAMPLES),
    ("rayon", 1, EXAMPLES),
    ("serial", 1, EXAMPLES),
    ("pp", 2, ALL),
    ("rayon", 2, ALL),
    ("pyserial", 1, EXAMPLES),
    ("ppft", 1, EXAMPLES),
    ("ppft", 2, ALL),
    ("pool", 1, EXAMPLES),
    ("pool", 2, ALL),
    ("dask", 1, EXAMPLES),
    ("dask", 2, ALL),
    ("ray", 1, EXAMPLES),
    ("ray", 2, ALL),
    ("pp-remote", 2, SERVERS_ONLY),
    ("ppft-remote", 2, SERVERS_ONLY),
    ("ppft-remote-nodelay", 2, SERVERS_ONLY),
]


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def log(*parts):
    print("[peers %s]" % time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid):
    """Whether any process is still in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_group(proc, grace=5.0):
    """Stops the process group led by `proc` (started with start_new_session=True)."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is not None and not group_alive(pgid):
                break
            time.sleep(0.05)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def last_line(path, limit=300):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:limit] if lines else "(no output)"


class Servers:
    """The three servers on 127.0.0.1, started once for the whole run."""

    def __init__(self, out):
        self.out = out
        self.procs = []
        self.addr = {}
        self.skip = {}
        self.pidfile = os.path.join(out, "server.pids")

    def _spawn(self, name, cmd, env=None):
        logf = open(os.path.join(self.out, "logs", "server-%s.log" % name), "w")
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.PIPE if name == "pp" else logf,
            env=env, start_new_session=True, text=True,
        )
        self.procs.append(proc)
        with open(self.pidfile, "a") as f:
            f.write("%d\n" % proc.pid)
        return proc, logf

    def start_pp(self, ppserver):
        cache = os.path.join(self.out, "ppserver-cache")
        env = dict(os.environ, PP_SECRET=SECRET)
        for k in ("PP_WORKER", "PP_SERVERS", "PP_NCPUS"):
            env.pop(k, None)
        proc, logf = self._spawn("pp", [ppserver, "--port", "0", "--interface", "127.0.0.1",
                                        "-w", "2", "--cache-dir", cache], env)
        lines = queue.Queue()

        def pump():
            for line in proc.stderr:
                logf.write(line)
                logf.flush()
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            if "ppserver listening on " in line:
                self.addr["pp-remote"] = line.split("ppserver listening on ")[1].split()[0]
                return
        self.skip["pp-remote"] = "our ppserver did not start: " + last_line(logf.name)

    def start_ppft(self, name, cmd):
        port = free_port()
        proc, logf = self._spawn(name, cmd + ["-p", str(port), "-i", "127.0.0.1", "-w", "2",
                                              "-s", SECRET])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    self.addr[name] = "127.0.0.1:%d" % port
                    return
            except OSError:
                time.sleep(0.2)
        self.skip[name] = "ppft's ppserver did not start: " + last_line(logf.name)

    def stop(self):
        for proc in self.procs:
            stop_group(proc, grace=2.0)
        self.procs = []


class Runner:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        self.quick = env_int("PEERS_QUICK", 0) != 0
        self.runs = env_int("PEERS_RUNS", 1 if self.quick else 5)
        self.timeout = env_int("PEERS_TIMEOUT", 600)
        self.tiny = env_int("PEERS_TINY", 1000 if self.quick else 10000)
        self.tiny_ppft_remote = env_int("PEERS_TINY_PPFT_REMOTE", 100 if self.quick else 1000)
        self.latency = env_int("PEERS_LATENCY", 100 if self.quick else 1000)
        self.latency_remote = env_int("PEERS_LATENCY_REMOTE", 30 if self.quick else 200)
        self.rust_repeat = env_int("PEERS_RUST_REPEAT", 1 if self.quick else 3)
        wanted = os.environ.get("PEERS_SYSTEMS", "").strip()
        self.wanted = set(wanted.split(",")) if wanted else set(SYSTEMS)
        self.skip = {}  # system -> reason
        self.results = []  # JSON records
        self.failures = {}  # (system, workers, workload) -> first error
        self.raw = open(os.path.join(self.out, "results.jsonl"), "w")
        self.servers = Servers(self.out)

    # -- agents ---------------------------------------------------------------------------

    def agent_env(self):
        env = dict(os.environ)
        for k in ("PP_WORKER", "PP_SERVERS", "PP_NCPUS", "PP_SECRET_FILE"):
            env.pop(k, None)
        env["PP_SECRET"] = SECRET
        env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
        env["RAY_USAGE_STATS_ENABLED"] = "0"  # no reports to the internet
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the work tree
        return env

    def command(self, system, workers, workloads, probe=False):
        tiny = self.tiny_ppft_remote if system == "ppft-remote" else self.tiny
        latency = self.latency_remote if system.endswith("remote") or "remote-" in system else self.latency
        common = ["--workers", str(workers), "--workloads", ",".join(workloads),
                  "--tiny-jobs", str(tiny), "--latency-samples", str(latency),
                  "--warmup", "0" if self.quick else "1"]
        if SYSTEMS[system][1] == "rust":
            cmd = [self.args.peers_bin, "--system", system] + common
            if system == "pp-remote":
                cmd += ["--server", self.servers.addr[system]]
            return cmd
        base = system
        cmd = [self.args.venv_python, os.path.join(HERE, "agent.py")]
        if system.startswith("ppft-remote"):
            base = "ppft-remote"
            cmd += ["--server", self.servers.addr[system]]
            if system.endswith("nodelay"):
                cmd += ["--nodelay"]
        cmd += ["--system", base] + common
        if probe:
            cmd += ["--probe"]
        return cmd

    def run_agent(self, tag, cmd, timeout):
        """Runs one agent; returns (records, error or None)."""
        logpath = os.path.join(self.out, "logs", tag + ".log")
        with open(logpath, "w") as logf:
            logf.write("$ %s\n" % " ".join(cmd))
            logf.flush()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=logf, env=self.agent_env(), cwd=HERE,
                                    start_new_session=True, text=True)
            try:
                stdout, _ = proc.communicate(timeout=timeout)
                error = None
            except subprocess.TimeoutExpired:
                stop_group(proc, grace=2.0)
                stdout, _ = proc.communicate()
                error = "timed out after %d s" % timeout
            except BaseException:  # interrupted: stop the agent before going
                stop_group(proc, grace=1.0)
                raise
            # Whatever the agent left behind in its process group (it should be nothing).
            stop_group(proc, grace=2.0)
        records = []
        for line in (stdout or "").splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
        if error is None and proc.returncode != 0 and not any(not r.get("ok") for r in records):
            error = "exited with code %s: %s" % (proc.returncode, last_line(logpath))
        return records, error

    # -- phases ---------------------------------------------------------------------------

    def probe(self, remote):
        python_systems = [s for s in SYSTEMS if SYSTEMS[s][1] == "python" and s in self.wanted
                          and ("remote" in s) == remote]
        if not self.args.venv_python or not os.path.exists(self.args.venv_python):
            for s in python_systems:
                self.skip[s] = "no Python virtual environment (see the setup log)"
            return
        for s in python_systems:
            if s in self.skip:
                continue
            log("probe", s)
            records, error = self.run_agent("probe-" + s, self.command(s, 2, ["tiny"], probe=True),
                                            min(self.timeout, 300))
            if error or not records or not records[0].get("ok"):
                reason = error or "probe failed"
                hint = self.install_failure(s)
                self.skip[s] = reason + (" (" + hint + ")" if hint else "")
                log("skipped", s, ":", self.skip[s])

    def install_failure(self, system):
        """What the setup log says about the peer's package, if its install failed."""
        package = {"ppft": "ppft", "dask": "dask", "ray": "ray"}.get(system.split("-")[0])
        path = self.args.setup_failures
        if not package or not path or not os.path.exists(path):
            return ""
        with open(path) as f:
            for line in f:
                if line.startswith(package + " "):
                    return "pip install failed: " + line.strip()
        return ""

    def start_servers(self):
        s = self.servers
        if "pp-remote" in self.wanted:
            s.start_pp(self.args.ppserver)
        venv_bin = os.path.dirname(self.args.venv_python or "")
        for name in ("ppft-remote", "ppft-remote-nodelay"):
            if name not in self.wanted or name in self.skip:
                continue
            if "ppft" in self.skip:
                self.skip[name] = "ppft cannot run here (see ppft)"
                continue
            if name == "ppft-remote":
                cmd = [os.path.join(venv_bin, "ppserver")]
            else:
                cmd = [self.args.venv_python, os.path.join(HERE, "nodelay.py")]
            s.start_ppft(name, cmd)
        self.skip.update(s.skip)

    def order(self, r):
        """The configurations of round `r`, in the order they run.

        The Rust configurations take a second or two, the Python ones up to a minute: the
        Rust ones run as a block (pp beside rayon and the serial program) that comes back
        `rust_repeat` times in each round, spread between the others, so that they see the
        machine at as many moments as the peers do over their longer runs.
        """
        live = [c for c in CONFIGS if c[0] in self.wanted and c[0] not in self.skip]
        rust = [c for c in live if SYSTEMS[c[0]][1] == "rust"]
        other = [c for c in live if SYSTEMS[c[0]][1] != "rust"]
        if other:
            shift = (r * 5) % len(other)
            other = other[shift:] + other[:shift]
        blocks = max(self.rust_repeat, 1) if rust else 0
        order, step = [], (len(other) + blocks - 1) // blocks if blocks else 0
        for b in range(blocks):
            k = (r * blocks + b) % len(rust)
            order += rust[k:] + rust[:k]
            order += other[b * step:(b + 1) * step]
        if not blocks:
            order = other
        return order

    def rounds(self):
        for r in range(self.runs):
            counts = {}
            for system, workers, workloads in self.order(r):
                if system in self.skip:
                    continue
                n = counts[(system, workers)] = counts.get((system, workers), 0) + 1
                tag = "run%d.%d-%s-%d" % (r + 1, n, system, workers)
                t0 = time.monotonic()
                records, error = self.run_agent(tag, self.command(system, workers, workloads),
                                                self.timeout)
                seen = set()
                for rec in records:
                    rec["system"] = system  # ppft-remote + --nodelay reports its own name
                    rec["round"] = r + 1
                    self.raw.write(json.dumps(rec) + "\n")
                    self.raw.flush()
                    key = (system, workers, rec.get("workload"))
                    seen.add(rec.get("workload"))
                    if rec.get("ok"):
                        self.results.append(rec)
                    else:
                        self.failures.setdefault(key, rec.get("error", "failed"))
                for wl in workloads:
                    if wl not in seen:
                        self.failures.setdefault((system, workers, wl), error or "no result")
                log("round %d/%d %-20s %d worker(s): %.1f s%s" % (
                    r + 1, self.runs, system, workers, time.monotonic() - t0,
                    "" if not error else "  FAILED: " + error))

    # -- report ---------------------------------------------------------------------------

    def values(self, system, workers, workload, field):
        return [rec[field] for rec in self.results
                if rec["system"] == system and rec["workers"] == workers
                and rec["workload"] == workload and field in rec]

    def median(self, system, workers, workload, field):
        if (system, workers, workload) in self.failures:
            return None
        xs = self.values(system, workers, workload, field)
        return statistics.median(xs) if xs else None

    def rate(self, system, workers=2):
        if (system, workers, "tiny") in self.failures:
            return None
        rates = [rec["jobs"] / rec["seconds"] for rec in self.results
                 if rec["system"] == system and rec["workers"] == workers
                 and rec["workload"] == "tiny"]
        return statistics.median(rates) if rates else None

    def cells(self, cols, ours, workload, workers, value, fmt, faster):
        """One table row's cells: each system's figure, with how many times faster ours is.

        `workers(c)` is the worker count of column c (None: not applicable), `value(c, w)`
        its figure, `faster(ours, theirs)` the ratio in brackets."""
        base = value(ours, workers(ours))
        out = []
        for c in cols:
            w = workers(c)
            if w is None:
                out.append("—")
                continue
            st = self.status(c, w, workload)
            v = value(c, w)
            if st or v is None:
                out.append(st or "—")
            elif c == ours:
                out.append(fmt(v))
            else:
                out.append("%s (%s)" % (fmt(v), fmt_ratio(*faster(base, v))))
        return out

    def status(self, system, workers, workload):
        """None if there are figures; else the text of the cell."""
        if system not in self.wanted:
            return "not run"
        if system in self.skip:
            return "skipped¹"
        if (system, workers, workload) in self.failures:
            return "FAILED²"
        return None

    def table(self):
        lines = []
        add = lines.append
        runs = self.runs
        rust_runs = runs * max(self.rust_repeat, 1)
        add("Command: `benches/peers/run.sh`%s. Each figure is the median of the runs of its "
            "cell: %d for the Python peers, %d for pp, rayon and serial (Rust) (fresh "
            "processes of a second or two, spread between the peers' runs); the systems "
            "alternate, each run a fresh process after an unmeasured warm-up; every result "
            "is checked."
            % (" (quick mode)" if self.quick else "", runs, rust_runs))
        add("")
        add("In brackets: how many times pp is faster (the system's time / pp's, or pp's "
            "jobs/s / the system's); below 1, pp is slower.")
        add("")
        cols = [c for c in LOCAL_COLUMNS]
        add("| workload | workers | " + " | ".join(SYSTEMS[c][0] for c in cols) + " |")
        add("|---|---|" + "---|" * len(cols))
        names = {"sum_primes": "sum_primes (8 jobs)", "ln2": "ln 2 partial sum (128 jobs)",
                 "md5": "reverse md5, full scan (128 jobs)"}
        for wl in EXAMPLES:
            for workers in (1, 2):
                cells = self.cells(
                    cols, "pp", wl,
                    lambda c, n=workers: 1 if c in ("serial", "pyserial") else n,
                    lambda c, w, wl=wl: self.median(c, w, wl, "seconds"),
                    fmt_time, lambda base, v: (v, base))
                add("| %s | %d | %s |" % (names[wl], workers, " | ".join(cells)))
        # Tiny jobs and single jobs, locally, 2 workers.
        local_workers = lambda c: None if c in ("serial", "pyserial") else 2
        cells = self.cells(cols, "pp", "tiny", local_workers, lambda c, w: self.rate(c),
                           fmt_rate, lambda base, v: (base, v))
        add("| %s tiny jobs (x + 1), jobs/s | 2 | %s |" % (fmt_count(self.tiny), " | ".join(cells)))
        for field, label in (("median_s", "median"), ("p99_s", "p99")):
            cells = self.cells(cols, "pp", "latency", local_workers,
                               lambda c, w, f=field: self.median(c, w, "latency", f),
                               fmt_time, lambda base, v: (v, base))
            add("| one job alone (%s samples per run), %s | 2 | %s |"
                % (fmt_count(self.latency), label, " | ".join(cells)))
        add("")
        # Through one server on 127.0.0.1.
        add("Through one server on 127.0.0.1 with 2 workers, the client with no local worker "
            "(ppft: `ncpus=0, ppservers=(\"127.0.0.1:port\",)`; pp: `PP_NCPUS=0`, "
            "encrypted frames). pp runs %s tiny jobs per run, stock ppft %s (it manages "
            "about 45 per second), ppft with TCP_NODELAY %s."
            % (fmt_count(self.tiny), fmt_count(self.tiny_ppft_remote), fmt_count(self.tiny)))
        add("")
        add("| measure | " + " | ".join(SYSTEMS[c][0] for c in REMOTE_COLUMNS) + " |")
        add("|---|" + "---|" * len(REMOTE_COLUMNS))
        cells = self.cells(REMOTE_COLUMNS, "pp-remote", "tiny", lambda c: 2,
                           lambda c, w: self.rate(c), fmt_rate, lambda base, v: (base, v))
        add("| tiny jobs (x + 1), jobs/s | " + " | ".join(cells) + " |")
        for field, label in (("median_s", "median"), ("p99_s", "p99")):
            cells = self.cells(REMOTE_COLUMNS, "pp-remote", "latency", lambda c: 2,
                               lambda c, w, f=field: self.median(c, w, "latency", f),
                               fmt_time, lambda base, v: (v, base))
            add("| one job alone (%s samples per run), %s | %s |"
                % (fmt_count(self.latency_remote), label, " | ".join(cells)))
        add("")
        add("The TCP_NODELAY column is a note, not ppft as shipped: benches/peers/nodelay.py "
            "sets the option on every socket of ppft's transport, in the client and in the "
            "server, at run time.")
        add("")
        notes = []
        for s, reason in sorted(self.skip.items()):
            if s in self.wanted:
                notes.append("¹ %s skipped: %s" % (SYSTEMS[s][0], reason))
        grouped = {}
        for (s, w, wl), err in sorted(self.failures.items(), key=lambda kv: (kv[0][0], kv[0][1], ALL.index(kv[0][2]) if kv[0][2] in ALL else 99)):
            grouped.setdefault((s, err), []).append("%s with %d worker%s" % (wl, w, "" if w == 1 else "s"))
        for (s, err), cells in grouped.items():
            notes.append("² %s failed (%s): %s" % (SYSTEMS[s][0], ", ".join(cells), err))
        for n in notes:
            add(n + "  ")
        if notes:
            add("")
        return "\n".join(lines)

    def targets(self):
        lines = ["| target | measured | |", "|---|---|---|"]

        def row(text, measured, ok):
            verdict = "n/a" if ok is None else ("met" if ok else "not met")
            lines.append("| %s | %s | %s |" % (text, measured, verdict))

        def ratio(a, b):
            return None if a is None or b is None else a / b

        pp_rate = self.rate("pp")
        for peer, goal in (("ppft", 100), ("pool", 30)):
            x = ratio(pp_rate, self.rate(peer))
            row("tiny jobs locally: at least %d× %s" % (goal, SYSTEMS[peer][0]),
                "—" if x is None else "%.0f×" % x, None if x is None else x >= goal)
        remote = self.rate("pp-remote")
        for peer, goal in (("ppft-remote", 1000), ("ppft-remote-nodelay", 100)):
            x = ratio(remote, self.rate(peer))
            row("tiny jobs through one server: at least %d× %s" % (goal, SYSTEMS[peer][0]),
                "—" if x is None else "%.0f×" % x, None if x is None else x >= goal)
        slowest_margin = None
        worst_rayon = None
        missing = set()
        for wl in EXAMPLES:
            for workers in (1, 2):
                pp = self.median("pp", workers, wl, "seconds")
                if pp is None:
                    continue
                for peer in ("ppft", "pool", "dask", "ray"):
                    v = self.median(peer, workers, wl, "seconds")
                    if v is None:
                        missing.add(SYSTEMS[peer][0])
                    if v is not None:
                        m = (v / pp, "%s %s, %d worker(s)" % (SYSTEMS[peer][0], wl, workers))
                        slowest_margin = m if slowest_margin is None or m < slowest_margin else slowest_margin
                rv = self.median("rayon", workers, wl, "seconds")
                if rv is not None:
                    m = (pp / rv, "%s, %d worker(s)" % (wl, workers))
                    worst_rayon = m if worst_rayon is None or m > worst_rayon else worst_rayon
        if slowest_margin:
            text = "smallest margin %.1f× (%s)" % slowest_margin
            if missing:
                text += "; no figures from " + ", ".join(sorted(missing))
            row("every PP example faster than every peer", text,
                None if missing else slowest_margin[0] > 1)
        if worst_rayon:
            row("every PP example within 5% of rayon",
                "worst: pp's time %.3f of rayon's (%s)" % worst_rayon, worst_rayon[0] <= 1.05)
        return "\n".join(lines)


def fmt_time(s):
    if s >= 1:
        return "%.2f s" % s
    if s >= 1e-3:
        return "%.1f ms" % (s * 1e3) if s < 0.1 else "%.0f ms" % (s * 1e3)
    return "%.1f µs" % (s * 1e6)


def fmt_rate(r):
    if r >= 1e6:
        return "%.2f M" % (r / 1e6)
    if r >= 1e4:
        return "%.0f k" % (r / 1e3)
    return "{:,.0f}".format(r)


def fmt_count(n):
    return "{:,}".format(n)


def fmt_ratio(slow, fast):
    if not slow or not fast:
        return "—"
    x = slow / fast
    if x >= 100:
        return "×%s" % "{:,.0f}".format(x)
    if x >= 10:
        return "×%.0f" % x
    return "×%.2f" % x


def machine_line(args):
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.0f GiB" % (kb / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "%d CPUs (%s), %s, %s %s" % (nproc, cpu, mem, platform.system(), platform.release())


def versions(args):
    out = []
    try:
        out.append(subprocess.run(["rustc", "--version"], capture_output=True, text=True,
                                  timeout=30).stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        out.append("rustc ?")
    if args.venv_python and os.path.exists(args.venv_python):
        code = ("import sys, importlib.metadata as m\n"
                "print('Python ' + sys.version.split()[0])\n"
                "for p in ('ppft', 'dask', 'distributed', 'ray'):\n"
                "    try: print(p + ' ' + m.version(p))\n"
                "    except Exception: print(p + ' not installed')\n")
        try:
            r = subprocess.run([args.venv_python, "-c", code], capture_output=True, text=True,
                               timeout=60)
            out += [l for l in r.stdout.splitlines() if l.strip()]
        except (OSError, subprocess.TimeoutExpired):
            out.append("Python ?")
    return ", ".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers-bin", required=True)
    ap.add_argument("--ppserver", required=True)
    ap.add_argument("--venv-python", default="")
    ap.add_argument("--setup-failures", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    runner = Runner(args)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()
    try:
        runner.probe(remote=False)
        runner.start_servers()
        runner.probe(remote=True)
        runner.rounds()
    finally:
        runner.servers.stop()
    load_end = os.getloadavg()
    minutes = (time.monotonic() - started) / 60
    machine = machine_line(args)
    head = ("Run of %s: %s; %s. Load average (1 min) %.1f at the start, %.1f at the end; "
            "the whole run took %.0f min."
            % (date, machine, versions(args), load_start[0], load_end[0], minutes))
    report = head + "\n\n" + runner.table() + "\nTargets of issue 8:\n\n" + runner.targets() + "\n"
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(report)
    print(report)
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
