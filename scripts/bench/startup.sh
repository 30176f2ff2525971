# shellcheck shell=bash
# Section 7 of scripts/bench.sh (issue #16), which sources this file after
# lib.sh and sections.sh and sets STARTUP_SIZES, STARTUP_REPEAT, OBJBACKER,
# BENCH, ENDPOINT, MINIO_PID and the measurement globals.
#
# One bucket grows from 10^3 to 10^6 block objects (bench fill-blocks); at
# each size objbacker serve starts on it behind 50 ms of store latency
# (s3://...&latency=50ms: every request waits 50 ms, a listing once per page
# of 1000 keys) and bench startup times its first served byte and its
# complete listing, against the bare client listing the same bucket one
# page after another with the same 50 ms before each page (bench
# list-serial).

readonly STARTUP_BUCKET=startup STARTUP_LATENCY=50ms
# A device of 2^20 blocks of 4 KiB (4 GiB), the smallest block size serve
# accepts, so that a million objects fill quickly. A listing sees names
# only: the keys are those of a 1 TiB device of 1 MiB blocks.
readonly STARTUP_BLOCKS=$((1 << 20)) STARTUP_BLOCK_SIZE=4096

# startup_create records the device (objbacker-device) in the empty bucket:
# serve creates it on its first start, which the measured starts must not
# include.
startup_create() {
	serve_objbacker startup-create 64 32 --size $((STARTUP_BLOCKS * STARTUP_BLOCK_SIZE / 1048576))M \
		--block-size "$STARTUP_BLOCK_SIZE" -- "d=$(s3url "$STARTUP_BUCKET")"
	stop_checked startup-create
}

# startup_run CMD ARGS...: one start-up phase (bench CMD, then its flags and
# ARGS); status 3 is a phase that
# other processes disturbed, which attempts repeats.
startup_run() {
	local rc=0 cmd=$1
	shift
	"$BENCH" "$cmd" --records "$RECORDS" --rep "$REP" --attempt "$ATTEMPT" --also "$MINIO_PID" \
		--max-other "$MAX_OTHER" --quiet-wait "$QUIET_WAIT" "$@" || rc=$?
	case $rc in
	0) ;;
	3)
		# shellcheck disable=SC2034 # read by attempts (lib.sh)
		DISTURBED=1
		;;
	*)
		log "startup / $cmd failed (status $rc)"
		return "$rc"
		;;
	esac
}

# startup_objbacker N: serve with the defaults (--parallel, --cache-size),
# timed from its start by bench startup, which then stops it.
startup_objbacker() {
	local port
	port=$(pick_port listening)
	startup_run startup --count "$1" --device-blocks "$STARTUP_BLOCKS" --block-size "$STARTUP_BLOCK_SIZE" \
		--addr "127.0.0.1:$port" --export d --log "$TMP/logs/startup.$REP.log" -- \
		"$OBJBACKER" --log-format json serve --listen "127.0.0.1:$port" \
		--export "d=$(s3url "$STARTUP_BUCKET")&latency=$STARTUP_LATENCY"
}

startup_serial() {
	startup_run list-serial --bucket "$STARTUP_BUCKET" --count "$1" --latency "$STARTUP_LATENCY"
}

section_startup() {
	local n prev=0 who begin
	REP=0
	startup_create
	STARTUP_FILLS=()
	for n in "${STARTUP_SIZES[@]}"; do
		log "7. start-up: filling the bucket to $n objects"
		begin=$SECONDS
		"$BENCH" fill-blocks --bucket "$STARTUP_BUCKET" --device-blocks "$STARTUP_BLOCKS" \
			--block-size "$STARTUP_BLOCK_SIZE" --count "$n" --after "$prev" --conc 64
		STARTUP_FILLS+=("$((n - prev)) in $((SECONDS - begin)) s")
		prev=$n
		for ((REP = 1; REP <= STARTUP_REPEAT; REP++)); do
			log "7. start-up, $n objects, repeat $REP of $STARTUP_REPEAT"
			for who in $(alternate objbacker serial); do
				attempts "startup_$who" "$n"
			done
		done
	done
}
