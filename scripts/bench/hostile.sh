#!/usr/bin/env bash
# Peak memory and time of DriftGuard against hostile repositories (issue 14), and of a first
# full analysis of 10,000 resources:
#
#   scripts/bench/hostile.sh [--resources 10000] [--skip-serve]
#
# 1. Each attack is a bare repository served over `git daemon`; `driftguard check --repo git://…`
#    runs against it under GNU time (`%M` is the largest resident set of check and every child it
#    waited for, renderers included). The table shows the exit code and the first error line.
#    Every run is also under `ulimit -v 4 GiB`, so a regression cannot take the machine down
#    (it shows as a crash, with its peak).
# 2. A repository of N ConfigMaps (10 files) that do not exist in a fresh namespace (all
#    Missing): `check` under GNU time, then `serve` with SQLite — started, polled until every
#    record is stored, its peak (VmHWM from /proc/PID/status) read. The service's limit in
#    `deploy/` is 512 MiB.
#
# Needs DRIFTGUARD_TEST_KUBECONFIG (scripts/control-plane.sh up), git, kubectl and jq. Builds the
# release binary (cargo build --release -p driftguard) unless DRIFTGUARD_BINARY names one. GNU
# time is installed with apt-get when missing. Not part of scripts/test.sh. Stops everything it
# started and deletes its namespace.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RESOURCES=10000
SKIP_SERVE=0
while (($#)); do
	case $1 in
	--resources) RESOURCES=$2 && shift 2 ;;
	--skip-serve) SKIP_SERVE=1 && shift ;;
	*) echo "usage: $0 [--resources N] [--skip-serve]" >&2 && exit 2 ;;
	esac
done
LIMIT_KIB=$((4 << 20))
SERVE_LIMIT_MIB=512

die() {
	echo "error: $*" >&2
	exit 1
}

KC=${DRIFTGUARD_TEST_KUBECONFIG:-}
[[ -n $KC && -f $KC ]] ||
	die "DRIFTGUARD_TEST_KUBECONFIG is not set: run scripts/control-plane.sh up and export what it prints"
for tool in git kubectl jq python3; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
if [[ ! -x /usr/bin/time ]]; then
	echo "installing GNU time (apt)"
	{ DEBIAN_FRONTEND=noninteractive apt-get update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time; } >/dev/null ||
		die "could not install GNU time (apt-get install time)"
fi

if [[ -n ${DRIFTGUARD_BINARY:-} ]]; then
	BINARY=$DRIFTGUARD_BINARY
else
	echo "building the release binary (cargo build --release -p driftguard)"
	(cd "$ROOT" && cargo build --release --quiet -p driftguard)
	BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/release/driftguard
fi
[[ -x $BINARY ]] || die "$BINARY is missing"

