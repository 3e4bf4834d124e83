#!/usr/bin/env python3
"""Several replicas (issue 19): failover time and detection latency seen through a follower.

  scripts/bench/failover.py [--objects 200] [--failovers 20] [--samples 50]
                            [--lease 3s --renew 2s --retry 500ms] [--churn 0]

Three `driftguard serve` replicas share the MongoDB peer and elect a leader on a Lease in a
fresh namespace of the local control plane; N ConfigMaps are in Git and in the cluster.

1. Failovers, alternating `kill -9` of the leader and SIGTERM of the leader (a rolling update's
   hand-over). The clock starts when the signal is sent and stops when another replica's
   /ready reports `leader`, then when that leader has analysed (a change made right after the
   signal is visible through the API). The stopped replica is started again each time.
   Expected: kill -9 ≈ lease_duration + up to retry_period; SIGTERM well under a second.
2. Detection latency through a follower: one ConfigMap is patched through the API server; the
   clock stops when a *follower* answers its record as `active` (the leader wrote it to
   MongoDB; the follower read it from there). The same through the leader, for comparison.
3. With --churn R: R ConfigMap patches per second for 10 s while a follower is polled; reports
   detection latency under churn and whether the leader kept up.

Needs DRIFTGUARD_TEST_KUBECONFIG (scripts/control-plane.sh up), DRIFTGUARD_TEST_MONGODB_URI
(scripts/mongo-peer.sh up) and a release binary (cargo build --release -p driftguard). Stops
everything it started and deletes its namespace.
"""
import argparse, json, os, re, signal, ssl, statistics, subprocess, sys, tempfile, time, urllib.request, uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import BINARY, kubeconfig, kubectl, configmaps, apply_all, git_repo, free_port, delete_namespace  # noqa: E402


class Replica:
    def __init__(self, name, cfg_text, workdir):
        self.name = name
        self.port = free_port()
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg = self.dir / "driftguard.yaml"
        self.cfg_text = cfg_text
        self.proc = None
        self.start()

    def start(self):
        self.cfg.write_text(f"server: {{address: 127.0.0.1, port: {self.port}}}\n"
                            + self.cfg_text.replace("@IDENTITY@", self.name)
                            .replace("@WORKDIR@", str(self.dir / "git")))
        log = open(self.dir / "serve.log", "a")
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MONGODB_URI", "MONGODB_HOST")}
        self.proc = subprocess.Popen([str(BINARY), "serve", "--config", str(self.cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, env=env)

    def get(self, path, timeout=2):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
            return json.load(r)

    def role(self):
        try:
            req = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=1)
            body = json.load(req)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        except Exception:
            return None
        return (body.get("leader") or {}).get("role")

    def status(self, rid):
        try:
            return self.get(f"/api/v1/drift-records/{rid}", timeout=1)["drift_status"]
        except Exception:
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=20):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.alive():
            self.proc.terminate()
            self.wait_exit()


