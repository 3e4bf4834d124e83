#!/usr/bin/env python3
"""Benchmarks of `driftguard serve` against the local control plane (issue 8's figures).

  scripts/bench/serve.py [--latency-objects 1000] [--samples 200] [--objects 10000] [--seconds 10]
                         [--notify] [--sse 100] [--browser]

1. Detection latency: N ConfigMaps in Git and in the cluster; `serve` watches them. For each
   sample one ConfigMap is patched through the API server (HTTP PATCH); the clock starts when
   that call returns and stops when the record is visible as `active` through the REST API.
   With --notify the same run is repeated with three sinks configured (Alertmanager, Slack and a
   signed webhook, all answered by a local HTTP receiver in this script), to show that
   notifications do not add to detection latency; it prints what the receiver got. With
   --sse N it is repeated with N clients reading GET /api/v1/events (the dashboard's live
   stream), each of which must receive every detection.
2. Memory, full analysis and API throughput: M ConfigMaps (so M watched objects and M records);
   resident memory of `serve` (VmRSS), the duration of a full analysis of M unchanged resources
   triggered through the API, then `wrk` on /api/v1/statistics and on a 100-record list page, on
   the same 2 cores as the server. With --browser, headless Chromium (chromedriver) loads the
   dashboard's overview over those M records: time to the first render of its counts, and the
   bytes transferred.

Needs DRIFTGUARD_TEST_KUBECONFIG (scripts/control-plane.sh up) and a release binary
(cargo build --release -p driftguard). Stops everything it started and deletes its namespaces.
"""
from datetime import datetime
import argparse, base64, json, os, re, ssl, statistics, subprocess, sys, tempfile, time, urllib.request, uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "driftguard"


def kubeconfig():
    path = os.environ.get("DRIFTGUARD_TEST_KUBECONFIG")
    if not path:
        sys.exit("DRIFTGUARD_TEST_KUBECONFIG is not set: run scripts/control-plane.sh up and export what it prints")
    text = Path(path).read_text()
    server = re.search(r"server:\s*(\S+)", text).group(1)
    token = re.search(r"token:\s*(\S+)", text).group(1)
    return path, server, token


def kubectl(kc, *args, stdin=None):
    return subprocess.run(["kubectl", "--kubeconfig", kc, *args], input=stdin, text=True,
                          capture_output=True, check=True).stdout


