#!/usr/bin/env python3
"""How `driftguard serve` grows with the cluster (issue 20's figures and plot).

  scripts/bench/scale.py [--sizes 1000,10000,50000,100000] [--namespaces 1000] [--churn-rate 100]
                         [--churn-seconds 20] [--plot docs/scale.png] [--check-results FILE]
                         [--results FILE] [--keep] [--prefix NAME] [--run ID]
                         [--heap-profile DIR] [--from-results FILE]

N ConfigMaps spread over --namespaces namespaces (object i is `cm-<i // namespaces>` in
namespace `<prefix>-<i % namespaces>`, prefix `dg-scale` unless --prefix), created through the API by a few client threads;
sizes are measured in increasing order, each adding the objects it lacks. For each size, a
fresh `serve` (SQLite, a fresh database) watches every namespace with a label selector that
only this run's objects carry, against a Git repository of exactly those N manifests (one file
per namespace), and the script reports:

- start to ready (`/ready` answers 200: every watch listed) and start to all N records stored;
- resident memory (VmRSS) once settled, and the peak (VmHWM);
- a full analysis of N unchanged resources (`POST /api/v1/analyze`, best of 3, the run's own
  duration);
- detection latency under churn: --churn-rate PATCHes per second to distinct objects for
  --churn-seconds; each latency runs from the moment the PATCH returned to the moment the
  `detected` event of that object arrives on `GET /api/v1/events` (p50, p99, max). The churned
  objects are put back afterwards;
- what the API server saw from `serve` between its start and the end of the churn, from the
  API server's own metrics: LIST and WATCH requests on ConfigMaps, and registered watchers.

With --plot it draws memory, full-analysis time and start-up time against N; with
--check-results (the --results file of scripts/bench/check.py) a fourth panel draws `check`
beside `kubectl diff`. --results writes the figures as JSON.

The API server counts a WATCH request when it ends, so `registered watchers` (its gauge) is
what shows the watches `serve` holds; LIST counts the pages of its initial lists.

Needs DRIFTGUARD_TEST_KUBECONFIG (scripts/control-plane.sh up), a release binary (cargo build
--release -p driftguard) and, for --plot, matplotlib (pip install matplotlib). Deletes its
objects unless --keep, and keeps the (empty) namespaces for the next run.
"""
import argparse, http.client, json, os, queue, random, re, socket, ssl, statistics, subprocess, sys
import tempfile, threading, time, urllib.parse, urllib.request, uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import BINARY, kubeconfig, free_port  # noqa: E402

CTX = ssl._create_unverified_context()


class Api:
    """A few keep-alive HTTPS connections to the API server, one per thread."""

    def __init__(self, server, token):
        url = urllib.parse.urlparse(server)
        self.host, self.port, self.token = url.hostname, url.port or 443, token
        self.local = threading.local()

    def request(self, method, path, body=None, content_type="application/json"):
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPSConnection(self.host, self.port, context=CTX, timeout=60)
            try:
                headers = {"Authorization": f"Bearer {self.token}"}
                if body is not None:
                    headers["Content-Type"] = content_type
                conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 429 or resp.status >= 500:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                return resp.status, data
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                time.sleep(0.2 * (attempt + 1))
        raise SystemExit(f"{method} {path}: the API server did not answer after 5 attempts")

    def many(self, jobs, threads=8):
        """Runs (method, path, body, content_type) jobs on `threads` threads; returns statuses."""
        q = queue.Queue()
        for job in jobs:
            q.put(job)
        statuses = []

        def work():
            while True:
                try:
                    job = q.get_nowait()
                except queue.Empty:
                    return
                statuses.append(self.request(*job)[0])

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return statuses


PREFIX = "dg-scale"


def namespace(i, namespaces):
    return f"{PREFIX}-{i % namespaces:04d}"


def name(i, namespaces):
    return f"cm-{i // namespaces:05d}"


