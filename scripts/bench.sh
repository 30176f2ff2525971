#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The benchmark of issue #6: objbacker against its peers, side by side in one
# run, printed as Markdown tables of medians and ratios (docs/benchmarks.md).
#
#   scripts/bench.sh                       every section, 4 repeats (sections 6, 7: 2; ~30 min, and section 7's fill of 10^6 objects about 35 min more)
#   scripts/bench.sh --quick               short runs, small data, 1 repeat
#   scripts/bench.sh --section nbd,rss     some sections (names or 1-7)
#
# Sections: 1 nbd (objbacker on mem:// vs nbdkit memory), 2 object (objbacker
# on MinIO vs a bare SDK client), 3 s3backer (vs Debian's s3backer over
# FUSE), 4 stripe (three exports at once vs one), 5 rss (peak RSS vs
# --cache-size), 6 latency (objbacker on mem:// behind 0-100 ms of store
# latency against the bound that latency allows; isolation; depth 16 vs 1;
# issue #15), 7 startup (serve's first byte and full presence on a MinIO
# bucket of 10^3 … 10^6 objects behind 50 ms per request or LIST page, vs
# listing it one page after another; issue #16). Every phase also measures the CPU that processes other
# than ours took, and repeats itself when that disturbed it. Run it as root
# on a quiet machine: it installs what is missing (scripts/deps.sh, and the
# s3backer package), and mounts s3backer with FUSE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source scripts/bench/lib.sh
# shellcheck source=bench/sections.sh
source scripts/bench/sections.sh
# shellcheck source=bench/latency.sh
source scripts/bench/latency.sh
# shellcheck source=bench/startup.sh
source scripts/bench/startup.sh

usage() {
	cat >&2 <<-EOF
		usage: $0 [options]
		  --quick             short runtimes and data sets, 1 repeat, no waiting for quiet
		  --section LIST      comma-separated: nbd,object,s3backer,stripe,rss,latency,startup or 1-7 (default: all)
		  --repeat N          repeats of every comparison (default 4, so that each side runs first as often; sections 6 and 7: 2; quick 1)
		  --runtime S         seconds per NBD-layer row (default 10; quick 3)
		  --data SIZE_MIB     data set of the object-path and s3backer rows (default 2048; quick 256)
		  --rss-runtime S     seconds of sustained load for the RSS row (default 60; quick 15)
		  --window BLOCKS     read-ahead window the latency section's QD1 bound assumes (default: the row's --parallel, objbacker's --read-ahead default)
		  --max-other CORES   other processes' CPU that makes a phase disturbed (default 0.25)
		  --quiet-wait S      wait up to S seconds for a quiet machine before each phase (default 60; quick 0)
		  --baseline REV      section 1 also measures objbacker built at git revision REV (table 1b)
		  --keep              keep the temporary directory (records, fio output, logs)
	EOF
	exit 2
}

ARGS="$*"
QUICK=0 KEEP=0 BASELINE='' SECTIONS=all REPEAT='' RUNTIME='' DATA_MIB='' RSS_RUNTIME='' QUIET_WAIT='' LAT_WINDOW='' LAT_REPEAT='' STARTUP_REPEAT=''
MAX_OTHER=0.25
while (($#)); do
	case $1 in
	--quick) QUICK=1 ;;
	--keep) KEEP=1 ;;
	--baseline) BASELINE=${2:?} && shift ;;
	--section) SECTIONS=${2:?} && shift ;;
	--repeat) REPEAT=${2:?} LAT_REPEAT=$2 STARTUP_REPEAT=$2 && shift ;;
	--runtime) RUNTIME=${2:?} && shift ;;
	--data) DATA_MIB=${2:?} && shift ;;
	--rss-runtime) RSS_RUNTIME=${2:?} && shift ;;
	--max-other) MAX_OTHER=${2:?} && shift ;;
	--window) LAT_WINDOW=${2:?} && shift ;;
	--quiet-wait) QUIET_WAIT=${2:?} && shift ;;
	*) usage ;;
	esac
	shift
done
if ((QUICK)); then
	: "${REPEAT:=1}" "${RUNTIME:=3}" "${DATA_MIB:=256}" "${RSS_RUNTIME:=15}" "${QUIET_WAIT:=0}"
	NBD_MIB=512
	# Section 6: latencies (ms; 0 is the ceiling every bound comes from),
	# --parallel values, MiB per region of each device (lat_layout), and
	# the longest a QD1 reader runs.
	LAT_LATENCIES=(0 30 100) LAT_PARALLELS=(16 64) LAT_MIB=64 LAT_RUNTIME=2
	: "${LAT_REPEAT:=1}"
	# Section 7: the bucket sizes, in objects, filled in this order.
	STARTUP_SIZES=(1000 10000)
	: "${STARTUP_REPEAT:=1}"
