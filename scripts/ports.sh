# shellcheck shell=bash
# Loopback ports for the servers the test scripts start (sourced by control-plane.sh and
# mongo-peer.sh; the caller defines `die`).
#
# A port is picked outside the kernel's ephemeral range (net.ipv4.ip_local_port_range,
# 32768-60999 by default). A port found free inside it can be taken, before the server binds it,
# by any outgoing connection's source port or any listener bound to port 0 — and the tests make
# thousands of both — so etcd once failed with "address already in use" on a port it had just
# been given.

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first and last port to pick from: below the ephemeral range, else above it.
port_range() {
	local low=32768 high=60999
	read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	if ((low - 10000 >= 1000)); then
		echo "10000 $((low - 1))"
	elif ((65535 - high >= 1000)); then
		echo "$((high + 1)) 65535"
	else
		echo "20000 59999"
	fi
}

free_port() {
	local first last p i
	read -r first last < <(port_range)
	for ((i = 0; i < 200; i++)); do
		p=$((first + (RANDOM * 32768 + RANDOM) % (last - first + 1)))
		port_in_use "$p" || {
			echo "$p"
			return 0
		}
	done
	die "step 'pick a port': no free loopback port found in $first-$last"
}
