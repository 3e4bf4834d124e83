#!/usr/bin/env python3
"""Benchmark of `driftguard check` beside `kubectl diff` (issue 20's figures).

  scripts/bench/check.py [--objects 100,1000,10000] [--runs 15] [--kubectl-runs 2] [--history 20]
                         [--daemon] [--baseline BINARY] [--output table|json] [--profile]
                         [--results FILE]

For each size N: a fresh namespace holding N/2 Deployments and N/2 ConfigMaps (applied with
`kubectl apply` in chunks, so each carries its last-applied annotation, as in real use), a Git
repository of the same manifests (one file per application: its Deployment and its ConfigMap),
and one Deployment scaled by hand (`kubectl scale`). Then, each run timed as the wall clock
around the whole process:

- `driftguard check --repo file://REPO --namespace NS` (the repository by URL),
- `driftguard check --repo REPO --namespace NS` (the directory read as it is on disk),
- with --daemon, `driftguard check --repo git://127.0.0.1:PORT/REPO` (`git daemon`: a clone over
  the network protocol, shallow),
- `kubectl diff -R -f REPO` (once or twice: it takes seconds).

With --baseline BINARY, each run of this build is followed by one of BINARY (say, a build of
main kept aside), so both see the same load — on a shared machine the absolute figures move
with whatever else runs.

It prints min / median wall time and CPU (user + system) per run, checks every run found the
one drift (exit 1, N records, one active), and ends with a table of the sizes side by side.
`--objects 10000` works too (applying takes a few minutes). Runs are timed as users run them
(no debug log); `--profile` prints one more run's timeline (`RUST_LOG=driftguard=debug`:
connected, kinds resolved and how many group versions were read, snapshot built, each kind
listed, evaluated).

Needs DRIFTGUARD_TEST_KUBECONFIG (scripts/control-plane.sh up) and a release binary
(cargo build --release -p driftguard). Deletes its namespaces and temporary directories.
"""
import argparse, json, os, re, resource, statistics, subprocess, sys, tempfile, time, uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import BINARY, kubeconfig  # noqa: E402


def kubectl(kc, *args, stdin=None, check=True):
    return subprocess.run(["kubectl", "--kubeconfig", kc, *args], input=stdin, text=True,
                          capture_output=True, check=check)


def app(ns, i):
    """One application: a Deployment and its ConfigMap."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i:05d}
  namespace: {ns}
  labels: {{app: app-{i:05d}, bench: check}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: app-{i:05d}}}
  template:
    metadata:
      labels: {{app: app-{i:05d}}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {{name: MODE, value: steady}}
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
          limits: {{cpu: 500m, memory: 128Mi}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-{i:05d}-config
  namespace: {ns}
  labels: {{app: app-{i:05d}, bench: check}}
data:
  retries: "3"
  mode: steady
  app.properties: |
    timeout=30
    level=info
"""


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x", *args], check=True)


def prepare(kc, objects, workdir, history):
    """The namespace, the repository (a Git repository whose directory is also read as it is):
    `history` earlier commits each changing a tenth of the applications, then the manifests
    applied."""
    ns = f"bench-check-{uuid.uuid4().hex[:8]}"
    apps = objects // 2
    repo = workdir / f"repo-{objects}"
    (repo / "apps").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for k in range(history):
        for i in range(k % 10, apps, 10):
            (repo / "apps" / f"app-{i:05d}.yaml").write_text(app(ns, i).replace("value: steady", f"value: v{k}"))
        git(repo, "add", ".")
        git(repo, "commit", "-qm", f"history {k}")
    texts = [app(ns, i) for i in range(apps)]
    for i, text in enumerate(texts):
        (repo / "apps" / f"app-{i:05d}.yaml").write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "bench")
    kubectl(kc, "create", "namespace", ns)
    started = time.perf_counter()
    for start in range(0, apps, 100):
        kubectl(kc, "apply", "-f", "-", stdin="---\n".join(texts[start:start + 100]))
    print(f"  {objects} objects applied in {ns} in {time.perf_counter() - started:.1f} s", flush=True)
    kubectl(kc, "-n", ns, "scale", "deployment", "app-00000", "--replicas=3")
    return ns, repo


