"""One Python peer with one worker count through a list of workloads, once each.

The Python half of benches/peers/run.sh, the twin of benches/peers.rs: it prints one JSON
line per workload on stdout (other output of the peers goes to stderr) and exits non-zero
if a result was wrong. Each peer is used the way its documentation shows, with its bulk
calls where it has them (Dask's `client.map` and `gather`, Ray's `ray.get` of a list).

    agent.py --system pyserial|ppft|ppft-remote|pool|dask|ray --workers N
             [--server HOST:PORT] [--nodelay] [--workloads sum_primes,ln2,md5,tiny,latency]
             [--tiny-jobs N] [--latency-samples N] [--warmup 0|1] [--probe]

`ppft-remote` runs no local worker (ncpus=0) and sends every job to the ppft `ppserver`
at --server (secret from PP_SECRET); `--nodelay` sets TCP_NODELAY on ppft's sockets (see
nodelay.py). `--probe` only starts the peer and runs a few jobs: run.sh uses it to tell
whether a peer can run here at all.
"""

import argparse
import json
import os
import sys
import time

import workloads as w


class Peer:
    """submit(f, args, deps, modules) -> handle; gather(handles) -> results in order."""

    def map_add_one(self, xs):
        return self.gather([self.submit(w.add_one, (x,)) for x in xs])

    def close(self):
        pass


class PySerial(Peer):
    def submit(self, f, args, deps=(), modules=()):
        return f(*args)

    def gather(self, handles):
        return list(handles)


class Ppft(Peer):
    def __init__(self, workers, server=None, secret=None):
        import ppft

        if server is None:
            self.s = ppft.Server(ncpus=workers)
        else:
            self.s = ppft.Server(ncpus=0, ppservers=(server,), secret=secret)

    def submit(self, f, args, deps=(), modules=()):
        return self.s.submit(f, args, depfuncs=tuple(deps), modules=tuple(modules))

    def gather(self, handles):
        return [h() for h in handles]

    def close(self):
        self.s.destroy()


class Pool(Peer):
    def __init__(self, workers):
        from concurrent.futures import ProcessPoolExecutor

        self.ex = ProcessPoolExecutor(max_workers=workers)

    def submit(self, f, args, deps=(), modules=()):
        return self.ex.submit(f, *args)

    def gather(self, handles):
        return [h.result() for h in handles]

    def close(self):
        self.ex.shutdown(wait=True)


class Dask(Peer):
    def __init__(self, workers):
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        self.client = Client(self.cluster)

    def submit(self, f, args, deps=(), modules=()):
        return self.client.submit(f, *args, pure=False)

    def gather(self, handles):
        return self.client.gather(handles)

    def map_add_one(self, xs):
        return self.client.gather(self.client.map(w.add_one, xs, pure=False))

    def close(self):
        self.client.close()
        self.cluster.close()


class Ray(Peer):
    def __init__(self, workers):
        import ray

        self.ray = ray
        ray.init(
            num_cpus=workers,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
        self.remote = {}

    def submit(self, f, args, deps=(), modules=()):
        r = self.remote.get(f)
        if r is None:
            r = self.remote[f] = self.ray.remote(f)
        return r.remote(*args)

    def gather(self, handles):
        return self.ray.get(list(handles))

    def close(self):
        self.ray.shutdown()


def make(args):
    if args.system == "pyserial":
        return PySerial()
    if args.system == "ppft":
        return Ppft(args.workers)
    if args.system == "ppft-remote":
        if args.nodelay:
            import nodelay

            nodelay.patch()
        return Ppft(args.workers, args.server, os.environ["PP_SECRET"])
    if args.system == "pool":
        return Pool(args.workers)
    if args.system == "dask":
        return Dask(args.workers)
    if args.system == "ray":
        return Ray(args.workers)
    raise SystemExit("unknown system %s" % args.system)


def one(peer, x):
    return peer.gather([peer.submit(w.add_one, (x,))])[0]


def run(peer, workload, args, scale=1):
    """Runs `workload` once; returns its measured fields; raises ValueError if wrong."""
    start = time.perf_counter()
    if workload == "sum_primes":
        hs = [peer.submit(w.sum_primes, (n,), (w.isprime,)) for n in w.SUM_PRIMES_INPUTS]
        out = peer.gather(hs)
        seconds = time.perf_counter() - start
        w.check_sum_primes(out)
        return {"seconds": seconds}
    if workload == "ln2":
        ranges = w.split(w.LN2_START, w.LN2_END, w.LN2_PARTS)
        out = peer.gather([peer.submit(w.part_sum, r) for r in ranges])
        seconds = time.perf_counter() - start
        w.check_ln2(out)
        return {"seconds": seconds}
    if workload == "md5":
        h = w.md5_hex(str(w.MD5_SECRET))
        ranges = w.split(w.MD5_START, w.MD5_END, w.MD5_PARTS)
        hs = [peer.submit(w.md5_test, (h, lo, hi), (), ("hashlib",)) for lo, hi in ranges]
        out = peer.gather(hs)
        seconds = time.perf_counter() - start
        w.check_md5(out)
        return {"seconds": seconds}
    if workload == "tiny":
        n = max(args.tiny_jobs // scale, 1)
        out = peer.map_add_one(range(n))
        seconds = time.perf_counter() - start
        if list(out) != list(range(1, n + 1)):
            raise ValueError("tiny jobs: a result is not its argument plus one")
        return {"jobs": n, "seconds": seconds}
    if workload == "latency":
        samples = []
        for i in range(max(args.latency_samples // scale, 1)):
            t = time.perf_counter()
            r = one(peer, i)
            samples.append(time.perf_counter() - t)
            if r != i + 1:
                raise ValueError("one job: add_one(%d) gave %r" % (i, r))
        samples.sort()

        def at(p):
            return samples[min(int(len(samples) * p), len(samples) - 1)]

        return {"samples": len(samples), "median_s": at(0.5), "p99_s": at(0.99)}
    raise ValueError("unknown workload %s" % workload)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--server")
    ap.add_argument("--nodelay", action="store_true")
    ap.add_argument("--workloads", default="sum_primes,ln2,md5,tiny,latency")
    ap.add_argument("--tiny-jobs", type=int, default=10000)
    ap.add_argument("--latency-samples", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--probe", action="store_true")
    args = ap.parse_args()

    # Whatever the peers print goes to stderr; stdout carries the JSON lines only.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    peer = make(args)
    failed = False
    try:
        # Warm-up, not measured: starts the workers (ppft ships each function's source
        # on its first job, Ray starts its worker processes on demand).
        for i in range(4 * max(args.workers, 1)):
            if one(peer, i) != i + 1:
                raise ValueError("warm-up job gave a wrong result")
        if args.probe:
            out.write(json.dumps({"system": args.system, "probe": True, "ok": True}) + "\n")
            return 0
        names = [x for x in args.workloads.split(",") if x]
        if args.warmup:
            # Every workload once, tiny jobs and single jobs at a tenth, not measured.
            for name in names:
                run(peer, name, args, scale=10)
        for name in names:
            head = {"system": args.system + ("-nodelay" if args.nodelay else ""),
                    "workers": args.workers, "workload": name}
            try:
                fields = run(peer, name, args)
                head.update(ok=True, **fields)
            except Exception as e:  # a wrong answer or a peer's error: a failure
                failed = True
                head.update(ok=False, error="%s: %s" % (type(e).__name__, e))
            out.write(json.dumps(head) + "\n")
    finally:
        peer.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
