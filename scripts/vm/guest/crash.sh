# shellcheck shell=sh
# The crash phases of the guest's /init (e2e/crash_test.go): objbacker
# serve dies by SIGKILL under a live pool, with no journal, and a new
# daemon comes up on the same buckets. Writes the dead daemon acknowledged
# but had not uploaded may be gone, so the devices must never be trusted
# again: the supervisors refuse the new daemon, the devices fail, ZFS
# suspends the pool. The recovery is the README's: a reboot, attach again,
# zpool import -f, scrub.
#
#   crash          attach (objbacker attach), create, write files and
#                  zpool sync (their checksums go to the state disk), then
#                  a load, and "E2E-CRASH-NOW": the host kills the server
#                  and starts another; then require that every supervisor
#                  refused it as a lossy restart and that the pool is
#                  suspended; power off (the recovery's reboot)
#   crash_recover  attach again, zpool import -f, scrub, require every
#                  synced file's checksum and zero errors; export, detach

# The kernel fails a device's I/O this long after its last connection
# died: short, so that the pool suspends soon after the kill.
CRASH_ATTACH_ARGS="--timeout 10s --dead-conn-timeout 20s"

# supervisors_refused waits until every supervisor has exited after
# refusing the new server as a lossy restart.
supervisors_refused() {
	for _d in $NBD_DEVS; do
		_n=${_d#/dev/}
		_i=0
		while kill -0 "$(cat "/tmp/attach-$_n.pid")" 2>/dev/null; do
			_i=$((_i + 1))
			[ "$_i" -le 120 ] || { say "the supervisor of $_d still runs 120 s after the kill"; return 1; }
			sleep 1
		done
		if ! grep -q 'LOSSY RESTART' "/tmp/attach-$_n.log"; then
			say "the supervisor of $_d exited, but not over a lossy restart:"
			tail -n 5 "/tmp/attach-$_n.log" | sed 's/^/E2E| /'
			return 1
		fi
		say "$_d: $(grep -o 'LOSSY RESTART[^;]*' "/tmp/attach-$_n.log" | head -n 1)"
	done
}

# pool_suspended waits until ZFS has suspended the pool.
pool_suspended() {
	_i=0
	until [ "$(timeout 10 zpool list -H -o health tank 2>/dev/null)" = SUSPENDED ]; do
		_i=$((_i + 1))
		[ "$_i" -le 120 ] || { say "the pool is $(timeout 10 zpool list -H -o health tank) 120 s after the kill"; return 1; }
		sleep 1
	done
}

phase_crash() {
	SRC_MB=$((MB / 4))
	[ "$SRC_MB" -ge 1 ] || SRC_MB=1
	STATE=$(disk state) || fail "no state disk"
	# shellcheck disable=SC2034 # attach_supervised's options (restart.sh)
	ATTACH_ARGS=$CRASH_ATTACH_ARGS
	step generate make_sources
	attach_all attach_supervised
	# shellcheck disable=SC2086 # NBD_DEVS is a list of devices
	step zpool_create zpool create -f -o ashift=12 -O recordsize=1M -O compression=off -O atime=off \
		-m /tank tank $NBD_DEVS
	mkdir -p /tank/synced /tank/load
	step write_synced cp /tmp/src/s0 /tmp/src/s1 /tmp/src/s2 /tmp/src/s3 /tank/synced/
	step zpool_sync zpool sync tank
	step save_sums dd if=/tmp/src.sums of="$STATE" conv=fsync 2>/dev/null
	# The load writes on while the server dies: its writes since the last
	# sync are what the kill may lose. It blocks once the pool suspends.
	(
		_k=0
		while dd if="/tmp/src/s$((_k % 4))" of="/tank/load/f$_k" bs=1M 2>/dev/null; do
			_k=$((_k + 1))
			echo "$_k" >/tmp/load.n
		done
	) &
	# Past a transaction group (5 s): the server has taken writes that no
	# FLUSH covered yet when it dies.
	sleep 8
	say "load: $(cat /tmp/load.n 2>/dev/null || echo 0) files of $SRC_MB MiB written when the server is killed"
	echo "E2E-CRASH-NOW"
	step supervisors_refused supervisors_refused
	step pool_suspended pool_suspended
	show zpool status -vP tank
	dmesg | grep -iE 'nbd|zfs|suspend' | tail -n 20 | sed 's/^/E2E| dmesg: /'
	# The recovery starts with a reboot: a suspended pool on devices that
	# will never come back is not exported, and the load is stuck in it.
	# Power off at once: a sync would wait on the suspended pool for ever.
	echo "E2E-RESULT PASS crash"
	echo o >/proc/sysrq-trigger
}

phase_crash_recover() {
	STATE=$(disk state) || fail "no state disk"
	step load_sums sh -c "head -c 4096 '$STATE' | tr -d '\\000' >/tmp/src.sums && [ -s /tmp/src.sums ]"
	attach_all attach_supervised
	# e2e.force=1: zpool import -f, the pool was never exported.
	step zpool_import import_pool
	step verify_synced sh -c "cd /tank/synced && sha256sum -c /tmp/src.sums"
	say "load files after the crash: $(find /tank/load -type f | wc -l) (as of the last transaction group the buckets hold)"
	step zpool_scrub zpool scrub -w tank
	show zpool status -vP tank
	step pool_healthy check_status
	step zpool_export zpool export tank
	step detach detach_supervised
	finish "PASS crash_recover"
}
