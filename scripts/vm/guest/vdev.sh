# shellcheck shell=sh
# The native vdev phases of the guest's /init (e2e/vdev_test.go): objbacker
# vdev runs in this guest on /dev/zfs_objbacker of the objbacker-patched ZFS
# module and stores the exports in MinIO on the host; the pool's vdevs are
# objbacker:NAME. The NBD phase (nbd_cross) imports the same pool through
# objbacker serve on the host and nbd-client.
#
#   vdev_create  make the pool on objbacker: vdevs, write the data set and
#                its checksums, export, import with -d objbacker:NAME,
#                check, scrub, export, stop the daemon with SIGTERM
#   nbd_cross    import from /dev/nbdX, check, add a file, scrub, export
#   vdev_verify  import with -d objbacker:NAME again, check everything the
#                two paths wrote, replace the daemon during a write
#                (SIGTERM, restart: the module reissues), scrub, trim,
#                export, stop the daemon
#
# /e2e/vdev.env (from the test) sets VDEV_EXPORTS, NAME=URL,… for objbacker
# vdev, and the S3 credentials.

OBJBACKER_LOG=/tmp/objbacker.log

vdev_devs() {
	for _e in $(echo "$EXPORTS" | tr , ' '); do
		printf ' objbacker:%s' "$_e"
	done
}

# start_daemon runs objbacker vdev in the background and waits for its
# exports to be registered with the module.
start_daemon() {
	# shellcheck source=/dev/null
	. /e2e/vdev.env || return 1
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
	echo "$VDEV_TIMEOUT_MS" >/sys/module/zfs/parameters/zfs_objbacker_timeout_ms || return 1
	_args=
	for _x in $(echo "$VDEV_EXPORTS" | tr , ' '); do
		_args="$_args --export $_x"
	done
	_registered=0
	[ ! -e "$OBJBACKER_LOG" ] || _registered=$(grep -c 'exports registered' "$OBJBACKER_LOG")
	# shellcheck disable=SC2086 # a list of options
	/bin/objbacker --log-format json vdev $_args --size "$VDEV_SIZE" --cache-size "$VDEV_CACHE" \
		>>"$OBJBACKER_LOG" 2>&1 &
	DAEMON=$!
	_i=0
	until [ "$(grep -c 'exports registered' "$OBJBACKER_LOG")" -gt "$_registered" ]; do
		_i=$((_i + 1))
		if [ "$_i" -gt 600 ] || ! kill -0 "$DAEMON" 2>/dev/null; then
			tail -n 20 "$OBJBACKER_LOG" | sed 's/^/E2E| daemon: /'
			return 1
		fi
		sleep 0.2
	done
	say "objbacker vdev pid $DAEMON: $(grep -c 'exports registered' "$OBJBACKER_LOG") registration(s); module timeout $(cat /sys/module/zfs/parameters/zfs_objbacker_timeout_ms) ms"
}

# stop_daemon stops it with SIGTERM, which must flush, send the BYEs and
# exit 0.
stop_daemon() {
	kill -TERM "$DAEMON" || return 1
	wait "$DAEMON"
	_rc=$?
	say "objbacker vdev exited with $_rc: $(grep -o '"msg":"[^"]*stopped[^"]*"' "$OBJBACKER_LOG" | tail -n 1)"
	dmesg | grep 'objbacker' | tail -n 6 | sed 's/^/E2E| dmesg: /'
	[ "$_rc" -eq 0 ]
}

import_vdev() {
	_args=
	for _d in $(vdev_devs); do
		_args="$_args -d $_d"
	done
	# shellcheck disable=SC2086 # a list of options
	zpool import $_args tank
}

# check_paths requires every leaf of the pool to show the path of the
# route that imported it: objbacker:NAME or /dev/nbdX.
check_paths() {
	zpool status -P tank >/tmp/paths || return 1
	_n=$(grep -cE "^[[:space:]]+$1" /tmp/paths)
	say "$_n vdevs on $1 paths"
	[ "$_n" -eq "$(echo "$EXPORTS" | tr , '\n' | wc -l)" ]
}

# restart_during_write replaces the daemon while a file is being written:
# SIGTERM, then a new objbacker vdev. The module keeps the requests the old
# daemon did not answer or read and reissues them to the new one; the
# write goes on and the file must read back intact.
restart_during_write() {
	head -c 33554432 /dev/urandom >/tmp/restart.src || return 1
	dd if=/tmp/restart.src of=/tank/during-restart bs=1M conv=fsync 2>/dev/null &
	_dd=$!
	sleep 2
	stop_daemon || return 1
	sleep 1
	start_daemon || return 1
	wait "$_dd" || return 1
	zpool sync tank || return 1
	dmesg | grep -E 'objbacker (channel closed|export disk0 attached)' | tail -n 3 | sed 's/^/E2E| dmesg: /'
	verify_written /tmp/restart.src /tank/during-restart "across the restart"
}