WORK=$(mktemp -d -t driftguard-bench-hostile-XXXXXX)
NS=bench-hostile-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
DAEMON_PID=""
SERVE_PID=""
LISTENER_PID=""
cleanup() {
	local rc=$?
	trap - EXIT
	set +e
	for pid in $SERVE_PID $DAEMON_PID $LISTENER_PID; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	kubectl --kubeconfig "$KC" delete namespace "$NS" --wait=false >/dev/null 2>&1
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=attacker GIT_AUTHOR_EMAIL=attacker@example.invalid
export GIT_COMMITTER_NAME=attacker GIT_COMMITTER_EMAIL=attacker@example.invalid

kubectl --kubeconfig "$KC" create namespace "$NS" >/dev/null

# --- repositories, built with plumbing straight into bare repositories -------------------------

# g REPO ARGS…: git in the bare repository REPO.
g() {
	local repo=$1
	shift
	git --git-dir "$WORK/repos/$repo.git" "$@"
}
new_repo() { git init --quiet --bare --initial-branch=main "$WORK/repos/$1.git"; }
# blob REPO < contents
blob() { g "$1" hash-object -w --stdin; }
# commit REPO TREE: makes TREE the repository's main.
commit() {
	local c
	c=$(g "$1" commit-tree "$2" -m "$1")
	g "$1" update-ref refs/heads/main "$c"
}
configmap() {
	printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  value: "%s"\n' "$1" "$NS" "$2"
}
alias_bomb() {
	python3 - <<'EOF'
names = "abcdefghij"
print("a: &a [x,x,x,x,x,x,x,x,x,x]")
for prev, nxt in zip(names, names[1:]):
    print(f"{nxt}: &{nxt} [" + ",".join([f"*{prev}"] * 10) + "]")
EOF
}
QUIRK=$'s:\n  q: [\n    1\n]'
# one_file REPO PATH < contents: a commit holding one file.
one_file() {
	local b
	b=$(blob "$1")
	commit "$1" "$(printf '100644 blob %s\t%s\n' "$b" "$2" | g "$1" mktree)"
}

mkdir -p "$WORK/repos"
echo "building the attack repositories in $WORK/repos"

new_repo alias-bomb
{ configmap bomb 1 && alias_bomb; } | one_file alias-bomb bomb.yaml

new_repo alias-bomb-quirk
{ echo "$QUIRK" && configmap quirk 1 && alias_bomb; } | one_file alias-bomb-quirk quirk.yaml

new_repo alias-bomb-kustomization
cm=$(configmap kb 1 | blob alias-bomb-kustomization)
k=$({ printf 'resources:\n- cm.yaml\n' && alias_bomb; } | blob alias-bomb-kustomization)
t=$(printf '100644 blob %s\tcm.yaml\n100644 blob %s\tkustomization.yaml\n' "$cm" "$k" | g alias-bomb-kustomization mktree)
commit alias-bomb-kustomization "$(printf '040000 tree %s\tkb\n' "$t" | g alias-bomb-kustomization mktree)"

new_repo alias-bomb-rendered
b=$({ configmap kr 1 && alias_bomb; } | blob alias-bomb-rendered)
k=$(printf 'resources:\n- bomb.yaml\n' | blob alias-bomb-rendered)
t=$(printf '100644 blob %s\tbomb.yaml\n100644 blob %s\tkustomization.yaml\n' "$b" "$k" | g alias-bomb-rendered mktree)
commit alias-bomb-rendered "$(printf '040000 tree %s\tkr\n' "$t" | g alias-bomb-rendered mktree)"

new_repo git-bomb
t=$(g git-bomb hash-object -t tree -w --stdin </dev/null)
for _ in $(seq 10); do
	t=$(for i in $(seq 0 9); do printf '040000 tree %s\td%s\n' "$t" "$i"; done | g git-bomb mktree)
done
commit git-bomb "$t"

new_repo zero-blob-1g
z=$(head -c $((1 << 30)) /dev/zero | blob zero-blob-1g)
commit zero-blob-1g "$(printf '100644 blob %s\tzero.yaml\n' "$z" | g zero-blob-1g mktree)"

new_repo files-100k
b=$(configmap many 1 | blob files-100k)
t=$(for i in $(seq -w 0 999); do printf '100644 blob %s\tcm%s.yaml\n' "$b" "$i"; done | g files-100k mktree)
commit files-100k "$(for i in $(seq -w 0 99); do printf '040000 tree %s\td%s\n' "$t" "$i"; done | g files-100k mktree)"

# A listener named as a remote base: it must never see a connection.
LISTEN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$LISTEN_PORT" "$WORK/listener.log" <<'EOF' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
while True:
    c, addr = s.accept()
    open(sys.argv[2], "a").write(f"connection from {addr}\n"); c.close()
EOF
LISTENER_PID=$!
new_repo remote-base
cm=$(configmap remote 1 | blob remote-base)
k1=$(printf 'resources:\n- cm.yaml\n- http://127.0.0.1:%s/base.yaml\n' "$LISTEN_PORT" | blob remote-base)
k2=$(printf 'resources:\n- cm.yaml\n- github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.5.0\n' | blob remote-base)
t1=$(printf '100644 blob %s\tcm.yaml\n100644 blob %s\tkustomization.yaml\n' "$cm" "$k1" | g remote-base mktree)
t2=$(printf '100644 blob %s\tcm.yaml\n100644 blob %s\tkustomization.yaml\n' "$cm" "$k2" | g remote-base mktree)
commit remote-base "$(printf '040000 tree %s\thttp\n040000 tree %s\tgithub\n' "$t1" "$t2" | g remote-base mktree)"

# Single-line files just under the 5 MiB blob budget (git.max_file_size): one long string, and
# one flow sequence of 2.6 million items.
new_repo long-line-string
python3 - "$NS" <<'EOF' | one_file long-line-string long.yaml
import sys
head = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"long","namespace":"%s"},"data":{"v":"' % sys.argv[1]
tail = '"}}'
sys.stdout.write(head + "x" * (5 * 1024 * 1024 - 4096 - len(head) - len(tail)) + tail)
EOF
new_repo long-line-flow
python3 - "$NS" <<'EOF' | one_file long-line-flow flow.yaml
import sys
head = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"flow","namespace":"%s"},"x":[' % sys.argv[1]
n = (5 * 1024 * 1024 - 4096 - len(head)) // 2
sys.stdout.write(head + ",".join(["1"] * n) + "]}")
EOF

new_repo resources
files=""
per=$((RESOURCES / 10))
for f in $(seq 0 9); do
	b=$(python3 - "$NS" "$f" "$per" <<'EOF' | blob resources
import sys
ns, f, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(f * per, (f + 1) * per):
    print(f"""---
apiVersion: v1
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
    level=info""")
EOF
	)
	files+=$(printf '100644 blob %s\tcm-%02d.yaml\\n' "$b" "$f")
done
commit resources "$(printf "$files" | g resources mktree)"

# --- git daemon --------------------------------------------------------------------------------

DAEMON_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$DAEMON_PORT" \
	--base-path="$WORK/repos" "$WORK/repos" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$DAEMON_PORT") 2>/dev/null && break
	sleep 0.1
done
url() { echo "git://127.0.0.1:$DAEMON_PORT/$1.git"; }