def manifest(i, namespaces, run):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name(i, namespaces), "namespace": namespace(i, namespaces),
                         "labels": {"app": "bench", "dg-scale": run, "shard": f"s{i % 10}"}},
            "data": {"retries": "3", "mode": "steady", "app.properties": "timeout=30\nlevel=info\n"}}


def yaml_of(m):
    labels = "".join(f"\n    {k}: {v}" for k, v in m["metadata"]["labels"].items())
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {m['metadata']['name']}\n"
            f"  namespace: {m['metadata']['namespace']}\n  labels:{labels}\n"
            f"data:\n  retries: \"3\"\n  mode: steady\n  app.properties: |\n    timeout=30\n    level=info\n")


def repository(path, n, namespaces, run):
    files = {}
    for i in range(n):
        files.setdefault(namespace(i, namespaces), []).append(yaml_of(manifest(i, namespaces, run)))
    (path / "apps").mkdir(parents=True)
    for ns, docs in files.items():
        (path / "apps" / f"{ns}.yaml").write_text("---\n".join(docs))
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.name=bench", "-c", "user.email=b@x", "commit", "-qm", f"{n} objects"]):
        subprocess.run(["git", "-C", str(path), *args], check=True)


def count_existing(api, run):
    """How many ConfigMaps of this run exist (kept by an earlier --keep run)."""
    # Counted page by page: the API server gives no remainingItemCount with a label selector.
    count, token = 0, ""
    while True:
        status, data = api.request("GET", f"/api/v1/configmaps?labelSelector=dg-scale%3D{run}&limit=5000"
                                          f"&continue={urllib.parse.quote(token)}")
        if status != 200:
            return count
        body = json.loads(data)
        count += len(body.get("items", []))
        token = body.get("metadata", {}).get("continue", "")
        if not token:
            return count


def apiserver_metrics(api):
    """(LIST and WATCH request counts on configmaps, registered ConfigMap watchers)."""
    status, data = api.request("GET", "/metrics")
    if status != 200:
        return None
    counts = {"LIST": 0, "WATCH": 0}
    watchers = 0
    for line in data.decode().splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="configmaps"' in line:
            verb = re.search(r'verb="(\w+)"', line).group(1)
            if verb in counts:
                counts[verb] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("apiserver_registered_watchers{") and 'kind="ConfigMap"' in line:
            watchers += float(line.rsplit(" ", 1)[1])
    return counts, watchers


class Events:
    """One reader of GET /api/v1/events noting when each `detected` event arrives."""

    def __init__(self, port):
        self.seen = {}
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        tail = b""
        event = None
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            now = time.perf_counter()
            *lines, tail = (tail + data).split(b"\n")
            for line in lines:
                if line.startswith(b"event: "):
                    event = line[7:].strip()
                elif line.startswith(b"data: ") and event == b"detected":
                    try:
                        rid = json.loads(line[6:]).get("resource_id")
                    except ValueError:
                        continue
                    self.seen.setdefault(rid, now)

    def close(self):
        self.sock.close()


