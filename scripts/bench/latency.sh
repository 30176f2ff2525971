# shellcheck shell=bash
# Section 6 of scripts/bench.sh, which sources this file after lib.sh and
# sections.sh and sets LAT_LATENCIES, LAT_PARALLELS, LAT_MIB, LAT_RUNTIME,
# LAT_WINDOW, LAT_REPEAT, OBJBACKER and the measurement globals.
#
# Every store is mem:// behind a latency (mem://NAME?latency=30ms): it
# uploads and fetches like a remote bucket and costs no CPU while it waits,
# so the figures show how well objbacker hides latency, not this machine's
# speed. A mem:// store lives in the daemon, so a restart would lose the
# data: reads are made cold by the layout instead (lat_layout).

readonly LAT_STRIPE=6
# A stalled store: 1 KiB/s per request, so opening the device (a few small
# objects) takes a moment and a 1 MiB block's upload 17 minutes. (A huge
# latency would stall the opening too: serve would never start.)
readonly LAT_STALL=bandwidth=1K LAT_DEPTH_LATENCY=50
readonly LAT_ROWS=("1M seq write + flush" "1M seq read, cold" "1M rand read, cold" "1M seq read QD1, cold")

# lat_cache P: each export's --cache-size in MiB. Its request memory, 2P MiB,
# is at most half of it (README, Memory): 4P MiB, and at least 128.
lat_cache() {
	local c=$(($1 * 4))
	echo $((c > 128 ? c : 128))
}

# lat_blocks P: the MiB of block buffers that cache leaves: the most that a
# device can keep cached.
lat_blocks() {
	local c r
	c=$(lat_cache "$1")
	r=$((2 * $1))
	((r >= 8)) || r=8
	((r <= c / 2)) || r=$((c / 2))
	echo $((c - r))
}

# lat_layout P sets, in MiB, the regions of each device: R, read first in
# order, from 0; a gap G for the read-ahead beyond R; T, read at random,
# from R+G; D = R+G+T, the device, written whole first. The cache then
# holds at most the last lat_blocks of the write, all in T, so R is cold;
# reading R (at least lat_blocks) evicts all of T, so T is cold; reading T
# (as much again) evicts R, so a second reader of R is cold too. An LRU
# cache of clean blocks is all this assumes.
lat_layout() {
	local blocks
	blocks=$(lat_blocks "$1")
	R=$((blocks > LAT_MIB ? blocks : LAT_MIB))
	R=$(((R + 3) / 4 * 4))
	G=$(($1 > 32 ? $1 : 32))
	T=$R
	D=$((R + G + T))
}

# lat_mem_check NEED_MIB: the stores and caches fit in the memory available.
lat_mem_check() {
	local avail
	avail=$(($(awk '/^MemAvailable/ {print $2}' /proc/meminfo) / 1024))
	((avail >= $1 + 1024)) ||
		die "section 6 needs about $1 MiB of memory (stores and caches of $LAT_STRIPE exports); $avail MiB available"
}

# lat_target ROW LATENCY_MS EXPORTS: the issue's least fraction of the
# bound for one export; none for the stripe (its target is a ratio).
lat_target() {
	local row=$1 lat=$2 exports=$3
	if ((exports != 1)); then
		echo 0
	elif [[ $row == *QD1* ]]; then
		if ((lat == 30)); then echo 0.8; else echo 0; fi
	elif ((lat == 30 || lat == 100)); then
		echo 0.9
	else
		echo 0
	fi
}

# lat_phase ROW LATENCY_MS PARALLEL EXPORTS IN_FLIGHT FIO-ARGS... runs one
# fio invocation, FIO-ARGS global, one job section per export e0, e1, ...
lat_phase() {
	local row=$1 lat=$2 p=$3 e=$4 inflight=$5 out=$TMP/fio.json jobs=() i subject="$4 exports"
	shift 5
	((e > 1)) || subject="1 export"
	jobs=("$@")
	for ((i = 0; i < e; i++)); do
		jobs+=("--name=e$i" "--uri=nbd://127.0.0.1:$PORT/e$i")
	done
	measure latency "$row" "$subject" --server "${PIDS[latency]}" --result "$out" \
		--latency "${lat}ms" --parallel "$p" --exports "$e" --in-flight "$inflight" \
		--target "$(lat_target "$row" "$lat" "$e")" -- \
		fio --ioengine=nbd "${FIO_JSON[@]}" "--output=$out" "${jobs[@]}"
}

