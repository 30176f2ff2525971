# shellcheck shell=sh
# The guest's data set and its checksums.

# make_data DIR writes the data set: MB MiB of random data in four files of
# whole 1 MiB records, a few files of one record smaller than 1 MiB (partial
# objects on the server), and a tree of 600 small files of 1 B to 32 KiB.
make_data() {
	mkdir -p "$1/tree" || return 1
	for _i in 0 1 2 3; do
		dd if=/dev/urandom of="$1/data$_i" bs=1M count=$((MB / 4)) 2>/dev/null || return 1
	done
	for _k in 1 3 5 7; do
		head -c $((_k * 131072 + 4321)) /dev/urandom >"$1/tree/medium$_k" || return 1
	done
	_d=0
	while [ $_d -lt 20 ]; do
		mkdir -p "$1/tree/d$_d/sub" || return 1
		_f=0
		while [ $_f -lt 30 ]; do
			_sub=
			[ $_f -lt 15 ] || _sub=sub/
			head -c $(((_d * 30 + _f) * 7919 % 32768 + 1)) /dev/urandom >"$1/tree/d$_d/$_sub$_f" || return 1
			_f=$((_f + 1))
		done
		_d=$((_d + 1))
	done
}

# copy_data SRC DST copies the data set in with 1 MiB writes.
copy_data() {
	for _i in 0 1 2 3; do
		dd if="$1/data$_i" of="$2/data$_i" bs=1M conv=fsync 2>/dev/null || return 1
	done
	cp -a "$1/tree" "$2/" && sync
}

# change_data SRC DST makes the same changes after the snapshot in both
# copies: part of a data file overwritten, a directory removed, a file added.
change_data() {
	head -c 8388608 /dev/urandom >/tmp/patch || return 1
	for _r in "$1" "$2"; do
		dd if=/tmp/patch of="$_r/data3" bs=1M conv=notrunc,fsync 2>/dev/null &&
			rm -r "$_r/tree/d0" &&
			cp /tmp/patch "$_r/tree/after-snapshot" || return 1
	done
	rm /tmp/patch
	sync
}

# sums DIR OUT records the sha256 of every file under DIR, sorted by name.
sums() {
	(cd "$1" && find . -type f | sort | xargs sha256sum) >"$2"
}

# check_sums DIR SUMS checks every file listed in SUMS, and that DIR holds
# no other file but /tank/inflight (see phase_create), which the last sync
# did not cover.
check_sums() {
	(cd "$1" && sha256sum -c "$2") >/tmp/check.out 2>&1
	_rc=$?
	_bad=$(grep -vc ': OK$' /tmp/check.out)
	say "$1: $(wc -l <"$2") files checked, $_bad bad"
	grep -v ': OK$' /tmp/check.out | head -n 20 | sed 's/^/E2E| /'
	cut -c67- "$2" >/tmp/expected.list
	(cd "$1" && find . -type f ! -path ./inflight | sort) >/tmp/found.list
	if ! diff /tmp/expected.list /tmp/found.list >/tmp/list.diff; then
		say "$1: the file list differs:"
		head -n 20 /tmp/list.diff | sed 's/^/E2E| /'
		return 1
	fi
	[ "$_rc" -eq 0 ] && [ "$_bad" -eq 0 ]
}

# fill_pool writes the data set in /tmp/src into the new pool, snapshots
# it, changes it, and saves the checksums for the verify boot.
fill_pool() {
	step write copy_data /tmp/src /tank
	step zfs_snapshot zfs snapshot tank@e2e
	step change change_data /tmp/src /tank
	step checksum_after sums /tmp/src /tmp/state/live.sums
	step save_state save_state
	rm -rf /tmp/src
	show zpool list -v tank
}

# save_state and load_state carry the checksums from the create boot to the
# verify boot on the state disk, a tar archive written over the raw device.
save_state() {
	tar -cf "$STATE" -C /tmp/state . && sync
}

load_state() {
	mkdir -p /tmp/state && tar -xf "$STATE" -C /tmp/state && [ -s /tmp/state/live.sums ] && [ -s /tmp/state/snap.sums ]
}
