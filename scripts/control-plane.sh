#!/usr/bin/env bash
# A real, local Kubernetes control plane (etcd + kube-apiserver) for tests and the quick start.
#
#   scripts/control-plane.sh up     [--state-dir DIR]   start it (or reuse a healthy one)
#   scripts/control-plane.sh down   [--state-dir DIR] [--purge]
#   scripts/control-plane.sh env    [--state-dir DIR]   print the export line
#   scripts/control-plane.sh status [--state-dir DIR]   exit 0 when healthy
#   scripts/control-plane.sh stop-apiserver [--state-dir DIR]   stop only the API server (etcd keeps
#                                                       running; `up` starts it again)
#
# There is no kind/minikube/Docker on our machines and no registry ships a kube-apiserver binary,
# so the first run builds one from Debian's `kubernetes` source package (about 5 minutes on 2
# cores) and caches it in ${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}/bin. Every later `up`
# only starts processes (~15 s). The plane has no controller-manager and no scheduler: objects
# are stored and defaulted, nothing reconciles them. A plane whose etcd is started (not reused)
# starts empty; `stop-apiserver` keeps etcd and its objects.
#
# `up` prints `export DRIFTGUARD_TEST_KUBECONFIG=...` on stdout (progress goes to stderr), so
# `eval "$(scripts/control-plane.sh up)"` works. A private plane for tests that kill the API
# server: `up --state-dir "$(mktemp -d)"`.
set -euo pipefail

CACHE="${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}"
BIN_DIR="$CACHE/bin"
APISERVER_BIN="$BIN_DIR/kube-apiserver"
SRC_DIR="$CACHE/src"
BUILD_LOG="$CACHE/build-apiserver.log"
STATE="${DRIFTGUARD_STATE:-$CACHE/plane}"
READY_TIMEOUT="${DRIFTGUARD_PLANE_READY_TIMEOUT:-90}"
PURGE=0

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() {
	printf '[control-plane] ERROR: %s\n' "$1" >&2
	shift
	for line in "$@"; do printf '[control-plane]        %s\n' "$line" >&2; done
	exit 1
}