def wait(what, timeout, cond, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise SystemExit(f"{what}: not within {timeout}s")


def leader_of(replicas):
    leaders = [r for r in replicas if r.alive() and r.role() == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def patch(server, token, ns, name, value):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = json.dumps({"data": {"mode": value}}).encode()
    req = urllib.request.Request(f"{server}/api/v1/namespaces/{ns}/configmaps/{name}", data=body, method="PATCH",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/merge-patch+json"})
    urllib.request.urlopen(req, context=ctx, timeout=10).read()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--failovers", type=int, default=20)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--lease", default="3s")
    ap.add_argument("--renew", default="2s")
    ap.add_argument("--retry", default="500ms")
    ap.add_argument("--churn", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the replicas' logs (printed path)")
    args = ap.parse_args()
    mongo = os.environ.get("DRIFTGUARD_TEST_MONGODB_URI")
    if not mongo:
        sys.exit("DRIFTGUARD_TEST_MONGODB_URI is not set: run scripts/mongo-peer.sh up and export what it prints")
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release -p driftguard")
    kc, server, token = kubeconfig()
    ns = f"bench-fo-{uuid.uuid4().hex[:8]}"
    db = f"dgbench_{uuid.uuid4().hex[:8]}"
    work = tempfile.TemporaryDirectory()
    if args.keep:
        work._finalizer.detach()  # keep the directory (and its logs) after exit
        work.cleanup = lambda: None
    text = configmaps(ns, args.objects)
    replicas = []
    try:
        apply_all(kc, ns, text, args.objects)
        repo = Path(work.name) / "repo"
        git_repo(repo, text)
        cfg = f"""database: {{driver: mongodb, uri: "{mongo}", dbname: {db}}}
kubernetes: {{config_path: {kc}, namespaces: [{ns}], resources: [configmaps]}}
git: {{repository_url: "file://{repo}", default_branch: main, workdir: @WORKDIR@}}
drift_detection: {{enable_periodic: false}}
leader_election: {{enabled: true, lease_name: driftguard, lease_namespace: {ns}, identity: "@IDENTITY@",
                  lease_duration: {args.lease}, renew_deadline: {args.renew}, retry_period: {args.retry}}}
logging: {{level: info}}
"""
        replicas = [Replica(n, cfg, work.name) for n in ("a", "b", "c")]
        wait("one leader", 120, lambda: leader_of(replicas), step=0.1)
        rid = f"ConfigMap:{ns}:cm-00000"
        wait("records in sync", 300, lambda: all(r.status(rid) == "none" for r in replicas), step=0.2)
        print(f"3 replicas, {args.objects} ConfigMaps, lease {args.lease} / renew {args.renew} / retry {args.retry}", flush=True)

        # --- 1. failovers
        times = {"kill -9": [], "SIGTERM": []}
        analysed = {"kill -9": [], "SIGTERM": []}
        value = 0
        for i in range(args.failovers):
            kind = "kill -9" if i % 2 == 0 else "SIGTERM"
            old = wait("a leader", 60, lambda: leader_of(replicas))
            others = [r for r in replicas if r is not old]
            wait("followers up", 60, lambda: all(r.role() == "follower" for r in others))
            target = f"cm-{(i % args.objects):05d}"
            target_id = f"ConfigMap:{ns}:{target}"
            start = time.monotonic()
            old.signal(signal.SIGKILL if kind == "kill -9" else signal.SIGTERM)
            value += 1
            patch(server, token, ns, target, f"failover-{value}")
            new = wait("a new leader", 60, lambda: leader_of(others))
            took = time.monotonic() - start
            wait("the change detected", 60, lambda: new.status(target_id) == "active")
            seen = time.monotonic() - start
            times[kind].append(took)
            analysed[kind].append(seen)
            print(f"  {kind:7s} {old.name} → {new.name}: leads after {took * 1000:7.0f} ms, "
                  f"change detected after {seen * 1000:7.0f} ms", flush=True)
            old.wait_exit()
            patch(server, token, ns, target, "steady")
            wait("resolved", 60, lambda: new.status(target_id) == "resolved")
            old.start()
        for kind in times:
            if times[kind]:
                print(f"{kind}: new leader median {statistics.median(times[kind]) * 1000:.0f} ms, "
                      f"max {max(times[kind]) * 1000:.0f} ms; change detected median "
                      f"{statistics.median(analysed[kind]) * 1000:.0f} ms, max {max(analysed[kind]) * 1000:.0f} ms "
                      f"({len(times[kind])} failovers)")

        # --- 2. detection latency through a follower and through the leader
        leader = wait("a leader", 60, lambda: leader_of(replicas))
        follower = wait("a follower", 60, lambda: next((r for r in replicas if r.alive() and r.role() == "follower"), None))
        for who, reader in (("follower", follower), ("leader", leader)):
            lat = []
            for s in range(args.samples):
                name = f"cm-{(s % args.objects):05d}"
                sid = f"ConfigMap:{ns}:{name}"
                start = time.monotonic()
                patch(server, token, ns, name, f"lat-{who}-{s}")
                wait("active", 30, lambda: reader.status(sid) == "active", step=0.002)
                lat.append(time.monotonic() - start)
                patch(server, token, ns, name, "steady")
                wait("resolved", 30, lambda: reader.status(sid) == "resolved", step=0.01)
            print(f"detection latency read through the {who}: p50 {statistics.median(lat) * 1000:.1f} ms, "
                  f"p99 {pct(lat, 99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms ({len(lat)} samples)")

        # --- 3. churn: R patches per second from 8 threads, each to a different ConfigMap, for
        # 10 s; then how long until the follower shows every patched ConfigMap with its value.
        if args.churn:
            from concurrent.futures import ThreadPoolExecutor
            count = min(args.churn * 10, args.objects)
            names = [f"cm-{i:05d}" for i in range(count)]
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                for k, name in enumerate(names):
                    due = start + k / args.churn
                    time.sleep(max(0.0, due - time.monotonic()))
                    pool.submit(patch, server, token, ns, name, f"churn-{k}")
            sent_in = time.monotonic() - start
            def visible():
                page = follower.get(f"/api/v1/drift-records?status=active&limit=10000", timeout=30)
                values = {r["name"]: c["to"] for r in page["drift_records"] for c in r["drift_details"]}
                return all(values.get(n) == f"churn-{k}" for k, n in enumerate(names))
            wait("churn visible through the follower", 300, visible, step=0.1)
            done_in = time.monotonic() - start
            print(f"churn: {count} changes sent in {sent_in:.1f} s ({count / sent_in:.0f}/s achieved); "
                  f"all visible through a follower {done_in - sent_in:.2f} s after the last was sent")
    finally:
        for r in replicas:
            r.stop()
        delete_namespace(kc, ns)
        if args.keep:
            print(f"logs kept in {work.name}/{{a,b,c}}/serve.log")
        else:
            work.cleanup()


if __name__ == "__main__":
    main()