# --- check under GNU time ----------------------------------------------------------------------

ROWS=()
# measure NAME: runs check against the repository NAME; appends a row.
measure() {
	local name=$1 out="$WORK/$1.out" err="$WORK/$1.err" tm="$WORK/$1.time" code=0
	(
		ulimit -v "$LIMIT_KIB"
		exec /usr/bin/time -f '%e %M' -o "$tm" "$BINARY" check --repo "$(url "$name")" \
			--kubeconfig "$KC" --namespace "$NS" --output json
	) >"$out" 2>"$err" </dev/null || code=$?
	local wall rss outcome
	read -r wall rss < <(tail -n 1 "$tm")
	if [[ -s $out ]] && jq -e . "$out" >/dev/null 2>&1; then
		outcome=$(jq -r '(.errors[0] // empty) | "\(.source): \(.message)"' "$out" | head -n 1)
		[[ -n $outcome ]] || outcome="$(jq -r '"\(.count) records, no error"' "$out")"
	else
		# No report: the process died (exit 128+N is signal N).
		outcome="CRASHED: $(grep -v '^[[:space:]]*$' "$err" | head -n 1)"
	fi
	outcome=${outcome//$'\n'/ }
	ROWS+=("$name"$'\t'"$code"$'\t'"${outcome:0:90}"$'\t'"$wall"$'\t'"$rss")
	printf '  %-26s exit %s, %s s, %s MiB: %s\n' "$name" "$code" "$wall" "$((rss / 1024))" "${outcome:0:100}"
}

echo "check against each attack (release binary $BINARY)"
for attack in alias-bomb alias-bomb-quirk alias-bomb-kustomization alias-bomb-rendered git-bomb \
	zero-blob-1g files-100k remote-base long-line-string long-line-flow resources; do
	measure "$attack"
done
if [[ -s $WORK/listener.log ]]; then
	echo "BUG: the listener named as a remote base was reached:" && cat "$WORK/listener.log"
fi

# --- serve: a first full analysis --------------------------------------------------------------

SERVE_ROW=""
if ((SKIP_SERVE == 0)); then
	echo "serve: first full analysis of $RESOURCES ConfigMaps (SQLite)"
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$WORK/serve"
	cat >"$WORK/serve/driftguard.yaml" <<EOF
server: {address: 127.0.0.1, port: $PORT}
database: {driver: sqlite, path: $WORK/serve/bench.db}
kubernetes: {config_path: $KC, namespaces: [$NS], resources: [configmaps]}
git: {repository_url: "$(url resources)", default_branch: main, workdir: $WORK/serve/git}
drift_detection: {enable_periodic: false}
logging: {level: warn}
EOF
	started=$(date +%s.%N)
	(
		ulimit -v "$LIMIT_KIB"
		exec env -u KUBECONFIG -u MONGODB_URI -u MONGODB_HOST "$BINARY" serve --config "$WORK/serve/driftguard.yaml"
	) >"$WORK/serve/serve.log" 2>&1 </dev/null &
	SERVE_PID=$!
	total=0
	for _ in $(seq 1200); do
		kill -0 "$SERVE_PID" 2>/dev/null || break
		total=$(curl -fsS "http://127.0.0.1:$PORT/api/v1/drift-records?limit=1" 2>/dev/null | jq -r '.total // 0' || echo 0)
		((total >= RESOURCES)) && break
		sleep 0.25
	done
	done_at=$(date +%s.%N)
	if kill -0 "$SERVE_PID" 2>/dev/null; then
		hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVE_PID/status")
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVE_PID/status")
		SERVE_ROW=$(awk -v t="$total" -v a="$started" -v b="$done_at" -v h="$hwm" -v r="$rss" -v l="$SERVE_LIMIT_MIB" 'BEGIN {
			printf "serve (SQLite): %d records stored %.1f s after start; peak (VmHWM) %.1f MiB, resident after %.1f MiB: %s\n",
				t, b - a, h / 1024, r / 1024, (h < l * 1024 ? "within " l " MiB" : "OVER " l " MiB")
		}')
	else
		SERVE_ROW="serve DIED before the analysis finished; log: $(tail -n 3 "$WORK/serve/serve.log")"
	fi
	kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
	SERVE_PID=""
fi

# --- the table ---------------------------------------------------------------------------------

echo
printf '%-26s | %4s | %-90s | %7s | %7s\n' attack exit "outcome (first error, or records)" "wall s" "peak MiB"
printf '%s\n' "$(printf '%.0s-' $(seq 140))"
for row in "${ROWS[@]}"; do
	# GNU time's %M is KiB; shown in MiB.
	awk -F '\t' '{ printf "%-26s | %4s | %-90s | %7.2f | %7.1f\n", $1, $2, $3, $4, $5 / 1024 }' <<<"$row"
done
[[ -n $SERVE_ROW ]] && echo && echo "$SERVE_ROW"
echo "(peak: largest resident set of check and its children; every run under ulimit -v $((LIMIT_KIB >> 20)) GiB)"
