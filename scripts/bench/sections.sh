# shellcheck shell=bash
# The five sections of scripts/bench.sh, which sources this file after
# lib.sh and sets the sizes (in MiB), RUNTIME, RSS_RUNTIME, CONC, CACHE_MIB,
# OBJBACKER, BENCH, ENDPOINT, MINIO_DIR and MINIO_PID.

readonly FIO_JSON=(--group_reporting --output-format=json)
# CONC requests in flight as fio 4 jobs × QD(CONC/4), like the bare client's
# CONC workers and objbacker's --parallel CONC.
seq_jobs() { printf '%s\n' --numjobs=4 "--iodepth=$((CONC / 4))"; }

# start_objbacker NAME CACHE_MIB EXPORT... serves the exports on a fresh port
# with --parallel CONC and OBJBACKER_SIZE_ARGS, sets PORT, and waits until
# they are served.
start_objbacker() {
	local name=$1 cache=$2
	shift 2
	serve_objbacker "$name" "$cache" "$CONC" "${OBJBACKER_SIZE_ARGS[@]}" -- "$@"
}

# serve_objbacker NAME CACHE_MIB PARALLEL [SERVE-FLAGS...] -- EXPORT...
# serves NAME=URL exports on a fresh port, sets PORT, and waits for the log
# line that says the exports are open (serve listens before that).
serve_objbacker() {
	local name=$1 cache=$2 parallel=$3 spec args=()
	shift 3
	while (($#)) && [[ $1 != -- ]]; do
		args+=("$1")
		shift
	done
	shift
	for spec in "$@"; do
		args+=(--export "$spec")
	done
	PORT=$(pick_port listening)
	start_proc "$name" "$OBJBACKER" --log-format json serve --listen "127.0.0.1:$PORT" \
		--cache-size "${cache}M" --parallel "$parallel" "${args[@]}"
	wait_port "$name" "$PORT" '"msg":"serving"'
}

# s3url BUCKET/PREFIX
s3url() { printf 's3://%s?endpoint=%s' "$1" "$ENDPOINT"; }

# alternate prints its arguments in order on odd repeats and reversed on
# even ones, so that no subject always runs first.
alternate() {
	local i
	if ((REP % 2)); then
		printf '%s\n' "$@"
	else
		for ((i = $#; i >= 1; i--)); do
			printf '%s\n' "${!i}"
		done
	fi
}

# ---- 1. NBD layer: objbacker on mem:// vs nbdkit memory --------------------

nbd_rows=("1M seq write 4×QD8" "1M seq read 4×QD8" "4K rand read 2×QD32" "4K rand write 2×QD32")

# nbd_fio_args ROW sets FIO_ARGS for a row on an NBD_MIB device.
nbd_fio_args() {
	local quarter=$((NBD_MIB / 4))M
	local seq=(--bs=1M --numjobs=4 --iodepth=8 "--size=$quarter" "--offset_increment=$quarter")
	local rand=(--bs=4k --numjobs=2 --iodepth=32 "--size=${NBD_MIB}M" --norandommap)
	case $1 in
	"1M seq write"*) FIO_ARGS=(--rw=write "${seq[@]}" --end_fsync=1) ;;
	"1M seq read"*) FIO_ARGS=(--rw=read "${seq[@]}") ;;
	"4K rand read"*) FIO_ARGS=(--rw=randread "${rand[@]}") ;;
	"4K rand write"*) FIO_ARGS=(--rw=randwrite "${rand[@]}" --end_fsync=1) ;;
	*) die "unknown row $1" ;;
	esac
	FIO_ARGS+=(--time_based "--runtime=$RUNTIME")
}

nbd_phase() {
	local row=$1 subject=$2 out=$TMP/fio.json uri pid
	case $subject in
	objbacker) uri=nbd://127.0.0.1:$NBD_OB_PORT/mem pid=${PIDS[nbd-objbacker]} ;;
	nbdkit) uri=nbd://127.0.0.1:$NBD_KIT_PORT/mem pid=${PIDS[nbdkit]} ;;
	baseline) uri=nbd://127.0.0.1:$NBD_BASE_PORT/mem pid=${PIDS[nbd-baseline]} ;;
	esac
	nbd_fio_args "$row"
	measure nbd "$row" "$subject" --server "$pid" --result "$out" -- \
		fio --name=nbd --ioengine=nbd "--uri=$uri" "${FIO_ARGS[@]}" "${FIO_JSON[@]}" "--output=$out"
}

