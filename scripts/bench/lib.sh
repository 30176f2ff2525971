# shellcheck shell=bash
# Process, port and measurement helpers for scripts/bench.sh, which sources
# this file and sets BENCH, RECORDS, MAX_OTHER, MAX_ATTEMPTS, QUIET_WAIT,
# REP and TMP.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

log() { printf 'bench: %s\n' "$*" >&2; }

die() {
	log "$*"
	exit 1
}

# Everything the bench starts, by name, so every exit path stops it by PID.
declare -A PIDS=()
declare -A LOGS=()
# The size of each log when its process started: a name restarted in the
# same repeat appends to the same log.
declare -A LOG_START=()
# s3backer mount points still mounted.
MOUNTS=()

# listening PORT asks the kernel rather than connecting: a probe connection
# would make the servers log a failed handshake.
listening() { [[ -n $(ss -Hltn "sport = :$1") ]]; }

# start_proc NAME CMD...: starts CMD in the background with its output in
# TMP/logs, and records its PID under NAME.
start_proc() {
	local name=$1
	shift
	[[ -z ${PIDS[$name]:-} ]] || die "$name is already running"
	LOGS[$name]=$TMP/logs/$name.$REP.log
	LOG_START[$name]=$(stat -c %s "${LOGS[$name]}" 2>/dev/null || echo 0)
	"$@" >>"${LOGS[$name]}" 2>&1 </dev/null &
	PIDS[$name]=$!
}

# wait_port NAME PORT [LINE] waits until NAME listens on PORT and, given
# LINE, until its log since it started has a line containing LINE:
# objbacker serve listens before its exports are open, and logs
# "msg":"serving" (with --log-format json) once they are.
wait_port() {
	local name=$1 port=$2 line=${3:-} deadline=$((SECONDS + 60))
	until listening "$port" && { [[ -z $line ]] || started_line "$name" "$line"; }; do
		if ! alive "${PIDS[$name]}"; then
			log "$name exited while starting; log tail:"
			tail -n 20 "${LOGS[$name]}" >&2
			exit 1
		fi
		((SECONDS < deadline)) || die "$name is not serving on port $port after 60 s"
		sleep 0.05
	done
}

# started_line NAME LINE: NAME's log since it started contains LINE.
started_line() {
	tail -c +$((LOG_START[$1] + 1)) "${LOGS[$1]}" 2>/dev/null | grep -qF -- "$2"
}

# kill_proc NAME kills it at once (SIGKILL) and reaps it: for a server
# whose store is stalled on purpose, which could not flush.
kill_proc() {
	local pid=${PIDS[$1]:-}
	[[ -n $pid ]] || return 0
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "PIDS[$1]"
}

# stop_proc NAME stops it with SIGTERM (SIGKILL after 60 s) and returns its
# exit status; objbacker flushes on SIGTERM, so a failure here matters.
stop_proc() {
	local name=$1 pid=${PIDS[$1]:-} status=0
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in {1..600}; do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		log "$name (pid $pid) ignored SIGTERM for 60 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" || status=$?
	unset "PIDS[$name]"
	return "$status"
}

# stop_checked NAME stops a server that must exit cleanly.
stop_checked() {
	local status=0
	stop_proc "$1" || status=$?
	if ((status != 0)); then
		log "$1 exited with status $status; log tail:"
		tail -n 20 "${LOGS[$1]}" >&2
		exit 1
	fi
}

# reaped NAME waits for a server that stopped by itself (an unmounted
# s3backer) and checks its exit status.
reaped() {
	local name=$1 pid=${PIDS[$1]} status=0
	wait "$pid" || status=$?
	unset "PIDS[$name]"
	if ((status != 0)); then
		log "$name exited with status $status; log tail:"
		tail -n 20 "${LOGS[$name]}" >&2
		exit 1
	fi
}

unmount_all() {
	local mnt
	for mnt in "${MOUNTS[@]}"; do
		if mountpoint -q "$mnt"; then
			umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
		fi
	done
	MOUNTS=()
}

stop_all() {
	unmount_all
	local name
	for name in "${!PIDS[@]}"; do
		stop_proc "$name" || true
	done
}

# measure SECTION ROW SUBJECT [bench run flags] -- CMD... runs one phase
# and appends its record. A phase that other processes disturbed sets
# DISTURBED, for attempts to repeat it; any other failure stops the bench.
measure() {
	local section=$1 row=$2 subject=$3 rc=0
	shift 3
	"$BENCH" run --records "$RECORDS" --section "$section" --row "$row" --subject "$subject" \
		--rep "$REP" --attempt "$ATTEMPT" --max-other "$MAX_OTHER" --quiet-wait "$QUIET_WAIT" "$@" || rc=$?
	case $rc in
	0) ;;
	3) DISTURBED=1 ;;
	*)
		log "$section / $row / $subject failed (status $rc)"
		return "$rc"
		;;
	esac
}

# attempts STEP ARGS... runs a step (setup plus one measure) again while
# other processes disturb it, up to MAX_ATTEMPTS times; the report keeps
# the last attempt and stars it if it was still disturbed.
attempts() {
	for ((ATTEMPT = 1; ; ATTEMPT++)); do
		DISTURBED=0
		"$@"
		((DISTURBED)) || return 0
		if ((ATTEMPT >= MAX_ATTEMPTS)); then
			log "still disturbed after $MAX_ATTEMPTS attempts; the figure keeps a star"
			return 0
		fi
		log "other processes took CPU; repeating the phase"
	done
}