# lat_step LATENCY_MS PARALLEL EXPORTS: one daemon, the four rows in the
# order that keeps each read cold (lat_layout). The sequential and random
# rows keep PARALLEL requests in flight per export as 4 fio jobs × QD P/4
# (one NBD connection may hold half the export's request memory).
lat_step() {
	local lat=$1 p=$2 e=$3 i specs=() R G T D
	lat_layout "$p"
	for ((i = 0; i < e; i++)); do
		specs+=("e$i=mem://e$i?latency=${lat}ms")
	done
	serve_objbacker latency "$(lat_cache "$p")" "$p" --size "${D}M" -- "${specs[@]}"
	local qd=$((p / 4)) dq=$((D / 4))M rq=$((R / 4))M tq=$((T / 4))M
	lat_phase "${LAT_ROWS[0]}" "$lat" "$p" "$e" "$p" --rw=write --bs=1M --numjobs=4 "--iodepth=$qd" \
		"--size=$dq" "--offset_increment=$dq" --end_fsync=1
	lat_phase "${LAT_ROWS[1]}" "$lat" "$p" "$e" "$p" --rw=read --bs=1M --numjobs=4 "--iodepth=$qd" \
		"--size=$rq" "--offset_increment=$rq"
	lat_phase "${LAT_ROWS[2]}" "$lat" "$p" "$e" "$p" --rw=randread --bs=1M --numjobs=4 "--iodepth=$qd" \
		"--offset=$((R + G))M" "--size=$tq" "--offset_increment=$tq"
	lat_phase "${LAT_ROWS[3]}" "$lat" "$p" "$e" "${LAT_WINDOW:-$p}" --rw=read --bs=1M --numjobs=1 --iodepth=1 \
		"--size=${R}M" "--runtime=$LAT_RUNTIME"
	stop_checked latency
}

# inflight_bytes PORT EXPORT: the export's NBD payload bytes in flight, from
# /metrics.
inflight_bytes() {
	curl -fsS "http://127.0.0.1:$1/metrics" |
		awk -v m="objbacker_nbd_inflight_bytes{export=\"$2\"}" '$1 == m {printf "%d\n", $2; found = 1} END {if (!found) print 0}'
}

ISO_ROW="1M seq read QD1 of a mem:// export, time-based"

# iso_step: one daemon, --parallel 16, a fast export (a mem:// RAM disk)
# and one whose store is stalled (LAT_STALL). The fast export is read alone,
# then again while 16 writes wait on the other: fio writes twice its cache
# to it, so its block buffers fill with dirty blocks that never upload and
# the writes that follow wait, holding the export's request memory. A
# stall cannot be undone, so "alone" always runs first, and the daemon,
# which could never flush, is killed.
iso_step() {
	local cache=256 out=$TMP/fio.json mport waited=0 held
	mport=$(pick_port listening)
	serve_objbacker iso "$cache" 16 --size "$((cache * 4))M" --metrics "127.0.0.1:$mport" -- \
		fast=mem:// "stalled=mem://stalled?$LAT_STALL"
	local fast=nbd://127.0.0.1:$PORT/fast
	fio --name=prefill --ioengine=nbd "--uri=$fast" --rw=write --bs=1M --iodepth=8 "--size=${LAT_MIB}M" \
		--end_fsync=1 "${FIO_JSON[@]}" "--output=$TMP/prefill.json" >/dev/null
	local read=(fio --name=fast --ioengine=nbd "--uri=$fast" --rw=read --bs=1M --numjobs=1 --iodepth=1
		"--size=${LAT_MIB}M" --time_based "--runtime=$LAT_RUNTIME" "${FIO_JSON[@]}" "--output=$out")
	measure isolation "$ISO_ROW" alone --server "${PIDS[iso]}" --result "$out" -- "${read[@]}"
	start_proc iso-writer fio --name=stall --ioengine=nbd "--uri=nbd://127.0.0.1:$PORT/stalled" --rw=write \
		--bs=1M --numjobs=1 --iodepth=16 "--size=$((cache * 2))M" --end_fsync=1
	# Wait until all 16 writes are held (16 MiB of payload in flight).
	until held=$(inflight_bytes "$mport" stalled) && ((held >= 16 << 20)); do
		alive "${PIDS[iso-writer]}" || die "the stalled export's writer exited; see ${LOGS[iso-writer]}"
		((waited++ < 300)) || die "the stalled export holds only $held bytes of writes after 30 s"
		sleep 0.1
	done
	log "the stalled export holds $((held >> 20)) MiB of writes"
	measure isolation "$ISO_ROW" "beside a stalled export" --server "${PIDS[iso]}" --result "$out" -- "${read[@]}"
	held=$(inflight_bytes "$mport" stalled)
	((held >= 16 << 20)) || log "warning: the stalled export held only $held bytes of writes at the end"
	kill_proc iso-writer
	kill_proc iso
}

