# shellcheck shell=sh
# The restart phase of the guest's /init (e2e/restart_test.go): the exports
# are attached with objbacker attach (netlink, supervised) instead of
# nbd-client, a pool is striped over them, and a write and read load with
# checksums runs while the host restarts objbacker serve and cuts the
# network between them for a while (e2e/netcut_test.go). The host says
# when to stop on http://10.0.2.2:CTL/ (e2e.ctl=PORT): "run" or "stop".
#
#   restart  attach, create, load until told to stop, then require: no
#            error in the load, every file's checksum, zero read, write and
#            checksum errors, a clean scrub, the supervisors still running
#            and their reconnects; export and detach

ATTACH_ARGS="--timeout 30s --dead-conn-timeout 120s"

# attach_supervised INDEX EXPORT starts objbacker attach for /dev/nbdINDEX
# in the background and waits until the device has its size.
attach_supervised() {
	_dev=nbd$1
	# shellcheck disable=SC2086 # a list of options
	/bin/objbacker attach --device "/dev/$_dev" --connections "$CONNS" $ATTACH_ARGS \
		"nbd://10.0.2.2:$PORT/$2" >"/tmp/attach-$_dev.out" 2>"/tmp/attach-$_dev.log" &
	echo $! >"/tmp/attach-$_dev.pid"
	_i=0
	until grep -q "^/dev/$_dev\$" "/tmp/attach-$_dev.out" 2>/dev/null; do
		_i=$((_i + 1))
		if [ "$_i" -gt 300 ] || ! kill -0 "$(cat "/tmp/attach-$_dev.pid")" 2>/dev/null; then
			sed 's/^/E2E| attach: /' "/tmp/attach-$_dev.log"
			return 1
		fi
		sleep 0.1
	done
	say "/dev/$_dev: export $2, $(($(cat "/sys/block/$_dev/size") / 2048)) MiB, $CONNS connections, max_sectors_kb $(cat "/sys/block/$_dev/queue/max_sectors_kb"), supervisor pid $(cat "/tmp/attach-$_dev.pid")"
}

# supervisors_alive fails, with their logs, if a supervisor exited: it
# refused to reconnect (or failed).
supervisors_alive() {
	for _d in $NBD_DEVS; do
		_p=$(cat "/tmp/attach-${_d#/dev/}.pid")
		if ! kill -0 "$_p" 2>/dev/null; then
			say "the supervisor of $_d exited:"
			tail -n 5 "/tmp/attach-${_d#/dev/}.log" | sed 's/^/E2E| /'
			return 1
		fi
	done
}

