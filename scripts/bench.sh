#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The benchmark of issue #6: objbacker against its peers, side by side in one
# run, printed as Markdown tables of medians and ratios (docs/benchmarks.md).
#
#   scripts/bench.sh                       every section, 4 repeats (~18 min)
#   scripts/bench.sh --quick               short runs, small data, 1 repeat
#   scripts/bench.sh --section nbd,rss     some sections (names or 1-5)
#
# Sections: 1 nbd (objbacker on mem:// vs nbdkit memory), 2 object (objbacker
# on MinIO vs a bare SDK client), 3 s3backer (vs Debian's s3backer over
# FUSE), 4 stripe (three exports at once vs one), 5 rss (peak RSS vs
# --cache-size). Every phase also measures the CPU that processes other
# than ours took, and repeats itself when that disturbed it. Run it as root
# on a quiet machine: it installs what is missing (scripts/deps.sh, and the
# s3backer package), and mounts s3backer with FUSE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source scripts/bench/lib.sh
# shellcheck source=bench/sections.sh
source scripts/bench/sections.sh

usage() {
	cat >&2 <<-EOF
		usage: $0 [options]
		  --quick             short runtimes and data sets, 1 repeat, no waiting for quiet
		  --section LIST      comma-separated: nbd,object,s3backer,stripe,rss or 1-5 (default: all)
		  --repeat N          repeats of every comparison (default 4, so that each side runs first as often; quick 1)
		  --runtime S         seconds per NBD-layer row (default 10; quick 3)
		  --data SIZE_MIB     data set of the object-path and s3backer rows (default 2048; quick 256)
		  --rss-runtime S     seconds of sustained load for the RSS row (default 60; quick 15)
		  --max-other CORES   other processes' CPU that makes a phase disturbed (default 0.25)
		  --quiet-wait S      wait up to S seconds for a quiet machine before each phase (default 60; quick 0)
		  --keep              keep the temporary directory (records, fio output, logs)
	EOF
	exit 2
}

ARGS="$*"
QUICK=0 KEEP=0 SECTIONS=all REPEAT='' RUNTIME='' DATA_MIB='' RSS_RUNTIME='' QUIET_WAIT=''
MAX_OTHER=0.25
while (($#)); do
	case $1 in
	--quick) QUICK=1 ;;
	--keep) KEEP=1 ;;
	--section) SECTIONS=${2:?} && shift ;;
	--repeat) REPEAT=${2:?} && shift ;;
	--runtime) RUNTIME=${2:?} && shift ;;
	--data) DATA_MIB=${2:?} && shift ;;
	--rss-runtime) RSS_RUNTIME=${2:?} && shift ;;
	--max-other) MAX_OTHER=${2:?} && shift ;;
	--quiet-wait) QUIET_WAIT=${2:?} && shift ;;
	*) usage ;;
	esac
	shift
done
if ((QUICK)); then
	: "${REPEAT:=1}" "${RUNTIME:=3}" "${DATA_MIB:=256}" "${RSS_RUNTIME:=15}" "${QUIET_WAIT:=0}"
	NBD_MIB=512
else
	: "${REPEAT:=4}" "${RUNTIME:=10}" "${DATA_MIB:=2048}" "${RSS_RUNTIME:=60}" "${QUIET_WAIT:=60}"
	NBD_MIB=2048
fi
QUIET_WAIT=${QUIET_WAIT}s
readonly CONC=16 CACHE_MIB=256 MAX_ATTEMPTS=3
STRIPE_MIB=$((DATA_MIB / 4))
((DATA_MIB % 4 == 0 && DATA_MIB >= 64)) || die "--data must be a multiple of 4 MiB, at least 64"

declare -A WANT=()
IFS=, read -r -a wanted <<<"$SECTIONS"
for s in "${wanted[@]}"; do
	case $s in
	all) WANT=([nbd]=1 [object]=1 [s3backer]=1 [stripe]=1 [rss]=1) ;;
	1 | nbd) WANT[nbd]=1 ;;
	2 | object) WANT[object]=1 ;;
	3 | s3backer) WANT[s3backer]=1 ;;
	4 | stripe) WANT[stripe]=1 ;;
	5 | rss) WANT[rss]=1 ;;
	*) usage ;;
	esac
done
needs_minio() { [[ -n ${WANT[object]:-}${WANT[s3backer]:-}${WANT[stripe]:-}${WANT[rss]:-} ]]; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-bench.XXXXXX")
# At most two data sets live in MinIO at once, plus one repeat's trash.
need_gib=$((DATA_MIB * 4 / 1024 + 8))
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
	"$BENCH" s3 mb bare objbacker s3b objs stripe0 stripe1 stripe2 rss
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
elapsed=$((SECONDS - start))

seq_desc="fio 4 jobs × QD$((CONC / 4)) of 1 MiB"
rss_note=''
if [[ -n ${WANT[rss]:-} ]]; then
	rss_note="The first row is section 5: one export, a $((CACHE_MIB * 4)) MiB device on MinIO, three fio jobs at once. "
fi
printf '## objbacker benchmark\n\n'
machine
printf -- '- measured phases took %d min %d s; %d repeat(s); figures are medians [min–max] over repeats\n' \
	$((elapsed / 60)) $((elapsed % 60)) "$REPEAT"
"$BENCH" report --max-other "$MAX_OTHER" \
	--note "nbd=Both servers hold a ${NBD_MIB} MiB device on loopback, prefilled before the rows; objbacker's mem:// device keeps every block in its own buffers (a RAM disk, as nbdkit's; its --cache-size $((NBD_MIB + 512))M does not apply). fio ioengine=nbd, ${RUNTIME} s per row; write rows end with a flush (end_fsync). Server CPU is utime+stime of the server process per GiB moved." \
	--note "object=${DATA_MIB} MiB written, then read, by each side per repeat, ${CONC} requests in flight: the bare client runs ${CONC} workers of whole-object PUTs and GETs; objbacker (--parallel ${CONC}, --cache-size ${CACHE_MIB}M) is driven by ${seq_desc}, restarted between write and read so that reads come from the bucket; its writes are timed to the end of fio's closing flush." \
	--note "s3backer=s3backer --blockSize=1M --size=${DATA_MIB}M, defaults otherwise, over FUSE (fio libaio, direct=1) vs objbacker (fio ioengine=nbd), the same ${seq_desc}, ${DATA_MIB} MiB. Writes are timed on the wall clock until durable: objbacker's at the end of fio's closing flush, s3backer's when its unmount has flushed and it has exited (its fsync does nothing in 1.5.4). Each is remounted or restarted between write and read." \
	--note "stripe=One objbacker with three exports on three buckets of the same MinIO, one fio invocation with a job section per export (${seq_desc} each, ${STRIPE_MIB} MiB per export), against the same job on one export. MiB/s is the aggregate." \
	--note "rss=${rss_note}The other rows are the objbacker phases of sections 2-4 (the stripe's limit counts three caches); every export has --cache-size ${CACHE_MIB}M." \
	"$RECORDS"