def timed(command, cwd):
    """(wall seconds, CPU seconds, completed process) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=clean_env())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "RUST_LOG")}


def check_runs(kc, ns, repo_arg, objects, runs, cwd, output, binary=BINARY):
    """Timed runs of `check` (the table users read, or --output json); each must find the drift."""
    walls, cpus = [], []
    command = [str(binary), "check", "--repo", repo_arg, "--kubeconfig", kc, "--namespace", ns,
               "--output", output]
    for _ in range(runs):
        wall, cpu, proc = timed(command, cwd)
        if proc.returncode != 1:
            sys.exit(f"check exited {proc.returncode} (expected 1: one drift):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        if output == "json":
            doc = json.loads(proc.stdout)
            active = sum(1 for r in doc["drift_records"] if r["drift_status"] == "active")
            found = (doc["count"], active, len(doc["errors"]))
        else:
            summary = re.search(r"(\d+) drifted, (\d+) in sync, (\d+) errors", proc.stdout)
            found = (int(summary[1]) + int(summary[2]), int(summary[1]), int(summary[3])) if summary else None
        if found != (objects, 1, 0):
            sys.exit(f"check found (records, active, errors) = {found}, expected ({objects}, 1, 0):\n{proc.stdout[-2000:]}")
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus


def git_daemon(base, repo):
    """`git daemon` serving `repo` on a free local port; (process, URL) once it answers."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
                               "--listen=127.0.0.1", f"--port={port}", str(base)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"git://127.0.0.1:{port}/{repo.name}"
    for _ in range(100):
        if subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0:
            return daemon, url
        time.sleep(0.05)
    daemon.terminate()
    sys.exit("git daemon did not start")