# verify_written SRC FILE WHAT: FILE, read back from the disks rather than
# the ARC, must equal SRC, which goes.
verify_written() {
	_want=$(sha256sum <"$1")
	zpool export tank && import_vdev || return 1
	_got=$(sha256sum <"$2")
	say "written $3: $(stat -c %s "$2") bytes, sha256 ${_got%% *}, want ${_want%% *}"
	rm -f "$1"
	[ "$_got" = "$_want" ]
}

# kill_during_write kills the daemon with SIGKILL while a file is being
# written, does what an operator does after a crash (objbacker
# reset-mounted on each bucket: the dead daemon left its mount marker), and
# starts a new daemon. The writes the dead daemon acknowledged from its
# cache and never uploaded are lost with it: the module replays its copies
# to the new daemon first. The file must read back intact, and the pool
# scrub clean.
kill_during_write() {
	head -c 33554432 /dev/urandom >/tmp/kill.src || return 1
	# The data goes to the ARC, then zpool sync writes it to the vdevs: the
	# daemon acknowledges it from its cache and is killed while it uploads
	# it for the FLUSH that follows.
	dd if=/tmp/kill.src of=/tank/during-kill bs=1M 2>/dev/null || return 1
	zpool sync tank &
	_dd=$!
	sleep 1
	kill -KILL "$DAEMON"
	wait "$DAEMON"
	say "objbacker vdev killed (wait status $?)"
	for _x in $(echo "$VDEV_EXPORTS" | tr , ' '); do
		/bin/objbacker reset-mounted "${_x#*=}" >>"$OBJBACKER_LOG" 2>&1 || return 1
	done
	start_daemon || return 1
	wait "$_dd" || return 1
	zpool sync tank || return 1
	dmesg | grep -E 'objbacker export disk[0-9](: replaying| detached)' | tail -n 6 | sed 's/^/E2E| dmesg: /'
	verify_written /tmp/kill.src /tank/during-kill "across the SIGKILL"
}

daemon_fail() {
	echo "---- objbacker vdev log tail ----"
	tail -n 40 "$OBJBACKER_LOG"
	fail "$@"
}


phase_vdev_create() {
	find_disks
	mkdir -p /tmp/state
	# From here on, a failed step shows the daemon's log too.
	# shellcheck disable=SC2034 # read by step (lib.sh)
	STEP_FAIL=daemon_fail
	step daemon_start start_daemon
	step generate make_data /tmp/src
	step checksum_before sums /tmp/src /tmp/state/snap.sums
	# shellcheck disable=SC2046 # the vdevs are separate words
	step zpool_create zpool create -f -o ashift=12 -O recordsize=1M -O compression=lz4 \
		-O atime=off -m /tank tank $(vdev_devs)
	show zpool status -P tank
	step objbacker_paths check_paths objbacker:
	fill_pool
	step zpool_export zpool export tank
	step zpool_import import_vdev
	step verify_live check_sums /tank /tmp/state/live.sums
	step verify_snapshot check_sums /tank/.zfs/snapshot/e2e /tmp/state/snap.sums
	step zpool_scrub zpool scrub -w tank
	show zpool status -vP tank
	step pool_healthy check_status
	step zpool_export2 zpool export tank
	step daemon_stop stop_daemon
	finish "PASS vdev_create"
}

phase_nbd_cross() {
	find_disks
	step load_state load_state
	step zpool_import import_pool
	show zpool status -vP tank
	step nbd_paths check_paths /dev/nbd
	step verify_live check_sums /tank /tmp/state/live.sums
	step verify_snapshot check_sums /tank/.zfs/snapshot/e2e /tmp/state/snap.sums
	# A file written through NBD, for the vdev path to read back.
	step write_nbd dd if=/dev/urandom of=/tank/through-nbd bs=1M count=16 conv=fsync
	(cd /tank && sha256sum ./through-nbd) >>/tmp/state/live.sums
	sort -t ' ' -k3,3 /tmp/state/live.sums >/tmp/state/live.sorted && mv /tmp/state/live.sorted /tmp/state/live.sums
	step save_state save_state
	step zpool_scrub zpool scrub -w tank
	show zpool status -vP tank
	step pool_healthy check_status
	step zpool_export zpool export tank
	step detach detach_all
	finish "PASS nbd_cross"
}

phase_vdev_verify() {
	find_disks
	step load_state load_state
	# shellcheck disable=SC2034 # read by step (lib.sh)
	STEP_FAIL=daemon_fail
	step daemon_start start_daemon
	step zpool_import import_vdev
	show zpool status -vP tank
	step objbacker_paths check_paths objbacker:
	step verify_live check_sums /tank /tmp/state/live.sums
	step verify_snapshot check_sums /tank/.zfs/snapshot/e2e /tmp/state/snap.sums
	step daemon_restart restart_during_write
	step daemon_kill kill_during_write
	step zpool_scrub zpool scrub -w tank
	show zpool status -vP tank
	step pool_healthy check_status
	step zpool_trim zpool trim -w tank
	step zpool_export zpool export tank
	step daemon_stop stop_daemon
	finish "PASS vdev_verify"
}