class Serve:
    def __init__(self, kc, repo, workdir, run, heap_profile=None):
        self.port = free_port()
        self.dir = Path(workdir)
        cfg = self.dir / "driftguard.yaml"
        cfg.write_text(f"""server: {{address: 127.0.0.1, port: {self.port}}}
database: {{driver: sqlite, path: {self.dir / 'scale.db'}}}
kubernetes: {{config_path: {kc}, namespaces: [], labels: "dg-scale={run}", resources: [configmaps]}}
git: {{repository_url: "file://{repo}", default_branch: main, workdir: {self.dir / 'git'}}}
drift_detection: {{enable_periodic: false}}
logging: {{level: warn}}
""")
        self.log = open(self.dir / "serve.log", "w")
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MONGODB_URI", "MONGODB_HOST")}
        command = [str(BINARY), "serve", "--config", str(cfg)]
        if heap_profile:
            # heaptrack starts serve as its child; signals and /proc go to that child.
            command = ["heaptrack", "-o", str(heap_profile), *command]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        if heap_profile:
            deadline = time.time() + 30
            while time.time() < deadline:
                found = subprocess.run(["pgrep", "-f", f"^{BINARY} serve --config {cfg}"], capture_output=True,
                                       text=True).stdout.split()
                if found:
                    self.pid = int(found[0])
                    break
                time.sleep(0.05)

    def get(self, path, timeout=60):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
            return json.load(r)

    def status(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def wait(self, what, predicate, timeout=900):
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited ({self.proc.returncode}) waiting for {what}; see {self.dir}/serve.log")
            try:
                if predicate():
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"serve: no {what} within {timeout} s; see {self.dir}/serve.log")

    def memory_mib(self):
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
        self.split = (fields.get("RssAnon", float("nan")), fields.get("RssFile", float("nan")))
        return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))

    def analysis(self):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1/analyze", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            run_id = json.load(r)["run_id"]
        run = {}
        self.wait("analysis", lambda: bool((run.update(self.get(f"/api/v1/analysis/{run_id}")) or run).get("finished_at")))
        return duration_ms(run)

    def stop(self):
        try:
            os.kill(self.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def duration_ms(run):
    from datetime import datetime
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))
    return (parse(run["finished_at"]) - parse(run["started_at"])).total_seconds() * 1000


def churn(api, serve, n, namespaces, rate, seconds):
    """PATCHes `rate` distinct objects per second for `seconds`; returns the detection latencies (ms)
    and the objects touched."""
    events = Events(serve.port)
    time.sleep(0.5)
    count = min(n, rate * seconds)
    chosen = random.Random(n).sample(range(n), count)
    sent = {}
    started = time.perf_counter()
    lock = threading.Lock()
    jobs = queue.Queue()

    def patcher():
        while True:
            item = jobs.get()
            if item is None:
                return
            k, i = item
            ns, nm = namespace(i, namespaces), name(i, namespaces)
            api.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/{nm}", {"data": {"mode": f"churn-{k}"}},
                        "application/merge-patch+json")
            with lock:
                sent[f"ConfigMap:{ns}:{nm}"] = time.perf_counter()

    threads = [threading.Thread(target=patcher) for _ in range(4)]
    for t in threads:
        t.start()
    for k, i in enumerate(chosen):
        due = started + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        jobs.put((k, i))
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    achieved = count / (time.perf_counter() - started)
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and any(rid not in events.seen for rid in sent):
        time.sleep(0.1)
    events.close()
    latencies = sorted((events.seen[rid] - t) * 1000 for rid, t in sent.items() if rid in events.seen)
    missed = len(sent) - len(latencies)
    return latencies, missed, achieved, chosen


def heap_summary(prefix, n):
    """heaptrack_print's peak consumers of the profile written at `prefix`, kept beside it."""
    files = sorted(prefix.parent.glob(prefix.name + "*.zst")) or sorted(prefix.parent.glob(prefix.name + "*"))
    if not files:
        print(f"  no heaptrack profile at {prefix}*")
        return
    out = subprocess.run(["heaptrack_print", "--print-peaks", "--peak-limit", "15", "--sub-peak-limit", "0",
                          "--print-allocators", "0", "--print-temporary", "0", str(files[-1])],
                         capture_output=True, text=True).stdout
    text_file = prefix.parent / f"heap-{n}.txt"
    text_file.write_text(out)
    summary = [line for line in out.splitlines() if re.match(r"^(peak heap memory|peak RSS|total memory leaked|calls to)", line)]
    print(f"  heap profile of serve at {n} objects: {files[-1]} (peaks in {text_file})")
    for line in summary:
        print(f"    {line}")