else
	: "${REPEAT:=4}" "${RUNTIME:=10}" "${DATA_MIB:=2048}" "${RSS_RUNTIME:=60}" "${QUIET_WAIT:=60}"
	NBD_MIB=2048
	# Section 6 takes about 6 minutes a repeat.
	LAT_LATENCIES=(0 10 30 100) LAT_PARALLELS=(16 64) LAT_MIB=256 LAT_RUNTIME=5
	: "${LAT_REPEAT:=2}"
	# Section 7 fills a million objects (about 20 minutes here) and lists
	# them twice per repeat.
	STARTUP_SIZES=(1000 10000 100000 1000000)
	: "${STARTUP_REPEAT:=2}"
fi
QUIET_WAIT=${QUIET_WAIT}s
readonly CONC=16 CACHE_MIB=256 MAX_ATTEMPTS=3
STRIPE_MIB=$((DATA_MIB / 4))
((DATA_MIB % 4 == 0 && DATA_MIB >= 64)) || die "--data must be a multiple of 4 MiB, at least 64"
[[ -z $LAT_WINDOW || $LAT_WINDOW =~ ^[1-9][0-9]*$ ]] || die "--window must be a positive number of blocks"

declare -A WANT=()
IFS=, read -r -a wanted <<<"$SECTIONS"
for s in "${wanted[@]}"; do
	case $s in
	all) WANT=([nbd]=1 [object]=1 [s3backer]=1 [stripe]=1 [rss]=1 [latency]=1 [startup]=1) ;;
	1 | nbd) WANT[nbd]=1 ;;
	2 | object) WANT[object]=1 ;;
	3 | s3backer) WANT[s3backer]=1 ;;
	4 | stripe) WANT[stripe]=1 ;;
	5 | rss) WANT[rss]=1 ;;
	6 | latency) WANT[latency]=1 ;;
	7 | startup) WANT[startup]=1 ;;
	*) usage ;;
	esac
done
needs_minio() { [[ -n ${WANT[object]:-}${WANT[s3backer]:-}${WANT[stripe]:-}${WANT[rss]:-}${WANT[startup]:-} ]]; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-bench.XXXXXX")
# At most two data sets live in MinIO at once, plus one repeat's trash.
need_gib=$((DATA_MIB * 4 / 1024 + 8))
# Section 7's million objects of 4 KiB take about 10 GiB in MinIO.
if [[ -n ${WANT[startup]:-} ]] && ((!QUICK)); then
	need_gib=$((need_gib + 12))
fi
avail_gib=$(df --output=avail -BG "$TMP" | tail -n 1 | tr -dc 0-9)
if ((avail_gib < need_gib)); then
	rmdir "$TMP"
	die "$TMP has ${avail_gib} GiB free; the bench needs about $need_gib GiB"
fi
mkdir -p "$TMP/logs"
RECORDS=$TMP/records.jsonl
MINIO_DIR=''
cleanup() {
	local status=$?
	stop_all
	if [[ -n $MINIO_DIR ]]; then
		scripts/minio.sh stop "$MINIO_DIR" >/dev/null || true
	fi
	if ((KEEP)); then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$status"
}
trap cleanup EXIT
# Turn signals into an ordinary exit so the EXIT trap cleans up once.
trap 'exit 130' INT
trap 'exit 143' TERM

as_root() {
	if ((EUID == 0)); then
		"$@"
	else
		sudo "$@"
	fi
}

install_s3backer() {
	command -v s3backer >/dev/null && return
	log "installing Debian's s3backer"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq s3backer >&2
}

# source_state names the tree objbacker is built from, at build time: others
# may commit while the bench runs. The bench's own files do not count.
source_state() {
	local commit
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git status --porcelain -- . ':!scripts/bench.sh' ':!scripts/bench' ':!docs/benchmarks.md' 2>/dev/null) ]]; then
		commit+=' + uncommitted changes'
	fi
	printf '%s, built with %s\n' "$commit" "$(go env GOVERSION)"
}