# nbd_prefill writes the whole device, so that reads return data, not holes.
nbd_prefill() {
	local quarter=$((NBD_MIB / 4))M
	fio --name=prefill --ioengine=nbd "--uri=$1" --rw=write --bs=1M --numjobs=4 --iodepth=8 \
		"--size=$quarter" "--offset_increment=$quarter" --end_fsync=1 "${FIO_JSON[@]}" \
		"--output=$TMP/prefill.json" >/dev/null
}

section_nbd() {
	local row subject
	# A mem:// device keeps every block in its own buffers whatever the
	# cache size (blockmap.Config.Volatile): the rows measure the NBD layer
	# and the block table, not a store miss per request (sections 2-4 do
	# that). The cache size that held the device before that is kept.
	local cache=$((NBD_MIB + 512))
	for ((REP = 1; REP <= REPEAT; REP++)); do
		log "1. NBD layer, repeat $REP of $REPEAT"
		OBJBACKER_SIZE_ARGS=(--size "${NBD_MIB}M")
		start_objbacker nbd-objbacker "$cache" mem=mem://
		NBD_OB_PORT=$PORT
		NBD_KIT_PORT=$(pick_port listening)
		start_proc nbdkit nbdkit -f -i 127.0.0.1 -p "$NBD_KIT_PORT" memory "${NBD_MIB}M"
		wait_port nbdkit "$NBD_KIT_PORT"
		nbd_prefill "nbd://127.0.0.1:$NBD_OB_PORT/mem"
		nbd_prefill "nbd://127.0.0.1:$NBD_KIT_PORT/mem"
		local subjects=(objbacker nbdkit)
		if [[ -n $BASELINE ]]; then
			OBJBACKER=$BASELINE_BIN start_objbacker nbd-baseline "$cache" mem=mem://
			NBD_BASE_PORT=$PORT
			nbd_prefill "nbd://127.0.0.1:$NBD_BASE_PORT/mem"
			subjects+=(baseline)
		fi
		for row in "${nbd_rows[@]}"; do
			for subject in $(alternate "${subjects[@]}"); do
				attempts nbd_phase "$row" "$subject"
			done
		done
		stop_checked nbd-objbacker
		stop_checked nbdkit
		if [[ -n $BASELINE ]]; then
			stop_checked nbd-baseline
		fi
	done
}

# ---- objbacker phases on MinIO, shared by sections 2-5 ----------------------