# load writes copies of the four source files into the pool, each checked
# against its checksum when read back from the pool an iteration later,
# with a zpool sync every fourth file, until the host says stop. It
# counts its iterations in /tmp/load.n and its errors in /tmp/load.err.
load() {
	: >/tmp/load.err
	_k=0
	while :; do
		_s=$((_k % 4))
		if ! dd if="/tmp/src/s$_s" of="/tank/load/f$_k" bs=1M 2>/tmp/dd.err; then
			echo "write f$_k: $(cat /tmp/dd.err)" >>/tmp/load.err
		fi
		if [ "$_k" -gt 0 ]; then
			_p=$((_k - 1))
			_want=$(sed -n "$((_p % 4 + 1))p" /tmp/src.sums | cut -d' ' -f1)
			_got=$(sha256sum "/tank/load/f$_p" 2>>/tmp/load.err | cut -d' ' -f1)
			[ "$_got" = "$_want" ] || echo "read f$_p: sha256 $_got, want $_want" >>/tmp/load.err
		fi
		if [ $((_k % 4)) = 3 ] && ! zpool sync tank 2>>/tmp/load.err; then
			echo "zpool sync after f$_k failed" >>/tmp/load.err
		fi
		_k=$((_k + 1))
		echo "$_k" >/tmp/load.n
		[ "$(wget -q -O - "http://10.0.2.2:$CTL/" 2>/dev/null)" != stop ] || break
	done
}

# run_load starts the load, tells the host, and waits for it while it
# checks that the supervisors are alive.
run_load() {
	load &
	_load=$!
	echo "E2E-LOAD-RUNNING"
	_t=0
	while kill -0 "$_load" 2>/dev/null; do
		supervisors_alive || return 1
		sleep 1
		_t=$((_t + 1))
		[ $((_t % 15)) != 0 ] || say "load: $(cat /tmp/load.n 2>/dev/null || echo 0) files after ${_t} s"
	done
	wait "$_load"
	say "load: $(cat /tmp/load.n) files of $SRC_MB MiB written and read back, $(wc -l </tmp/load.err) errors"
	sed 's/^/E2E| load error: /' /tmp/load.err | head -n 20
	[ ! -s /tmp/load.err ]
}

# check_load_files checks every file the load wrote, after the restarts.
check_load_files() {
	_n=$(cat /tmp/load.n)
	_k=0
	_bad=0
	while [ "$_k" -lt "$_n" ]; do
		_want=$(sed -n "$((_k % 4 + 1))p" /tmp/src.sums | cut -d' ' -f1)
		_got=$(sha256sum "/tank/load/f$_k" | cut -d' ' -f1)
		[ "$_got" = "$_want" ] || { say "f$_k: sha256 $_got, want $_want"; _bad=$((_bad + 1)); }
		_k=$((_k + 1))
	done
	say "$_n load files checked, $_bad bad"
	[ "$_bad" = 0 ]
}

make_sources() {
	mkdir -p /tmp/src || return 1
	for _i in 0 1 2 3; do
		dd if=/dev/urandom of="/tmp/src/s$_i" bs=1M count="$SRC_MB" 2>/dev/null || return 1
	done
	(cd /tmp/src && sha256sum s0 s1 s2 s3) >/tmp/src.sums
}

reconnects() {
	for _d in $NBD_DEVS; do
		_l=/tmp/attach-${_d#/dev/}.log
		say "$_d: $(grep -c 'msg=reconnected' "$_l") reconnects, $(grep -c 'clean restart' "$_l") clean continuations"
		grep -v 'max_sectors_kb set' "$_l" | tail -n 30 | sed "s/^/E2E| attach ${_d#/dev/}: /"
	done
	dmesg | grep -i 'nbd' | tail -n 30 | sed 's/^/E2E| dmesg: /'
}

stop_supervisors() {
	for _d in $NBD_DEVS; do
		kill -TERM "$(cat "/tmp/attach-${_d#/dev/}.pid")" 2>/dev/null
	done
	return 0
}

phase_restart() {
	SRC_MB=$((MB / 4))
	[ "$SRC_MB" -ge 1 ] || SRC_MB=1
	step generate make_sources
	attach_all attach_supervised
	# shellcheck disable=SC2086 # NBD_DEVS is a list of devices
	step zpool_create zpool create -f -o ashift=12 -O recordsize=1M -O compression=off -O atime=off \
		-m /tank tank $NBD_DEVS
	mkdir -p /tank/load
	step load run_load
	show zpool status -vP tank
	reconnects
	step supervisors supervisors_alive
	step verify_load check_load_files
	step zpool_scrub zpool scrub -w tank
	show zpool status -vP tank
	step pool_healthy check_status
	step zpool_export zpool export tank
	step detach detach_supervised
	finish "PASS restart"
}

# detach_supervised disconnects each device; its supervisor then exits.
detach_supervised() {
	for _d in $NBD_DEVS; do
		/bin/objbacker detach "$_d" || return 1
	done
	for _d in $NBD_DEVS; do
		_p=$(cat "/tmp/attach-${_d#/dev/}.pid")
		_i=0
		while kill -0 "$_p" 2>/dev/null; do
			_i=$((_i + 1))
			[ "$_i" -le 100 ] || { stop_supervisors; say "the supervisor of $_d did not exit after the detach"; return 1; }
			sleep 0.1
		done
	done
}