def kubectl_diff_runs(kc, repo, runs, cwd):
    walls = []
    for _ in range(runs):
        wall, _, proc = timed(["kubectl", "--kubeconfig", kc, "diff", "-R", "-f", str(repo)], cwd)
        if proc.returncode != 1:
            sys.exit(f"kubectl diff exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        walls.append(wall)
    return walls


def ms(values):
    return f"{min(values) * 1000:7.0f} / {statistics.median(values) * 1000:7.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default="1000", help="comma-separated sizes, e.g. 100,1000,10000")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--kubectl-runs", type=int, default=2, help="0 skips kubectl diff")
    ap.add_argument("--history", type=int, default=20, help="commits before the one checked")
    ap.add_argument("--baseline", type=Path,
                    help="another driftguard binary (e.g. a build of main) run in alternation with this one, "
                         "so both see the same load")
    ap.add_argument("--daemon", action="store_true",
                    help="also run check against git://127.0.0.1 (git daemon: a shallow fetch over the network protocol)")
    ap.add_argument("--output", default="table", choices=["table", "json"],
                    help="check's output (json prints every record with both states: 3 MB at 1,000)")
    ap.add_argument("--profile", action="store_true", help="print one run's debug timings")
    ap.add_argument("--results", type=Path, help="write the medians as JSON (for scale.py --check-results)")
    args = ap.parse_args()
    kc = kubeconfig()[0]
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release -p driftguard")
    sizes = [int(s) for s in args.objects.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="driftguard-bench-check-") as tmp:
        tmp = Path(tmp)
        cwd = tmp / "cwd"
        cwd.mkdir()
        for objects in sizes:
            ns = None
            try:
                ns, repo = prepare(kc, objects, tmp, args.history)
                # One warm-up run of each (page cache, the API server's watch cache).
                check_runs(kc, ns, f"file://{repo}", objects, 1, cwd, "json")
                url_walls, url_cpus, dir_walls, dir_cpus = [], [], [], []
                base = {"file://": ([], []), "DIR": ([], [])}
                for _ in range(args.runs):
                    for label, arg, walls, cpus in (("file://", f"file://{repo}", url_walls, url_cpus),
                                                    ("DIR", str(repo), dir_walls, dir_cpus)):
                        w, c = check_runs(kc, ns, arg, objects, 1, cwd, args.output)
                        walls += w
                        cpus += c
                        if args.baseline:
                            w, c = check_runs(kc, ns, arg, objects, 1, cwd, args.output, args.baseline)
                            base[label][0].extend(w)
                            base[label][1].extend(c)
                print(f"  check --repo file://  min/median wall {ms(url_walls)} ms, "
                      f"CPU {ms(url_cpus)} ms  ({args.runs} runs)", flush=True)
                print(f"  check --repo DIR      min/median wall {ms(dir_walls)} ms, "
                      f"CPU {ms(dir_cpus)} ms  ({args.runs} runs)", flush=True)
                if args.baseline:
                    for label, (walls, cpus) in base.items():
                        print(f"  baseline --repo {label:8} min/median wall {ms(walls)} ms, "
                              f"CPU {ms(cpus)} ms  ({args.runs} runs, {args.baseline})", flush=True)
                daemon_walls = []
                if args.daemon:
                    daemon, url = git_daemon(tmp, repo)
                    try:
                        daemon_walls, daemon_cpus = check_runs(kc, ns, url, objects, args.runs, cwd, args.output)
                    finally:
                        daemon.terminate()
                        daemon.wait()
                    print(f"  check --repo git://   min/median wall {ms(daemon_walls)} ms, "
                          f"CPU {ms(daemon_cpus)} ms  ({args.runs} runs)", flush=True)
                if args.profile:
                    env = clean_env() | {"RUST_LOG": "driftguard=debug"}
                    proc = subprocess.run([str(BINARY), "check", "--repo", f"file://{repo}", "--kubeconfig",
                                           kc, "--namespace", ns, "--output", args.output],
                                          capture_output=True, text=True, cwd=cwd, env=env)
                    print(proc.stderr)
                diff_walls = kubectl_diff_runs(kc, repo, args.kubectl_runs, cwd)
                if diff_walls:
                    print(f"  kubectl diff -R -f    min/median wall {ms(diff_walls)} ms  "
                          f"({args.kubectl_runs} runs)", flush=True)
                rows.append((objects, url_walls, dir_walls, daemon_walls, diff_walls))
            finally:
                if ns:
                    # Objects first: the test plane has no controller-manager to empty a
                    # deleted namespace.
                    kubectl(kc, "-n", ns, "delete", "configmaps,deployments", "--all", "--wait=false", check=False)
                    kubectl(kc, "delete", "namespace", ns, "--wait=false", check=False)
    print()
    print("objects | check file:// min/median ms | check DIR min/median ms | check git:// min/median ms | kubectl diff ms | diff / check file://")
    print("------: | --------------------------: | ----------------------: | -------------------------: | --------------: | -------------------:")
    for objects, url, dirs, daemon, diff in rows:
        ratio = f"{min(diff) / statistics.median(url):.0f}x" if diff else "-"
        diff_ms = f"{min(diff) * 1000:.0f}" if diff else "-"
        daemon_ms = ms(daemon) if daemon else "-"
        print(f"{objects:7d} | {ms(url):>27} | {ms(dirs):>23} | {daemon_ms:>26} | {diff_ms:>15} | {ratio:>20}")
    if args.results:
        # Medians in ms, for scripts/bench/scale.py --check-results (the growth plot).
        args.results.write_text(json.dumps([
            {"objects": objects, "check_file_ms": round(statistics.median(url) * 1000, 1),
             "check_dir_ms": round(statistics.median(dirs) * 1000, 1),
             "kubectl_diff_ms": round(min(diff) * 1000, 1) if diff else None}
            for objects, url, dirs, daemon, diff in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
