# shellcheck shell=bash
# Helpers shared by scripts/deps.sh, scripts/vm/*.sh, scripts/emulator.sh and
# scripts/bench/lib.sh. Set LOG_PREFIX before sourcing it, or define log
# after it.

log() { printf '%s: %s\n' "${LOG_PREFIX:-objbacker}" "$*"; }

# timed runs a command and logs how long it took.
timed() {
	local what=$1 start=$SECONDS
	shift
	log "$what ..."
	if ! "$@"; then
		log "$what: FAILED after $((SECONDS - start)) s"
		return 1
	fi
	log "$what: done in $((SECONDS - start)) s"
}

# alive reports whether pid exists; a zombie left for a parent that never
# reaps it counts as gone.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# random_port prints a random TCP port below the kernel's ephemeral range,
# for a server to listen on. Ports in that range are also the local ends of
# outgoing connections (to MinIO, between test clients and servers); such a
# port can look free to a listen probe and still refuse a bind, which
# stopped a bench run. A system whose range starts below 11024 leaves too
# few ports under it; there the ports come from 10000-32767.
random_port() {
	local low
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
	((low > 11024)) || low=32768
	printf '%s\n' $((10000 + RANDOM % (low - 10000)))
}

# pick_port PROBE prints a random_port that PROBE PORT, which succeeds for
# a port in use, finds free; it fails after 100 tries.
pick_port() {
	local port
	for _ in {1..100}; do
		port=$(random_port)
		if ! "$1" "$port"; then
			printf '%s\n' "$port"
			return
		fi
	done
	log "no free port found" >&2
	return 1
}

as_root() {
	if ((EUID == 0)); then
		"$@"
	else
		sudo "$@"
	fi
}
