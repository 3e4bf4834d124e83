#!/usr/bin/env bash
# A local MongoDB-wire-compatible server for tests: PyPI's SecantusDB in a cached virtualenv.
#
#   scripts/mongo-peer.sh up     [--state-dir DIR]   start it (or reuse a running one)
#   scripts/mongo-peer.sh down   [--state-dir DIR] [--purge]
#   scripts/mongo-peer.sh env    [--state-dir DIR]   print the export line
#   scripts/mongo-peer.sh status [--state-dir DIR]   exit 0 when it answers
#
# MongoDB itself is the supported production server; no registry we can reach ships `mongod`, so
# tests talk to this stand-in (used as a separate process only, never linked). `up` prints
# `export DRIFTGUARD_TEST_MONGODB_URI=mongodb://127.0.0.1:PORT` on stdout. Data and port live in
# the state dir: `down` then `up` on the same dir brings the same data back on the same port
# (what outage tests need).
set -euo pipefail

CACHE="${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}"
VENV="$CACHE/venv"
STATE="${DRIFTGUARD_MONGO_STATE:-$CACHE/mongo}"
READY_TIMEOUT="${DRIFTGUARD_MONGO_READY_TIMEOUT:-60}"
SECANTUS_SPEC="${DRIFTGUARD_SECANTUS_SPEC:-SecantusDB==0.7.0b3}"
PURGE=0

log() { printf '[mongo-peer] %s\n' "$*" >&2; }
die() {
	printf '[mongo-peer] ERROR: %s\n' "$1" >&2
	shift
	for line in "$@"; do printf '[mongo-peer]        %s\n' "$line" >&2; done
	exit 1
}
usage() {
	sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

ensure_venv() {
	[[ -x $VENV/bin/secantusd-py ]] && return 0
	mkdir -p "$CACHE"
	exec 8>"$CACHE/venv.lock"
	flock 8
	[[ -x $VENV/bin/secantusd-py ]] && return 0
	local py
	py=$(command -v python3 || true)
	if [[ -z $py ]] || ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
		[[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 ||
			die "step 'virtualenv': python3 with venv is missing; install python3-venv"
		log "installing python3-venv (apt)"
		{ DEBIAN_FRONTEND=noninteractive apt-get update &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
				python3 python3-venv; } >"$CACHE/apt-python.log" 2>&1 ||
			die "step 'install python3-venv' failed" "read $CACHE/apt-python.log"
		py=$(command -v python3)
	fi
	log "creating $VENV with $SECANTUS_SPEC (log: $CACHE/venv.log)"
	rm -rf "$VENV"
	{ "$py" -m venv "$VENV" &&
		"$VENV/bin/pip" install --quiet "$SECANTUS_SPEC"; } >"$CACHE/venv.log" 2>&1 ||
		die "step 'pip install $SECANTUS_SPEC' failed" "read $CACHE/venv.log"
	[[ -x $VENV/bin/secantusd-py ]] ||
		die "step 'virtualenv': $SECANTUS_SPEC installed no secantusd-py" "read $CACHE/venv.log"
	flock -u 8
}

pid_alive() {
	local file=$STATE/secantusd.pid pid arg0=""
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	IFS= read -r -d '' arg0 <"/proc/$pid/cmdline" 2>/dev/null || [[ -n $arg0 ]] || return 1
	# The console script runs as `…/venv/bin/python3 …/venv/bin/secantusd-py …`.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "secantusd-py"
}

# Exists and is not a zombie (right after the fork its command line is still bash's).
pid_exists() {
	local pid
	pid=$(<"$1") || return 1
	[[ -r /proc/$pid/stat ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}

# shellcheck source=scripts/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

uri() { echo "mongodb://127.0.0.1:$(<"$STATE/port")"; }
export_line() { echo "export DRIFTGUARD_TEST_MONGODB_URI=$(uri)"; }

# A real round trip (`ping`), not only an open socket.
answers() {
	[[ -f $STATE/port && -x $VENV/bin/python ]] || return 1
	"$VENV/bin/python" - "$(uri)" >/dev/null 2>&1 <<'EOF'
import sys
import pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000, connectTimeoutMS=2000)
client.admin.command("ping")
EOF
}

cmd_up() {
	mkdir -p "$STATE"
	STATE=$(cd "$STATE" && pwd)
	ensure_venv
	exec 9>"$STATE/lock"
	flock 9
	if pid_alive && answers; then
		log "reusing the running peer in $STATE"
		export_line
		return 0
	fi
	if ! pid_alive; then
		local port=""
		[[ -f $STATE/port ]] && port=$(<"$STATE/port")
		if [[ -z $port ]] || port_in_use "$port"; then
			[[ -n $port ]] && log "port $port is taken by another process; picking a new one"
			port=$(free_port)
		fi
		echo "$port" >"$STATE/port"
		mkdir -p "$STATE/data"
		# An explicit (empty) config file turns off the search of ./secantusd.toml and ~/.secantus.
		: >"$STATE/secantusd.toml"
		log "starting SecantusDB on 127.0.0.1:$port (log: $STATE/secantusd.log)"
		setsid "$VENV/bin/python3" "$VENV/bin/secantusd-py" \
			--config "$STATE/secantusd.toml" \
			--host 127.0.0.1 --port "$port" \
			--storage-path "$STATE/data" \
			--log-level WARNING \
			</dev/null >>"$STATE/secantusd.log" 2>&1 8>&- 9>&- &
		echo $! >"$STATE/secantusd.pid"
	fi
	local t0=$SECONDS deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		pid_exists "$STATE/secantusd.pid" || die "step 'start SecantusDB': the process exited" \
			"read $STATE/secantusd.log (last lines below)" \
			"$(tail -n 5 "$STATE/secantusd.log" | tr '\n' '|')"
		if answers; then
			log "ready in $((SECONDS - t0)) s (state: $STATE)"
			export_line
			return 0
		fi
		sleep 0.5
	done
	die "step 'wait for ping': SecantusDB did not answer within ${READY_TIMEOUT} s" \
		"read $STATE/secantusd.log"
}

cmd_down() {
	[[ -d $STATE ]] || return 0
	if pid_alive; then
		local pid i
		pid=$(<"$STATE/secantusd.pid")
		log "stopping SecantusDB (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			pid_alive || break
			sleep 0.1
		done
		if pid_alive; then
			log "SecantusDB did not stop in 10 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "$STATE/secantusd.pid"
	if [[ $PURGE == 1 ]]; then
		rm -rf "$STATE"
		log "removed $STATE"
	fi
}

cmd_env() {
	[[ -f $STATE/port ]] || die "no peer in $STATE: run scripts/mongo-peer.sh up"
	export_line
}

cmd_status() {
	if pid_alive && answers; then
		echo "running: $(uri) (pid $(<"$STATE/secantusd.pid")), state $STATE"
		export_line
		return 0
	fi
	echo "not running; state $STATE"
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
	*) usage ;;
	esac
}

main "$@"