usage() {
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# --- dependencies ---------------------------------------------------------------------------

# Packages are only installed when something is missing; a machine that has everything never
# touches apt.
ensure_packages() {
	local need_build=$1 pkgs=()
	command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
	command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
	command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
	command -v flock >/dev/null 2>&1 || pkgs+=(util-linux)
	if [[ $need_build == 1 ]]; then
		command -v go >/dev/null 2>&1 || pkgs+=(golang-go)
		command -v rsync >/dev/null 2>&1 || pkgs+=(rsync)
		command -v make >/dev/null 2>&1 || pkgs+=(make)
		command -v dpkg-source >/dev/null 2>&1 || pkgs+=(dpkg-dev)
		[[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] ||
			pkgs+=(golang-github-modern-go-reflect2-dev)
	fi
	((${#pkgs[@]} == 0)) && return 0
	command -v apt-get >/dev/null 2>&1 ||
		die "step 'install packages': missing ${pkgs[*]} and there is no apt-get on this machine"
	[[ $(id -u) == 0 ]] ||
		die "step 'install packages': missing ${pkgs[*]}; run as root or install them with apt-get"
	log "installing ${pkgs[*]} (apt)"
	local apt_log="$CACHE/apt.log"
	mkdir -p "$CACHE"
	{ DEBIAN_FRONTEND=noninteractive apt-get update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"; } \
		>"$apt_log" 2>&1 ||
		die "step 'install packages' failed (${pkgs[*]})" "read $apt_log"
}

# Debian bookworm keeps the sources in deb822 form; the deb-src entry reuses the archive and
# keyring of the existing `deb` entry.
ensure_deb_src() {
	if grep -Eqs '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/*; then
		return 0
	fi
	local f=/etc/apt/sources.list.d/debian.sources uri keyring suite
	uri=$(awk '/^URIs:/ {print $2; exit}' "$f" 2>/dev/null || true)
	keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$f" 2>/dev/null || true)
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	cat >/etc/apt/sources.list.d/driftguard-src.sources <<EOF
Types: deb-src
URIs: ${uri:-http://deb.debian.org/debian}
Suites: $suite
Components: main
Signed-By: ${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
EOF
	DEBIAN_FRONTEND=noninteractive apt-get update
}

# The checked recipe (see field notes): Debian's kubernetes 1.20 source, reflect2 1.0.2 in place
# of the vendored 1.0.1 (crashes under Go >= 1.18), a GOPATH symlink, `make WHAT=...`.
build_apiserver() {
	set -x
	mkdir -p "$SRC_DIR" "$BIN_DIR"
	cd "$SRC_DIR"
	tree=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
	if [[ -z $tree ]]; then
		if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
			ensure_deb_src
			apt-get source --download-only kubernetes
		fi
		# Unpacked aside and moved in whole: an interrupted run leaves no half tree behind.
		rm -rf .unpack
		mkdir .unpack
		tar -C .unpack -xzf kubernetes_*.orig.tar.gz
		mv .unpack/kubernetes-* .
		rmdir .unpack
		tree=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
	fi
	cd "$tree"
	rm -rf vendor/github.com/modern-go/reflect2
	cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
	rm -f vendor/github.com/modern-go/reflect2/go.mod
	mkdir -p .go/src/k8s.io
	ln -sfn "$PWD" .go/src/k8s.io/kubernetes
	# A failed attempt can leave a zero-byte generator behind.
	rm -rf _output
	GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT=cmd/kube-apiserver
	cp _output/bin/kube-apiserver "$APISERVER_BIN.tmp"
	mv "$APISERVER_BIN.tmp" "$APISERVER_BIN"
}

ensure_apiserver() {
	if [[ -x $APISERVER_BIN && -s $APISERVER_BIN ]]; then
		ensure_packages 0
		return 0
	fi
	ensure_packages 1
	mkdir -p "$CACHE"
	# One build at a time, even when several planes start together.
	exec 8>"$CACHE/build.lock"
	flock 8
	if [[ ! -x $APISERVER_BIN ]]; then
		log "building kube-apiserver once from Debian's kubernetes source (~5 min); log: $BUILD_LOG"
		local t0=$SECONDS
		{ echo "build started $(date -u +%FT%TZ)"; } >"$BUILD_LOG"
		# A process of its own, so that `set -e` stops the build at the first failing step.
		bash "${BASH_SOURCE[0]}" __build >>"$BUILD_LOG" 2>&1 ||
			die "step 'build kube-apiserver' failed" "read $BUILD_LOG (tail below)" \
				"$(tail -n 20 "$BUILD_LOG" | tr '\n' '|')"
		echo "build finished $(date -u +%FT%TZ)" >>"$BUILD_LOG"
		log "kube-apiserver built in $((SECONDS - t0)) s: $APISERVER_BIN"
	fi
	flock -u 8
}

# --- processes --------------------------------------------------------------------------------

# Only a PID we recorded, still running the binary we started, counts as ours.
pid_alive() {
	local file=$1 want=$2 pid
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	local arg0=""
	IFS= read -r -d '' arg0 <"/proc/$pid/cmdline" 2>/dev/null || [[ -n $arg0 ]] || return 1
	[[ ${arg0##*/} == "$want" ]]
}

# Exists and is not a zombie (right after the fork its command line is still bash's).
pid_exists() {
	local pid
	pid=$(<"$1") || return 1
	[[ -r /proc/$pid/stat ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}

stop_pid() {
	local file=$1 want=$2 name=$3 pid i
	if pid_alive "$file" "$want"; then
		pid=$(<"$file")
		log "stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			pid_alive "$file" "$want" || break
			sleep 0.1
		done
		if pid_alive "$file" "$want"; then
			log "$name did not stop in 10 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "$file"
}

# shellcheck source=scripts/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

load_ports() {
	ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_PORT=""
	# shellcheck disable=SC1091
	[[ -f $STATE/ports.env ]] && . "$STATE/ports.env"
	return 0
}

save_ports() {
	printf 'ETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' \
		"$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" >"$STATE/ports.env"
}

kubeconfig_path() { echo "$STATE/kubeconfig"; }

export_line() { echo "export DRIFTGUARD_TEST_KUBECONFIG=$(kubeconfig_path)"; }

apiserver_ready() {
	[[ -f $STATE/kubeconfig ]] || return 1
	[[ $(kubectl --kubeconfig "$STATE/kubeconfig" --request-timeout=5s get --raw /readyz 2>/dev/null) == ok ]]
}

healthy() {
	pid_alive "$STATE/etcd.pid" etcd && pid_alive "$STATE/kube-apiserver.pid" kube-apiserver &&
		apiserver_ready
}

write_credentials() {
	mkdir -p "$STATE/pki"
	if [[ ! -s $STATE/token ]]; then
		# 32 hex characters; the token file is only readable by us.
		openssl rand -hex 16 >"$STATE/token"
		chmod 600 "$STATE/token"
	fi
	printf '%s,admin,admin,system:masters\n' "$(<"$STATE/token")" >"$STATE/tokens.csv"
	chmod 600 "$STATE/tokens.csv"
	if [[ ! -s $STATE/pki/sa.key ]]; then
		openssl genrsa -out "$STATE/pki/sa.key" 2048 >/dev/null 2>&1 ||
			die "step 'service-account keys': openssl genrsa failed"
		openssl rsa -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" >/dev/null 2>&1 ||
			die "step 'service-account keys': openssl rsa -pubout failed"
	fi
	write_serving_certificate
}

# The API server serves a certificate from a CA of the plane's own, and the kubeconfig carries
# that CA, as a real cluster's does: clients verify the server instead of skipping verification.
write_serving_certificate() {
	local pki=$STATE/pki
	if [[ -s $pki/ca.crt && -s $pki/apiserver.crt && -s $pki/apiserver.key ]] &&
		openssl x509 -in "$pki/apiserver.crt" -noout -checkend 86400 >/dev/null 2>&1; then
		return 0
	fi
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=driftguard-test-plane-ca" \
		-keyout "$pki/ca.key" -out "$pki/ca.crt" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 ||
		die "step 'serving certificate': openssl could not create the plane's CA"
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
		-keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" >/dev/null 2>&1 ||
		die "step 'serving certificate': openssl could not create the API server's key"
	printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth" >"$pki/apiserver.ext"
	openssl x509 -req -days 3650 -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
		-CAcreateserial -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" >/dev/null 2>&1 ||
		die "step 'serving certificate': openssl could not sign the API server's certificate"
	chmod 600 "$pki/ca.key" "$pki/apiserver.key"
}

write_kubeconfig() {
	local tmp="$STATE/kubeconfig.tmp"
	cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: driftguard-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$STATE/pki/ca.crt")
users:
- name: driftguard-admin
  user:
    token: $(<"$STATE/token")
contexts:
- name: driftguard-local
  context:
    cluster: driftguard-local
    user: driftguard-admin
current-context: driftguard-local
preferences: {}
EOF
	chmod 600 "$tmp"
	mv "$tmp" "$STATE/kubeconfig"
}

start_etcd() {
	if [[ -z $ETCD_CLIENT_PORT || -z $ETCD_PEER_PORT ]] || port_in_use "$ETCD_CLIENT_PORT" ||
		port_in_use "$ETCD_PEER_PORT"; then
		ETCD_CLIENT_PORT=$(free_port)
		ETCD_PEER_PORT=$(free_port)
		while [[ $ETCD_PEER_PORT == "$ETCD_CLIENT_PORT" ]]; do ETCD_PEER_PORT=$(free_port); done
	fi
	# A started etcd always begins empty. Nothing here deletes what tests create (without a
	# controller-manager a deleted namespace stays Terminating with its objects), so a store kept
	# across runs piles up namespaces and Services until the service IP range is full.
	rm -rf "$STATE/etcd"
	save_ports
	log "starting etcd on 127.0.0.1:$ETCD_CLIENT_PORT (log: $STATE/etcd.log)"
	setsid etcd \
		--name driftguard \
		--data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "driftguard=http://127.0.0.1:$ETCD_PEER_PORT" \
		</dev/null >>"$STATE/etcd.log" 2>&1 8>&- 9>&- &
	echo $! >"$STATE/etcd.pid"
	local i
	for ((i = 0; i < 100; i++)); do
		pid_exists "$STATE/etcd.pid" ||
			die "step 'start etcd': etcd exited" "read $STATE/etcd.log" \
				"$(tail -n 5 "$STATE/etcd.log" | tr '\n' '|')"
		port_in_use "$ETCD_CLIENT_PORT" && return 0
		sleep 0.2
	done
	die "step 'start etcd': not listening on 127.0.0.1:$ETCD_CLIENT_PORT after 20 s" \
		"read $STATE/etcd.log"
}

start_apiserver() {
	if [[ -z $APISERVER_PORT ]] || port_in_use "$APISERVER_PORT"; then
		APISERVER_PORT=$(free_port)
		while [[ $APISERVER_PORT == "$ETCD_CLIENT_PORT" || $APISERVER_PORT == "$ETCD_PEER_PORT" ]]; do
			APISERVER_PORT=$(free_port)
		done
	fi
	save_ports
	write_kubeconfig
	log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT (log: $STATE/kube-apiserver.log)"
	setsid "$APISERVER_BIN" \
		--etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--bind-address 127.0.0.1 \
		--secure-port "$APISERVER_PORT" \
		--insecure-port 0 \
		--tls-cert-file "$STATE/pki/apiserver.crt" \
		--tls-private-key-file "$STATE/pki/apiserver.key" \
		--token-auth-file "$STATE/tokens.csv" \
		--authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$STATE/pki/sa.pub" \
		--service-account-signing-key-file "$STATE/pki/sa.key" \
		--service-cluster-ip-range 10.0.0.0/16 \
		--disable-admission-plugins ServiceAccount \
		--allow-privileged=true \
		</dev/null >>"$STATE/kube-apiserver.log" 2>&1 8>&- 9>&- &
	echo $! >"$STATE/kube-apiserver.pid"
}

wait_ready() {
	local deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		pid_exists "$STATE/kube-apiserver.pid" ||
			die "step 'start kube-apiserver': the process exited" \
				"read $STATE/kube-apiserver.log (last lines below)" \
				"$(tail -n 5 "$STATE/kube-apiserver.log" | tr '\n' '|')"
		apiserver_ready && return 0
		sleep 1
	done
	die "step 'wait for /readyz': kube-apiserver not ready after ${READY_TIMEOUT} s" \
		"read $STATE/kube-apiserver.log and $STATE/etcd.log"
}

# --- commands ---------------------------------------------------------------------------------

cmd_up() {
	mkdir -p "$STATE"
	STATE=$(cd "$STATE" && pwd)
	if ! command -v flock >/dev/null 2>&1; then ensure_packages 0; fi
	# Two `up`s at once on one state dir: the second waits and then reuses the first's plane.
	exec 9>"$STATE/lock"
	flock 9
	if healthy; then
		log "reusing the running control plane in $STATE"
		export_line
		return 0
	fi
	ensure_apiserver
	local t0=$SECONDS
	load_ports
	write_credentials
	# (`if`, not `||`: set -e must stay in force inside the start functions.)
	if ! pid_alive "$STATE/etcd.pid" etcd; then start_etcd; fi
	if pid_alive "$STATE/kube-apiserver.pid" kube-apiserver && ! apiserver_ready; then
		# Running but not answering: give it the usual time before replacing it.
		wait_ready
	fi
	if ! pid_alive "$STATE/kube-apiserver.pid" kube-apiserver; then start_apiserver; fi
	wait_ready
	log "control plane ready in $((SECONDS - t0)) s (state: $STATE)"
	export_line
}

cmd_down() {
	[[ -d $STATE ]] || return 0
	stop_pid "$STATE/kube-apiserver.pid" kube-apiserver kube-apiserver
	stop_pid "$STATE/etcd.pid" etcd etcd
	if [[ $PURGE == 1 ]]; then
		rm -rf "$STATE"
		log "removed $STATE"
	fi
}

cmd_stop_apiserver() {
	[[ -d $STATE ]] || return 0
	stop_pid "$STATE/kube-apiserver.pid" kube-apiserver kube-apiserver
}

cmd_env() {
	[[ -f $STATE/kubeconfig ]] ||
		die "no control plane in $STATE: run scripts/control-plane.sh up"
	STATE=$(cd "$STATE" && pwd)
	export_line
}

cmd_status() {
	load_ports
	if healthy; then
		echo "running: https://127.0.0.1:$APISERVER_PORT (etcd 127.0.0.1:$ETCD_CLIENT_PORT), state $STATE"
		export_line
		return 0
	fi
	local e=stopped a=stopped
	pid_alive "$STATE/etcd.pid" etcd && e="running (pid $(<"$STATE/etcd.pid"))"
	pid_alive "$STATE/kube-apiserver.pid" kube-apiserver &&
		a="running (pid $(<"$STATE/kube-apiserver.pid")) but not ready"
	echo "not healthy: etcd $e, kube-apiserver $a; state $STATE"
	return 1
}

main() {
	(($# >= 1)) || usage
	local cmd=$1
	shift
	while (($#)); do
		case $1 in
		--state-dir)
			(($# >= 2)) || usage
			STATE=$2
			shift 2
			;;
		--state-dir=*)
			STATE=${1#--state-dir=}
			shift
			;;
		--purge)
			PURGE=1
			shift
			;;
		*) usage ;;
		esac
	done
	case $cmd in
	up) cmd_up ;;
	down) cmd_down ;;
	env) cmd_env ;;
	status) cmd_status ;;
	stop-apiserver) cmd_stop_apiserver ;;
	__build) build_apiserver ;;
	*) usage ;;
	esac
}

main "$@"