# machine prints what the figures depend on, for the report's header.
machine() {
	printf -- '- started: %s\n' "$STARTED"
	printf -- '- objbacker: %s\n' "$BUILT_FROM"
	printf -- '- machine: %s cores, %s MiB RAM, kernel %s\n' "$(nproc)" \
		$(($(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024)) "$(uname -r)"
	printf -- '- peers: %s, %s, MinIO %s, %s\n' "$(fio --version)" "$(nbdkit --version)" \
		"$(cat "${OBJBACKER_CACHE:-$HOME/.cache/objbacker}/bin/minio.version" 2>/dev/null || echo '?')" \
		"$(if command -v s3backer >/dev/null; then { s3backer --version 2>&1 || true; } | head -n 1; fi)"
	printf -- '- before the run: %s\n' "$QUIETNESS"
	printf -- '- command: scripts/bench.sh %s\n' "$ARGS"
}

scripts/deps.sh >&2
if [[ -n ${WANT[s3backer]:-} ]]; then
	install_s3backer
fi
log "building objbacker and the helper"
OBJBACKER=$TMP/objbacker BENCH=$TMP/bench
BUILT_FROM=$(source_state)
go build -o "$OBJBACKER" .
go build -o "$BENCH" ./scripts/bench
if [[ -n $BASELINE ]]; then
	# A clean tree of that revision, so that the figures compare two builds
	# of this machine's toolchain and nothing else.
	BASELINE_BIN=$TMP/objbacker-baseline
	git worktree add --detach --quiet "$TMP/baseline-src" "$BASELINE"
	(cd "$TMP/baseline-src" && go build -o "$BASELINE_BIN" .)
	git worktree remove --force "$TMP/baseline-src"
	log "baseline: $BASELINE ($(git rev-parse --short "$BASELINE"))"
fi

log "measuring how busy the machine is (waiting up to $QUIET_WAIT for it to calm down)"
QUIETNESS=$("$BENCH" quiet --wait "$QUIET_WAIT" --max 0.15 --sample 5s)
log "$QUIETNESS"

start=$SECONDS
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
REP=0
if [[ -n ${WANT[nbd]:-} ]]; then
	section_nbd
fi
if needs_minio; then
	MINIO_DIR=$TMP/minio
	scripts/minio.sh start "$MINIO_DIR" >&2
	# shellcheck source=/dev/null
	source "$MINIO_DIR/minio.env"
	ENDPOINT=$OBJBACKER_TEST_S3_ENDPOINT
	MINIO_PID=$(<"$MINIO_DIR/minio.pid")
	"$BENCH" s3 mb bare objbacker s3b objs stripe0 stripe1 stripe2 rss "$STARTUP_BUCKET"
	# A cold MinIO serves GETs at about half speed (backends.md).
	log "warming MinIO up"
	"$BENCH" s3 put --bucket bare --prefix warm/ --count 64 --conc 4 --out "$TMP/warm.json"
	"$BENCH" s3 get --bucket bare --prefix warm/ --count 64 --conc 4 --out "$TMP/warm.json"
	"$BENCH" s3 rm --bucket bare --prefix warm/
fi
if [[ -n ${WANT[object]:-} ]]; then
	section_object
fi
if [[ -n ${WANT[s3backer]:-} ]]; then
	section_s3backer
fi
if [[ -n ${WANT[stripe]:-} ]]; then
	section_stripe
fi
if [[ -n ${WANT[rss]:-} ]]; then
	section_rss
fi
if [[ -n ${WANT[latency]:-} ]]; then
	section_latency
fi
if [[ -n ${WANT[startup]:-} ]]; then
	section_startup
fi
elapsed=$((SECONDS - start))

seq_desc="fio 4 jobs × QD$((CONC / 4)) of 1 MiB"
rss_note=''
if [[ -n ${WANT[rss]:-} ]]; then
	rss_note="The first row is section 5: one export, a $((CACHE_MIB * 4)) MiB device on MinIO, three fio jobs at once. "
fi
printf '## objbacker benchmark\n\n'
machine
lat_repeats=''
if [[ -n ${WANT[latency]:-} ]]; then
	lat_repeats=" (section 6: $LAT_REPEAT)"
fi
if [[ -n ${WANT[startup]:-} ]]; then
	lat_repeats+=" (section 7: $STARTUP_REPEAT)"
fi
printf -- '- measured phases took %d min %d s; %d repeat(s)%s; figures are medians [min–max] over repeats\n' \
	$((elapsed / 60)) $((elapsed % 60)) "$REPEAT" "$lat_repeats"
"$BENCH" report --max-other "$MAX_OTHER" \
	--note "nbd=Both servers hold a ${NBD_MIB} MiB device on loopback, prefilled before the rows; objbacker's mem:// device keeps every block in its own buffers (a RAM disk, as nbdkit's; its --cache-size $((NBD_MIB + 512))M does not apply). fio ioengine=nbd, ${RUNTIME} s per row; write rows end with a flush (end_fsync). Server CPU is utime+stime of the server process per GiB moved." \
	--note "object=${DATA_MIB} MiB written, then read, by each side per repeat, ${CONC} requests in flight: the bare client runs ${CONC} workers of whole-object PUTs and GETs; objbacker (--parallel ${CONC}, --cache-size ${CACHE_MIB}M) is driven by ${seq_desc}, restarted between write and read so that reads come from the bucket; its writes are timed to the end of fio's closing flush." \
	--note "s3backer=s3backer --blockSize=1M --size=${DATA_MIB}M, defaults otherwise, over FUSE (fio libaio, direct=1) vs objbacker (fio ioengine=nbd), the same ${seq_desc}, ${DATA_MIB} MiB. Writes are timed on the wall clock until durable: objbacker's at the end of fio's closing flush, s3backer's when its unmount has flushed and it has exited (its fsync does nothing in 1.5.4). Each is remounted or restarted between write and read." \
	--note "stripe=One objbacker with three exports on three buckets of the same MinIO, one fio invocation with a job section per export (${seq_desc} each, ${STRIPE_MIB} MiB per export), against the same job on one export. MiB/s is the aggregate." \
	--note "rss=${rss_note}The other rows are the objbacker phases of sections 2-4 (the stripe's limit counts three caches); every export has --cache-size ${CACHE_MIB}M." \
	--note "latency=objbacker serve with mem://eN?latency=L exports (in-memory stores that upload and fetch like a remote bucket and cost no CPU while they wait), L in ${LAT_LATENCIES[*]} ms, --parallel ${LAT_PARALLELS[*]}, --cache-size max(4 × parallel, 128) MiB per export (so the request memory, 2 × parallel MiB, is not cut), read-ahead at its default; one export, and a stripe of ${LAT_STRIPE} exports on one serve driven by one fio invocation with a job section per export (MiB/s is the aggregate). One daemon per (latency, parallel, exports) runs the rows in order: the whole device written sequentially, 4 fio jobs × QD parallel/4 per export, timed to the end of fio's closing flush; a cold sequential read of its first region (4 jobs × QD parallel/4); a cold random read of its last region, each block once (4 jobs × QD parallel/4); one sequential reader at QD1 (1 job, QD1, at most ${LAT_RUNTIME} s) of the first region again. The stores live in the daemon, so reads are cold by layout, not by a restart: each region is at least the export's block buffers (${LAT_MIB} MiB or more), so each read evicts what the one before it cached. The QD1 reader's bound assumes a read-ahead window of ${LAT_WINDOW:-parallel} blocks (--window; objbacker's --read-ahead defaults to --parallel, here a quarter of the cache). Steps behind a latency run once however busy the machine (\\* marks a disturbed one); 0 ms steps are repeated while disturbed (not with --quick)." \
	--note "isolation=One serve, --parallel 16, --cache-size 256M: a mem:// RAM disk (${LAT_MIB} MiB prefilled) read by fio 1 job × QD1 of 1 MiB for ${LAT_RUNTIME} s, first with the other export idle, then while 16 writes of 1 MiB wait on that export, whose store (mem://?${LAT_STALL}: 17 minutes per 1 MiB upload) never answers in time: fio QD16 writes twice its cache to it, which fills its block buffers with dirty blocks, and the phase starts once /metrics shows 16 MiB of its writes held." \
	--note "depth=One export on mem://?latency=${LAT_DEPTH_LATENCY}ms, --parallel 16, --cache-size 128M, written whole first; one fio job (one NBD connection) reads cold 1 MiB blocks at random, each once, at depth 16 (one region), then at depth 1 (another, at most ${LAT_RUNTIME} s)." \
	--note "startup=One bucket on MinIO holds a device of $((STARTUP_BLOCKS >> 20))Mi blocks of $((STARTUP_BLOCK_SIZE >> 10)) KiB (recorded once by a serve before the rows); it is filled cumulatively to each size, the N objects spread evenly (block i × $((STARTUP_BLOCKS >> 20))Mi / N, i < N: every k-th block, as a file system spreads its writes, so that every hex-prefix range serve lists holds its share; a listing sees names only, so these are the keys of a 1 TiB device of 1 MiB blocks; fills: ${STARTUP_FILLS[*]:-none}). Every store request waits ${STARTUP_LATENCY} (s3://…&latency=${STARTUP_LATENCY}: each LIST page of 1000 keys, GET, PUT, HEAD). objbacker serve with its defaults (--parallel 32) is timed from its process start: first byte = a client connecting every 2 ms until one NBD read of the last block of the fill returns that block's content (target: the slowest repeat ≤ 1 s); serving = its \"serving\" log line; full presence = its \"listing complete\" line, since start, and the listing's own list_time. The serial LIST is the bare SDK client listing the whole bucket one ListObjectsV2 page after another, ${STARTUP_LATENCY} before each page, in the same repeat; ratio = serial LIST s / objbacker listing s (target: median ≥ 8× at 10^6)." \
	"$RECORDS"
