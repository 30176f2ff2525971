# shellcheck shell=sh
# The pool and the two phases of the guest's /init.

create_pool() {
	# shellcheck disable=SC2086 # NBD_DEVS is a list of devices
	case $LAYOUT in
	stripe)
		zpool create -f -o ashift=12 -O recordsize=1M -O compression=lz4 -O atime=off \
			-m /tank tank $NBD_DEVS
		;;
	special)
		# Blocks up to 64K, metadata included, go to the local disk; the 1 MiB
		# records go to the bucket.
		zpool create -f -o ashift=12 -O recordsize=1M -O compression=lz4 -O atime=off \
			-O special_small_blocks=64K -m /tank tank $NBD_DEVS special "$SPECIAL"
		;;
	*)
		echo "unknown layout $LAYOUT"
		return 1
		;;
	esac
}

import_pool() {
	_args=
	for _d in $NBD_DEVS $SPECIAL; do
		_args="$_args -d $_d"
	done
	[ "$FORCE" = 1 ] && _args="$_args -f"
	# shellcheck disable=SC2086 # a list of options
	zpool import $_args tank
}

# check_status requires a healthy pool, a scrub that found nothing, and no
# read, write or checksum error on any vdev.
check_status() {
	zpool status -x tank | grep -q 'is healthy' || return 1
	zpool status -v tank >/tmp/status || return 1
	grep -q 'errors: No known data errors' /tmp/status || return 1
	grep -Eq 'scrub repaired 0B in .* with 0 errors' /tmp/status || return 1
	awk '/NAME +STATE +READ +WRITE +CKSUM/ { on = 1; next }
		on && NF == 0 { on = 0 }
		on && NF >= 5 && ($3 != 0 || $4 != 0 || $5 != 0) { bad = 1 }
		END { exit bad }' /tmp/status
}

# check_special requires that the local special vdev holds the small files
# and the bucket's vdev at least the large records.
check_special() {
	zpool list -vHpP tank >/tmp/list || return 1
	_special=$(awk -v d="$SPECIAL" '$1 == d { print $3 }' /tmp/list)
	_bucket=$(awk -v d="${NBD_DEVS# }" '$1 == d { print $3 }' /tmp/list)
	say "allocated: special vdev $((_special / 1048576)) MiB, bucket vdev $((_bucket / 1048576)) MiB"
	[ "$_special" -ge $((4 << 20)) ] && [ "$_bucket" -ge $((MB << 20)) ]
}

find_disks() {
	# shellcheck disable=SC2034 # data.sh's save_state and load_state use it
	STATE=$(disk state) || fail "no state disk"
	SPECIAL=
	if [ "$LAYOUT" = special ]; then
		# The host made one partition on it (see e2e/image_test.go).
		SPECIAL=$(disk special)1 || fail "no special disk"
		[ -b "$SPECIAL" ] || fail "no partition $SPECIAL"
	fi
}

phase_create() {
	find_disks
	mkdir -p /tmp/state
	step generate make_data /tmp/src
	step checksum_before sums /tmp/src /tmp/state/snap.sums
	step zpool_create create_pool
	fill_pool
	show zfs list -t all -o name,used,refer,compressratio -r tank
	if [ "$END" = sync ]; then
		step sync sync
		step zpool_sync zpool sync tank
		# A crash seldom comes at a quiet moment: the server dies with this
		# write in flight, and the pool must import as of its last sync.
		dd if=/dev/urandom of=/tank/inflight bs=1M count=64 2>/dev/null &
		sleep 2
		# shellcheck disable=SC2034 # read by lib.sh's finish
		WAIT_FOR_KILL=1
		finish "PASS create $LAYOUT (synced, not exported)"
	fi
	step zpool_export zpool export tank
	step detach detach_all
	finish "PASS create $LAYOUT"
}

phase_verify() {
	find_disks
	step load_state load_state
	step zpool_import import_pool
	show zpool status -vP tank
	if [ -e /tank/inflight ]; then
		say "/tank/inflight, written while the server was killed: $(stat -c %s /tank/inflight) bytes"
	fi
	step verify_live check_sums /tank /tmp/state/live.sums
	step verify_snapshot check_sums /tank/.zfs/snapshot/e2e /tmp/state/snap.sums
	step zpool_scrub zpool scrub -w tank
	show zpool status -vP tank
	step pool_healthy check_status
	# Blocks that ZFS wrote and freed stay in the bucket until a TRIM tells
	# objbacker to delete them: with copy_data's fsyncs, 20-45 % of the
	# records were written twice.
	step zpool_trim zpool trim -w tank
	show zpool status -t tank
	show zpool list -v tank
	if [ "$LAYOUT" = special ]; then
		step special_vdev check_special
	fi
	step zpool_export zpool export tank
	step detach detach_all
	finish "PASS verify $LAYOUT"
}