def percentile(values, p):
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def plot(results, check_rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib")
    panels = 4 if check_rows else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8))
    ns = [r["objects"] for r in results]

    def line(ax, ys, label, style="o-"):
        ax.plot(ns, ys, style, label=label)
        ax.set_xlabel("watched objects (and records)")
        ax.grid(True, alpha=0.3)

    ax = axes[0]
    line(ax, [r["rss_mib"] for r in results], "resident, settled")
    line(ax, [r["peak_mib"] for r in results], "peak (VmHWM)", "s--")
    ax.set_title("serve memory (MiB)")
    ax.legend()
    ax = axes[1]
    line(ax, [r["full_analysis_ms"] for r in results], "N unchanged resources (best of 3)")
    ax.set_title("full analysis (ms)")
    ax.legend()
    ax = axes[2]
    line(ax, [r["ready_s"] for r in results], "start to /ready")
    line(ax, [r["stored_s"] for r in results], "start to all records stored", "s--")
    ax.set_title("start-up (s)")
    ax.legend()
    if check_rows:
        ax = axes[3]
        xs = [r["objects"] for r in check_rows]
        ax.plot(xs, [r["check_file_ms"] for r in check_rows], "o-", label="driftguard check (file://)")
        diff = [(r["objects"], r["kubectl_diff_ms"]) for r in check_rows if r.get("kubectl_diff_ms")]
        if diff:
            ax.plot([d[0] for d in diff], [d[1] for d in diff], "s--", label="kubectl diff")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("objects")
        ax.set_title("one-shot check (ms, median)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,50000,100000")
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--churn-rate", type=int, default=100)
    ap.add_argument("--churn-seconds", type=int, default=20)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--check-results", type=Path, help="the --results file of scripts/bench/check.py")
    ap.add_argument("--results", type=Path, help="write the figures as JSON")
    ap.add_argument("--from-results", type=Path,
                    help="measure nothing: draw --plot from a --results file written before")
    ap.add_argument("--keep", action="store_true", help="leave the objects and namespaces")
    ap.add_argument("--prefix", default=PREFIX, help="of the namespaces' names")
    ap.add_argument("--run", help="the run's label value (default: random); with the objects of an earlier "
                                  "--keep run of the same --run and --prefix, nothing is created again")
    ap.add_argument("--heap-profile", type=Path,
                    help="run serve under heaptrack, writing DIR/heap-N.* and DIR/heap-N.txt (peak consumers); "
                         "its timings and memory are then heaptrack's, not serve's")
    args = ap.parse_args()
    globals()["PREFIX"] = args.prefix
    if args.from_results:
        if not args.plot:
            sys.exit("--from-results draws a plot: pass --plot FILE")
        check_rows = json.loads(args.check_results.read_text()) if args.check_results else None
        plot(json.loads(args.from_results.read_text()), check_rows, args.plot)
        return
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release -p driftguard")
    kc, server, token = kubeconfig()
    api = Api(server, token)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    run = args.run or uuid.uuid4().hex[:8]
    print(f"run {run} (objects labelled dg-scale={run})", flush=True)
    created = 0
    results = []
    used_namespaces = min(args.namespaces, sizes[-1])
    try:
        t = time.perf_counter()
        statuses = api.many([("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": namespace(i, args.namespaces)}})
                             for i in range(used_namespaces)])
        bad = [s for s in statuses if s not in (201, 409)]
        if bad:
            raise SystemExit(f"creating namespaces failed: statuses {sorted(set(bad))}")
        print(f"{used_namespaces} namespaces ready in {time.perf_counter() - t:.1f} s", flush=True)
        existing = count_existing(api, run)
        if existing > sizes[0]:
            print(f"warning: {existing} objects of run {run} exist already (--keep): every size below that "
                  f"watches all of them", flush=True)
        created = min(existing, sizes[-1])
        for n in sizes:
            t = time.perf_counter()
            jobs = []
            for i in range(created, n):
                m = manifest(i, args.namespaces, run)
                jobs.append(("POST", f"/api/v1/namespaces/{m['metadata']['namespace']}/configmaps", m))
            statuses = api.many(jobs)
            # 409: already there from a run kept with --keep (same --run, so the same labels).
            bad = [s for s in statuses if s not in (201, 409)]
            if bad:
                raise SystemExit(f"creating ConfigMaps failed: statuses {sorted(set(bad))} ({len(bad)} of {len(jobs)})")
            if jobs:
                print(f"{len(jobs)} ConfigMaps created ({n} in all) in {time.perf_counter() - t:.1f} s "
                      f"({len(jobs) / (time.perf_counter() - t):.0f}/s)", flush=True)
            created = n
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                repository(tmp / "repo", n, args.namespaces, run)
                before = apiserver_metrics(api)
                heap = args.heap_profile / f"heap-{n}" if args.heap_profile else None
                serve = Serve(kc, tmp / "repo", tmp, run, heap)
                try:
                    ready = serve.wait("/ready 200", lambda: serve.status("/ready") == 200)
                    stored = serve.wait(f"{n} records", lambda: serve.get("/api/v1/drift-records?limit=1")["total"] >= n)
                    time.sleep(2)
                    rss, peak = serve.memory_mib()
                    anon, file_backed = serve.split
                    analyses = [serve.analysis() for _ in range(3)]
                    latencies, missed, achieved, chosen = churn(api, serve, n, args.namespaces, args.churn_rate,
                                                                args.churn_seconds)
                    after = apiserver_metrics(api)
                    rss_after, peak_after = serve.memory_mib()
                finally:
                    serve.stop()
                if heap:
                    heap_summary(heap, n)
                api.many([("PATCH", f"/api/v1/namespaces/{namespace(i, args.namespaces)}/configmaps/{name(i, args.namespaces)}",
                           {"data": {"mode": "steady"}}, "application/merge-patch+json") for i in chosen])
            row = {
                "objects": n, "ready_s": round(ready, 2), "stored_s": round(stored, 2),
                "rss_mib": round(rss, 1), "peak_mib": round(max(peak, peak_after), 1),
                "rss_after_churn_mib": round(rss_after, 1),
                # Of the settled figure: the heap and stacks, and the binary's pages.
                "rss_anon_mib": round(anon, 1), "rss_file_mib": round(file_backed, 1),
                "full_analysis_ms": round(min(analyses), 1), "full_analyses_ms": [round(a, 1) for a in analyses],
                "churn_rate": round(achieved, 1), "churn_changes": len(chosen), "churn_missed": missed,
                "latency_p50_ms": round(percentile(latencies, 50), 1),
                "latency_p99_ms": round(percentile(latencies, 99), 1),
                "latency_max_ms": round(latencies[-1], 1) if latencies else None,
            }
            if before and after:
                row["apiserver_lists"] = after[0]["LIST"] - before[0]["LIST"]
                row["apiserver_watches"] = after[0]["WATCH"] - before[0]["WATCH"]
                row["registered_watchers"] = after[1] - before[1]
            results.append(row)
            print(f"{n:>7} objects: ready {ready:.1f} s, all stored {stored:.1f} s; RSS {rss:.0f} MiB (anon {anon:.0f}, file {file_backed:.0f}) "
                  f"(peak {row['peak_mib']:.0f}); full analysis {min(analyses):.0f} ms; churn {achieved:.0f}/s: detection p50 "
                  f"{row['latency_p50_ms']} ms, p99 {row['latency_p99_ms']} ms, max {row['latency_max_ms']} ms"
                  f"{f', {missed} not detected' if missed else ''}; API server: "
                  f"{row.get('apiserver_lists', '?')} LIST, {row.get('apiserver_watches', '?')} WATCH, "
                  f"{row.get('registered_watchers', '?')} watchers", flush=True)
    finally:
        if not args.keep:
            t = time.perf_counter()
            api.many([("DELETE", f"/api/v1/namespaces/{namespace(i, args.namespaces)}/configmaps?labelSelector=dg-scale%3D{run}",
                       None) for i in range(used_namespaces)])
            print(f"objects deleted in {time.perf_counter() - t:.1f} s (the empty namespaces are kept: "
                  f"without a controller-manager a deleted namespace stays Terminating and refuses the next run)")
    if args.results:
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        check_rows = json.loads(args.check_results.read_text()) if args.check_results else None
        plot(results, check_rows, args.plot)


if __name__ == "__main__":
    main()
