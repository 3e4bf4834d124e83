#!/usr/bin/env bash
# Run DriftGuard against a real local control plane and a local Git repository:
#
#   scripts/quickstart.sh
#
# Starts (or reuses) the control plane of scripts/control-plane.sh, makes a Git repository from
# examples/manifests/ in ${DRIFTGUARD_CACHE:-~/.cache/driftguard}/quickstart/repo, creates the
# `driftguard` namespace and applies the manifests, writes a configuration from
# examples/quickstart.yaml, prints the commands to try, then builds and runs
# `driftguard serve` in the foreground (Ctrl-C stops it; the control plane keeps running until
# `scripts/control-plane.sh down`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE="${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}"
QS="$CACHE/quickstart"
REPO="$QS/repo"
CONFIG="$QS/driftguard.yaml"
PORT=8080

log() { printf '[quickstart] %s\n' "$*" >&2; }
die() {
	printf '[quickstart] ERROR: %s\n' "$*" >&2
	exit 1
}

# --- the control plane ------------------------------------------------------------------------
plane_env=$(bash scripts/control-plane.sh up) || die "step 'start the control plane' failed (see above)"
KUBECONFIG_FILE=${plane_env#export DRIFTGUARD_TEST_KUBECONFIG=}
[[ -f $KUBECONFIG_FILE ]] || die "the control plane printed no kubeconfig: $plane_env"
export KUBECONFIG="$KUBECONFIG_FILE"

# --- the Git repository (what DriftGuard treats as the desired state) -------------------------
command -v git >/dev/null 2>&1 || die "git is not installed (apt-get install git)"
mkdir -p "$REPO"
gitq() {
	git -C "$REPO" -c user.name="DriftGuard Quickstart" -c user.email=quickstart@driftguard.invalid \
		-c commit.gpgsign=false "$@"
}
[[ -d $REPO/.git ]] || gitq init --quiet --initial-branch=main
find "$REPO" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
cp -R examples/manifests/. "$REPO/"
gitq add --all
if gitq rev-parse --verify --quiet HEAD >/dev/null && gitq diff --cached --quiet; then
	log "Git repository $REPO is up to date ($(gitq rev-parse --short HEAD))"
else
	gitq commit --quiet -m "Kubernetes manifests from examples/manifests"
	log "committed examples/manifests to $REPO ($(gitq rev-parse --short HEAD))"
fi

# --- the cluster: namespace and the manifests, as a GitOps tool would have applied them ------
kubectl create namespace driftguard --dry-run=client -o yaml | kubectl apply -f - >/dev/null ||
	die "step 'create namespace driftguard' failed"
kubectl apply -f "$REPO/" >&2 || die "step 'kubectl apply' of $REPO failed"

# --- configuration ----------------------------------------------------------------------------
sed_escape() { printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'; }
sed -e "s|@KUBECONFIG@|$(sed_escape "$KUBECONFIG_FILE")|" \
	-e "s|@DATABASE_PATH@|$(sed_escape "$QS/driftguard.db")|" \
	-e "s|@REPOSITORY_URL@|$(sed_escape "file://$REPO")|" \
	examples/quickstart.yaml >"$CONFIG"
log "configuration written to $CONFIG"

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	die "port $PORT is already in use on 127.0.0.1 (a DriftGuard from an earlier run?); stop it first"
fi

cat <<EOF

================================================================================
DriftGuard is starting on http://127.0.0.1:$PORT (the first build takes a few minutes).
In another terminal, try:

  export KUBECONFIG=$KUBECONFIG_FILE

  # 1. Is it running?
  curl http://127.0.0.1:$PORT/health
  curl http://127.0.0.1:$PORT/ready

  # 2. Initial state: no drift
  curl -X POST http://127.0.0.1:$PORT/api/v1/analyze
  sleep 5; curl http://127.0.0.1:$PORT/api/v1/drift-records

  # 3. Make drift in the cluster
  kubectl scale deployment nginx-app -n driftguard --replicas=3
  kubectl set image deployment/nginx-app nginx=nginx:1.24 -n driftguard
  kubectl set env deployment/nginx-app NGINX_ENV=staging -n driftguard
  kubectl patch deployment nginx-app -n driftguard -p '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","resources":{"requests":{"memory":"128Mi"}}}]}}}}'
  curl -X POST http://127.0.0.1:$PORT/api/v1/analyze
  sleep 5; curl http://127.0.0.1:$PORT/api/v1/drift-records/active
  curl http://127.0.0.1:$PORT/api/v1/drift-records/Deployment:driftguard:nginx-app

  # 4. Put it back (re-apply Git) and watch the drift resolve
  kubectl apply -f $REPO/
  curl -X POST http://127.0.0.1:$PORT/api/v1/analyze
  sleep 5; curl http://127.0.0.1:$PORT/api/v1/drift-records/resolved
  curl http://127.0.0.1:$PORT/api/v1/statistics

  # 5. Filters
  curl "http://127.0.0.1:$PORT/api/v1/drift-records?namespace=driftguard"
  curl "http://127.0.0.1:$PORT/api/v1/drift-records?drift_detected=true"

  # Or change Git instead: edit a file in $REPO and commit it.
  # When done: Ctrl-C here, then scripts/control-plane.sh down
================================================================================

EOF

exec cargo run --release -p driftguard -- serve --config "$CONFIG"