# ob_phase SECTION ROW SUBJECT TIME EXPORTS FIO-ARGS... starts a fresh
# objbacker on the comma-separated NAME=BUCKET/PREFIX exports (a cold cache),
# runs one fio invocation, and stops it. With several exports FIO-ARGS are
# global and each export gets a job section; with one, its URI is global
# and FIO-ARGS may define the jobs. Write rows end with fio's flush, so they
# count only durable data.
ob_phase() {
	local section=$1 row=$2 subject=$3 time=$4 out=$TMP/fio.json spec specs=() urls=() jobs=()
	IFS=, read -r -a specs <<<"$5"
	shift 5
	for spec in "${specs[@]}"; do
		urls+=("${spec%%=*}=$(s3url "${spec#*=}")")
	done
	OBJBACKER_SIZE_ARGS=(--size "${DEVICE_MIB}M")
	start_objbacker objbacker "$CACHE_MIB" "${urls[@]}"
	if ((${#specs[@]} == 1)); then
		jobs=("--uri=nbd://127.0.0.1:$PORT/${specs[0]%%=*}" "$@")
		[[ " $* " == *" --name="* ]] || jobs+=("--name=${specs[0]%%=*}")
	else
		jobs=("$@")
		for spec in "${specs[@]}"; do
			jobs+=("--name=${spec%%=*}" "--uri=nbd://127.0.0.1:$PORT/${spec%%=*}")
		done
	fi
	measure "$section" "$row" "$subject" --server "${PIDS[objbacker]}" --also "$MINIO_PID" \
		--time "$time" --limit $(((CACHE_MIB * ${#specs[@]} + 64) << 20)) --result "$out" -- \
		fio --ioengine=nbd "${FIO_JSON[@]}" "--output=$out" "${jobs[@]}"
	stop_checked objbacker
}

# seq_args RW MIB: a sequential 1 MiB job over MIB, split between 4 jobs.
seq_args() {
	local quarter=$(($2 / 4))M
	printf '%s\n' "--rw=$1" --bs=1M "--size=$quarter" "--offset_increment=$quarter"
	seq_jobs
	if [[ $1 == write ]]; then
		printf '%s\n' --end_fsync=1
	fi
}

# purge_trash empties MinIO's trash of deleted and overwritten objects
# between repeats. MinIO empties it itself only every 5 minutes and slower
# than a full run fills it (about 50 GiB), which would fill a shared disk.
# MinIO may remove an entry at the same moment: rm -f takes that as done
# (find reported it as an error, which stopped a full run).
purge_trash() {
	local trash=$MINIO_DIR/data/.minio.sys/tmp/.trash entries=()
	mapfile -d '' entries < <(find "$trash" -mindepth 1 -maxdepth 1 -print0 2>/dev/null)
	((${#entries[@]} == 0)) || rm -rf -- "${entries[@]}"
}

# check_blocks BUCKET PREFIX N: a durable write left exactly N blocks.
check_blocks() {
	"$BENCH" s3 count --bucket "$1" --prefix "$2/" --want "$3"
}

# ---- 2. Object path: objbacker vs the bare SDK client -----------------------

bare_phase() {
	local op=put row=$2 prefix=$3 out=$TMP/s3.json
	if [[ $1 == read ]]; then
		op="get"
	fi
	measure object "$row" "bare SDK" --also "$MINIO_PID" --result "$out" -- \
		"$BENCH" s3 "$op" --bucket bare --prefix "$prefix/" --count "$DATA_MIB" --conc "$CONC" \
		--device-size $((DATA_MIB << 20)) --out "$out"
}

object_step() {
	local who=$1 rw=$2 prefix=r$REP row
	row="1M seq $rw, $CONC in flight"
	local args
	mapfile -t args < <(seq_args "$rw" "$DATA_MIB")
	case $who in
	bare) bare_phase "$rw" "$row" "$prefix" ;;
	objbacker) ob_phase object "$row" objbacker client "d=objbacker/$prefix" "${args[@]}" ;;
	esac
	if [[ $rw == write ]]; then
		check_blocks "$who" "$prefix" "$DATA_MIB"
	fi
}

section_object() {
	local rw who
	DEVICE_MIB=$DATA_MIB
	for ((REP = 1; REP <= REPEAT; REP++)); do
		log "2. object path, repeat $REP of $REPEAT"
		for rw in write read; do
			for who in $(alternate bare objbacker); do
				attempts object_step "$who" "$rw"
			done
		done
		"$BENCH" s3 rm --bucket bare --prefix "r$REP/"
		"$BENCH" s3 rm --bucket objbacker --prefix "r$REP/"
		purge_trash
	done
}

# ---- 3. objbacker vs s3backer ------------------------------------------------

# mount_s3backer PREFIX mounts s3backer 1.5.4 with 1 MiB blocks and its
# defaults otherwise; without --region it keeps path-style URLs.
mount_s3backer() {
	local mnt=$TMP/mnt
	mkdir -p "$mnt"
	start_proc s3backer s3backer "--baseURL=$ENDPOINT/" "--accessId=$AWS_ACCESS_KEY_ID" \
		"--accessKey=$AWS_SECRET_ACCESS_KEY" --blockSize=1M "--size=${DATA_MIB}M" "--prefix=$1/" \
		-f s3b "$mnt"
	MOUNTS+=("$mnt")
	local deadline=$((SECONDS + 60))
	until [[ -f $mnt/file ]]; do
		alive "${PIDS[s3backer]}" || die "s3backer exited while mounting; see ${LOGS[s3backer]}"
		((SECONDS < deadline)) || die "s3backer not mounted after 60 s"
		sleep 0.05
	done
	S3B_MNT=$mnt
}

# s3backer_step RW: its fsync does nothing in 1.5.4, so a write is durable
# only once an unmount has flushed its cache and the process has exited:
# the write phase runs until then and is timed on the wall clock.
s3backer_step() {
	local rw=$1 prefix=r$REP out=$TMP/fio.json args row="1M seq $1, $CONC in flight"
	mapfile -t args < <(seq_args "$rw" "$DATA_MIB")
	mount_s3backer "$prefix"
	local fio=(fio --name=s3b --ioengine=libaio --direct=1 "--filename=$S3B_MNT/file" "${args[@]}"
		"${FIO_JSON[@]}" "--output=$out")
	if [[ $rw == write ]]; then
		# shellcheck disable=SC2016 # expanded by the inner shell
		measure s3backer "$row" s3backer --server "${PIDS[s3backer]}" --also "$MINIO_PID" \
			--wait-exit --time wall --result "$out" -- \
			bash -c 'mnt=$1; shift; "$@" && umount "$mnt"' _ "$S3B_MNT" "${fio[@]}"
		MOUNTS=()
		reaped s3backer
		check_blocks s3b "$prefix" "$DATA_MIB"
	else
		measure s3backer "$row" s3backer --server "${PIDS[s3backer]}" --also "$MINIO_PID" \
			--result "$out" -- "${fio[@]}"
		umount "$S3B_MNT"
		MOUNTS=()
		reaped s3backer
	fi
}

objbacker_vs_s3backer_step() {
	local rw=$1 prefix=r$REP args time=client row="1M seq $1, $CONC in flight"
	mapfile -t args < <(seq_args "$rw" "$DATA_MIB")
	if [[ $rw == write ]]; then
		time=wall
	fi
	ob_phase s3backer "$row" objbacker "$time" "d=objs/$prefix" "${args[@]}"
	if [[ $rw == write ]]; then
		check_blocks objs "$prefix" "$DATA_MIB"
	fi
}

section_s3backer() {
	local rw who
	DEVICE_MIB=$DATA_MIB
	for ((REP = 1; REP <= REPEAT; REP++)); do
		log "3. s3backer, repeat $REP of $REPEAT"
		for rw in write read; do
			for who in $(alternate s3backer objbacker); do
				case $who in
				s3backer) attempts s3backer_step "$rw" ;;
				objbacker) attempts objbacker_vs_s3backer_step "$rw" ;;
				esac
			done
		done
		"$BENCH" s3 rm --bucket s3b --prefix "r$REP/"
		"$BENCH" s3 rm --bucket objs --prefix "r$REP/"
		purge_trash
	done
}

# ---- 4. Stripe: three exports at once vs one --------------------------------

# stripe_step ONE|THREE RW: the single export has its own prefix, so the
# stripe's data is never in its cache.
stripe_step() {
	local who=$1 rw=$2 prefix=r$REP args b row="1M seq $2, $CONC in flight per export"
	mapfile -t args < <(seq_args "$rw" "$STRIPE_MIB")
	case $who in
	one) ob_phase stripe "$row" "1 export" client "s0=stripe0/$prefix-one" "${args[@]}" ;;
	three) ob_phase stripe "$row" "3 exports" client "s0=stripe0/$prefix,s1=stripe1/$prefix,s2=stripe2/$prefix" "${args[@]}" ;;
	esac
	if [[ $rw == write && $who == one ]]; then
		check_blocks stripe0 "$prefix-one" "$STRIPE_MIB"
	elif [[ $rw == write ]]; then
		for b in 0 1 2; do
			check_blocks "stripe$b" "$prefix" "$STRIPE_MIB"
		done
	fi
}

section_stripe() {
	local rw who b
	DEVICE_MIB=$STRIPE_MIB
	for ((REP = 1; REP <= REPEAT; REP++)); do
		log "4. stripe, repeat $REP of $REPEAT"
		for rw in write read; do
			for who in $(alternate one three); do
				attempts stripe_step "$who" "$rw"
			done
		done
		"$BENCH" s3 rm --bucket stripe0 --prefix "r$REP-one/"
		for b in 0 1 2; do
			"$BENCH" s3 rm --bucket "stripe$b" --prefix "r$REP/"
		done
		purge_trash
	done
}

# ---- 5. Peak RSS under sustained load ----------------------------------------

# rss_step drives one export with three jobs at once for RSS_RUNTIME: 1 MiB
# sequential writes, 4 KiB random writes (partial blocks, read-modify-write)
# and 1 MiB random reads, over a device four times the cache.
rss_step() {
	ob_phase rss "1M seq write + 4K rand write + 1M rand read, ${RSS_RUNTIME} s" objbacker client \
		"d=rss/r$REP" --time_based "--runtime=$RSS_RUNTIME" "--size=${DEVICE_MIB}M" --end_fsync=1 \
		--name=seqw --rw=write --bs=1M --iodepth=8 \
		--name=randw --rw=randwrite --bs=4k --iodepth=16 --norandommap \
		--name=randr --rw=randread --bs=1M --iodepth=8 --norandommap
}

section_rss() {
	DEVICE_MIB=$((CACHE_MIB * 4))
	for ((REP = 1; REP <= REPEAT; REP++)); do
		log "5. peak RSS, repeat $REP of $REPEAT"
		attempts rss_step
		"$BENCH" s3 rm --bucket rss --prefix "r$REP/"
		purge_trash
	done
}
