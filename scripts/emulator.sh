# shellcheck shell=bash
# Shared by the scripts that start and stop a throw-away storage emulator for
# the tests (scripts/minio.sh, scripts/fakegcs.sh, scripts/azurite.sh):
# sourced, not run.
#
# The sourcing script sets NAME (the prefix of its files in DIR and of its log
# lines), defines start DIR, and ends with `emulator_main "$@"`.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# shellcheck disable=SC2034 # used by the scripts that source this one
readonly CACHE=${OBJBACKER_CACHE:-$HOME/.cache/objbacker}
readonly READY_TIMEOUT=30 # seconds; the emulators start in 0.2-3 s

log() { printf '%s: %s\n' "$NAME" "$*"; }

# since prints the milliseconds elapsed from a ${EPOCHREALTIME/./} stamp.
since() { printf '%d ms' $(((${EPOCHREALTIME/./} - $1) / 1000)); }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port prints the port from the variable named $1 if set, else a free
# one, and fails if another server already holds it: that server would
# answer the readiness poll for ours.
free_port() {
	local port=${!1:-}
	port=${port:-$(pick_port port_in_use)} || return 1
	if port_in_use "$port"; then
		log "port $port on 127.0.0.1 is already in use" >&2
		return 1
	fi
	printf '%s\n' "$port"
}

# wait_ready polls url until it answers with one of the HTTP codes in the
# pattern want (a glob), the process dies, or READY_TIMEOUT passes.
wait_ready() {
	local pid=$1 url=$2 want=$3 deadline=$((SECONDS + READY_TIMEOUT)) code
	while ((SECONDS < deadline)); do
		alive "$pid" || return 1
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url") || true
		# shellcheck disable=SC2053 # want is a glob on purpose
		if [[ $code == $want ]]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# started records pid and waits for the server; on failure it shows the log
# tail and stops what it started.
started() {
	local dir=$1 pid=$2 url=$3 want=$4 begin=$5
	printf '%s\n' "$pid" >"$dir/$NAME.pid"
	if ! wait_ready "$pid" "$url" "$want"; then
		log "not ready at $url after $(since "$begin"); log tail:"
		tail -n 30 "$dir/$NAME.log" >&2
		stop "$dir"
		return 1
	fi
}

stop() {
	local dir=$1 pid
	[[ -f $dir/$NAME.pid ]] || {
		log "no pid file in $dir; nothing to stop"
		return 0
	}
	pid=$(<"$dir/$NAME.pid")
	# The command-line check keeps a stale pid file from killing a recycled
	# pid (Azurite runs as "node", so the name alone would not do).
	if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$SERVER_MATCH"; then
		kill "$pid"
		for _ in {1..100}; do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			log "pid $pid ignored SIGTERM for 10 s; killing it"
			kill -KILL "$pid"
		fi
	fi
	rm -f "$dir/$NAME.pid"
	log "pid $pid stopped"
}

emulator_main() {
	if (($# != 2)); then
		printf 'usage: %s start|stop DIR\n' "$0" >&2
		exit 2
	fi
	case $1 in
	start) start "$2" ;;
	stop) stop "$2" ;;
	*)
		printf 'usage: %s start|stop DIR\n' "$0" >&2
		exit 2
		;;
	esac
}