def configmaps(ns, count):
    docs = []
    for i in range(count):
        docs.append(f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{i:05d}
  namespace: {ns}
  labels: {{app: bench, shard: s{i % 10}}}
data:
  retries: "3"
  mode: steady
  app.properties: |
    timeout=30
    level=info
""")
    return "---\n".join(docs)


def apply_all(kc, ns, yaml_text, count):
    kubectl(kc, "create", "namespace", ns)
    docs = yaml_text.split("---\n")
    for start in range(0, len(docs), 500):
        kubectl(kc, "apply", "-f", "-", stdin="---\n".join(docs[start:start + 500]))
    print(f"  applied {count} ConfigMaps in {ns}", flush=True)


class Receiver:
    """A local HTTP endpoint answering 200 to every POST, counting requests per path prefix."""

    def __init__(self):
        import http.server, threading
        counts = self.counts = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                prefix = "/" + self.path.strip("/").split("/")[0]
                counts[prefix] = counts.get(prefix, 0) + 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self):
        url = f"http://127.0.0.1:{self.port}"
        return (f"notifications: {{alertmanager: {{url: {url}/am, resend_interval: 1h}}, "
                f"slack: {{webhook_url: {url}/slack}}, "
                f"webhooks: [{{name: bench, url: {url}/hook, secret: bench-secret}}]}}\n")

    def stop(self):
        self.server.shutdown()


class SseClients:
    """N connections reading GET /api/v1/events, all held by ONE separate process (a selector
    loop that counts `event: detected` per stream). One process rather than N: on a 2-core
    machine, N reader processes waking per event would take the CPU from the server and be
    measured as the server's cost; real pages are in browsers on other machines."""

    READER = r"""
import selectors, socket, sys, time
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sel = selectors.DefaultSelector()
counts = [0] * n
tails = [b""] * n
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
last = 0
while True:
    for key, _ in sel.select(timeout=0.5):
        i = key.data
        try:
            data = key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            sel.unregister(key.fileobj)
            continue
        text = tails[i] + data
        counts[i] += text.count(b"event: detected")
        tails[i] = text[-20:].replace(b"event: detected", b"")
    if time.time() - last > 0.2:
        open(out, "w").write(" ".join(map(str, counts)))
        last = time.time()
"""

    def __init__(self, port, n):
        self.dir = tempfile.TemporaryDirectory()
        self.out = Path(self.dir.name) / "counts.txt"
        self.n = n
        self.proc = subprocess.Popen([sys.executable, "-c", self.READER, str(port), str(n), str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def counts(self):
        time.sleep(0.5)
        try:
            return [int(x) for x in self.out.read_text().split()]
        except (FileNotFoundError, ValueError):
            return [0] * self.n

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


class Serve:
    def __init__(self, kc, ns, repo_dir, workdir, extra=""):
        self.port = free_port()
        self.dir = Path(workdir)
        cfg = self.dir / "driftguard.yaml"
        cfg.write_text(f"""server: {{address: 127.0.0.1, port: {self.port}}}
database: {{driver: sqlite, path: {self.dir / 'bench.db'}}}
kubernetes: {{config_path: {kc}, namespaces: [{ns}], resources: [configmaps]}}
git: {{repository_url: "file://{repo_dir}", default_branch: main, workdir: {self.dir / 'git'}}}
drift_detection: {{enable_periodic: false}}
logging: {{level: warn}}
""" + extra)
        self.log = open(self.dir / "serve.log", "w")
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MONGODB_URI", "MONGODB_HOST")}
        self.proc = subprocess.Popen([str(BINARY), "serve", "--config", str(cfg)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return json.load(r)

    def wait_records(self, count, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.get("/api/v1/drift-records?limit=1")["total"] >= count:
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise SystemExit(f"serve did not hold {count} records within {timeout}s; see {self.dir}/serve.log")

    def rss_mib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def git_repo(path, yaml_text):
    path.mkdir(parents=True)
    (path / "configmaps.yaml").write_text(yaml_text)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["-c", "user.name=bench", "-c", "user.email=b@x",
                                                              "commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(path), *args], check=True)


def latency(kc, server, token, n, samples, notify=False, sse=0):
    ns = f"bench-lat-{uuid.uuid4().hex[:8]}"
    receiver = Receiver() if notify else None
    clients = None
    text = configmaps(ns, n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        git_repo(tmp / "repo", text)
        apply_all(kc, ns, text, n)
        serve = Serve(kc, ns, tmp / "repo", tmp, receiver.notifications() if receiver else "")
        try:
            serve.wait_records(n)
            if sse:
                clients = SseClients(serve.port, sse)
                time.sleep(1)
            ctx = ssl._create_unverified_context()
            results = []
            for i in range(samples):
                name = f"cm-{(i * 7) % n:05d}"
                body = json.dumps({"data": {"mode": f"drifted-{i}"}}).encode()
                req = urllib.request.Request(f"{server}/api/v1/namespaces/{ns}/configmaps/{name}", data=body,
                                             method="PATCH", headers={"Authorization": f"Bearer {token}",
                                                                      "Content-Type": "application/merge-patch+json"})
                urllib.request.urlopen(req, context=ctx, timeout=30).read()
                t0 = time.perf_counter()
                rid = f"ConfigMap:{ns}:{name}"
                while True:
                    rec = serve.get(f"/api/v1/drift-records/{rid}")
                    if rec["drift_status"] == "active" and any(
                            c["to"] == f"drifted-{i}" for c in rec["drift_details"]):
                        break
                    if time.perf_counter() - t0 > 10:
                        raise SystemExit(f"{rid} not detected within 10 s")
                    time.sleep(0.002)
                results.append((time.perf_counter() - t0) * 1000)
            results.sort()
            p = lambda q: results[min(len(results) - 1, int(q * len(results)))]
            sinks = "three notification sinks" if receiver else "no notification sink"
            if clients:
                sinks += f", {sse} open event streams"
            print(f"detection latency, {n} watched ConfigMaps, {sinks}, {samples} samples: "
                  f"p50 {p(0.50):.1f} ms, p90 {p(0.90):.1f} ms, p99 {p(0.99):.1f} ms, max {results[-1]:.1f} ms")
            if receiver:
                time.sleep(2)
                print(f"  the receiver got (requests per sink): {receiver.counts}")
            if clients:
                time.sleep(1)
                got = sorted(clients.counts)
                print(f"  `detected` events per stream: min {got[0]}, max {got[-1]} (of {samples})")
        finally:
            if clients:
                clients.close()
            if receiver:
                receiver.stop()
            serve.stop()
            delete_namespace(kc, ns)


def browser_overview(serve, n):
    """Headless Chromium through chromedriver: the overview's first render over n records."""
    import socket
    port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)["value"]

    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as profile:
            session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}"]}}}})["sessionId"]
            t0 = time.perf_counter()
            call("POST", f"/session/{session}/url", {"url": f"http://127.0.0.1:{serve.port}/"})
            script = {"script": 'return [...document.querySelectorAll(".card .n")].some(c => c.textContent !== "")', "args": []}
            while not call("POST", f"/session/{session}/execute/sync", script):
                time.sleep(0.01)
            rendered = (time.perf_counter() - t0) * 1000
            weight = call("POST", f"/session/{session}/execute/sync", {"script": """
                const nav = performance.getEntriesByType('navigation')[0];
                const res = performance.getEntriesByType('resource')
                  .filter(r => !r.name.includes('/api/') && !r.name.includes('/ready'));
                return (nav ? nav.transferSize : 0) + res.reduce((a, r) => a + r.transferSize, 0);""", "args": []})
            call("DELETE", f"/session/{session}")
        print(f"dashboard overview over {n} records: counts rendered {rendered:.0f} ms after navigation "
              f"(headless Chromium, page load included); page, script and stylesheet transferred: {weight} bytes")
    finally:
        driver.kill()


def delete_namespace(kc, ns):
    """Deletes the namespace's objects, then the namespace: a control plane without a
    controller-manager (the test plane) never empties a deleted namespace, and benches leave
    tens of thousands of objects behind that slow every later list."""
    subprocess.run(["kubectl", "--kubeconfig", kc, "-n", ns, "delete",
                    "configmaps,deployments,secrets,services", "--all", "--wait=false"],
                   capture_output=True)
    subprocess.run(["kubectl", "--kubeconfig", kc, "delete", "namespace", ns, "--wait=false"],
                   capture_output=True)


def full_analysis(serve, n, runs=3):
    """Full analyses of n unchanged resources, triggered through the API (`POST /api/v1/analyze`);
    the duration is the run's own start-to-finish time."""
    durations = []
    for _ in range(runs):
        req = urllib.request.Request(f"http://127.0.0.1:{serve.port}/api/v1/analyze", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            run_id = json.load(r)["run_id"]
        deadline = time.time() + 600
        while True:
            run = serve.get(f"/api/v1/analysis/{run_id}")
            if run.get("finished_at"):
                break
            if time.time() > deadline:
                raise SystemExit(f"analysis {run_id} did not finish within 600 s")
            time.sleep(0.05)
        parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))
        durations.append((parse(run["finished_at"]) - parse(run["started_at"])).total_seconds() * 1000)
    best = min(durations)
    print(f"full analysis of {n} unchanged resources: best of {runs} {best:.0f} ms "
          f"({best * 1000 / n:.1f} µs per resource; all: {', '.join(f'{d:.0f}' for d in durations)} ms)")


def throughput(kc, n, seconds, browser=False):
    ns = f"bench-api-{uuid.uuid4().hex[:8]}"
    text = configmaps(ns, n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        git_repo(tmp / "repo", text)
        t = time.time()
        apply_all(kc, ns, text, n)
        print(f"  (apply took {time.time() - t:.0f} s)")
        serve = Serve(kc, ns, tmp / "repo", tmp)
        try:
            t = time.time()
            serve.wait_records(n)
            print(f"serve: {n} watched ConfigMaps analysed and stored {time.time() - t:.1f} s after start")
            time.sleep(2)
            print(f"resident memory of serve with {n} watched objects and {n} records: {serve.rss_mib():.0f} MiB")
            full_analysis(serve, n)
            if browser:
                browser_overview(serve, n)
            import shutil
            if not shutil.which("wrk"):
                print("wrk is not installed (apt-get install wrk): API throughput skipped")
                return
            for path in ("/api/v1/statistics", "/api/v1/drift-records?limit=100&offset=500"):
                out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency",
                                      f"http://127.0.0.1:{serve.port}{path}"], capture_output=True, text=True,
                                     check=True).stdout
                rps = re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)
                p99 = re.search(r"99%\s+(\S+)", out)
                errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                print(f"wrk -t2 -c32 {path}: {float(rps):.0f} requests/s, p99 {p99.group(1) if p99 else '?'}"
                      f"{', NON-2xx: ' + errs.group(1) if errs else ''}")
        finally:
            serve.stop()
            delete_namespace(kc, ns)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-objects", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--notify", action="store_true", help="repeat the latency run with three notification sinks")
    ap.add_argument("--sse", type=int, default=0, help="repeat the latency run with N open event streams")
    ap.add_argument("--browser", action="store_true", help="time the dashboard's overview in headless Chromium")
    args = ap.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release -p driftguard")
    kc, server, token = kubeconfig()
    if not args.skip_latency:
        latency(kc, server, token, args.latency_objects, args.samples)
        if args.notify:
            latency(kc, server, token, args.latency_objects, args.samples, notify=True)
        if args.sse:
            latency(kc, server, token, args.latency_objects, args.samples, sse=args.sse)
    if not args.skip_throughput:
        throughput(kc, args.objects, args.seconds, browser=args.browser)


if __name__ == "__main__":
    main()