DEPTH_ROW="1M rand read, cold, one connection, +${LAT_DEPTH_LATENCY} ms"

# depth_step: one export behind 50 ms, --parallel 16; one fio job (one NBD
# connection) reads R at random at depth 16, then T at depth 1, each cold
# (lat_layout).
depth_step() {
	local p=16 out=$TMP/fio.json R G T D
	lat_layout "$p"
	serve_objbacker depth "$(lat_cache "$p")" "$p" --size "${D}M" -- "d=mem://d?latency=${LAT_DEPTH_LATENCY}ms"
	local uri=nbd://127.0.0.1:$PORT/d dq=$((D / 4))M
	fio --name=prefill --ioengine=nbd "--uri=$uri" --rw=write --bs=1M --numjobs=4 --iodepth=4 \
		"--size=$dq" "--offset_increment=$dq" --end_fsync=1 "${FIO_JSON[@]}" "--output=$TMP/prefill.json" >/dev/null
	measure depth "$DEPTH_ROW" QD16 --server "${PIDS[depth]}" --result "$out" -- \
		fio --name=qd16 --ioengine=nbd "--uri=$uri" --rw=randread --bs=1M --numjobs=1 --iodepth=16 \
		"--size=${R}M" "${FIO_JSON[@]}" "--output=$out"
	measure depth "$DEPTH_ROW" QD1 --server "${PIDS[depth]}" --result "$out" -- \
		fio --name=qd1 --ioengine=nbd "--uri=$uri" --rw=randread --bs=1M --numjobs=1 --iodepth=1 \
		"--offset=$((R + G))M" "--size=${T}M" "--runtime=$LAT_RUNTIME" "${FIO_JSON[@]}" "--output=$out"
	stop_checked depth
}

# lat_once STEP ARGS...: a step behind a latency runs once, however busy
# the machine: it waits on the store, not the CPU, and a disturbed figure
# keeps its star. Steps at 0 ms measure the ceiling every bound comes
# from, and are repeated while disturbed, as in the other sections (not
# with --quick).
lat_once() {
	# shellcheck disable=SC2034 # read by measure
	local QUIET_WAIT=0s
	# shellcheck disable=SC2034 # read by measure
	ATTEMPT=1 DISTURBED=0
	"$@"
}

section_latency() {
	local lat p e R G T D need=0
	for p in "${LAT_PARALLELS[@]}"; do
		lat_layout "$p"
		((need >= LAT_STRIPE * (D + $(lat_cache "$p")))) || need=$((LAT_STRIPE * (D + $(lat_cache "$p"))))
	done
	for ((REP = 1; REP <= LAT_REPEAT; REP++)); do
		for lat in "${LAT_LATENCIES[@]}"; do
			for p in "${LAT_PARALLELS[@]}"; do
				for e in 1 "$LAT_STRIPE"; do
					log "6. latency ${lat} ms, --parallel $p, $e export(s), repeat $REP of $LAT_REPEAT"
					((e == 1)) || lat_mem_check "$need"
					if ((lat == 0 && !QUICK)); then
						attempts lat_step "$lat" "$p" "$e"
					else
						lat_once lat_step "$lat" "$p" "$e"
					fi
				done
			done
		done
		log "6. isolation, repeat $REP of $LAT_REPEAT"
		if ((QUICK)); then
			lat_once iso_step
		else
			attempts iso_step
		fi
		log "6. depth 16 vs 1 behind ${LAT_DEPTH_LATENCY} ms, repeat $REP of $LAT_REPEAT"
		lat_once depth_step
	done
}
