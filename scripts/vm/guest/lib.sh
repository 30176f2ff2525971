# shellcheck shell=sh
# Reporting, steps and devices for the guest's /init.

say() { echo "E2E| $*"; }

# show runs a command whose output goes to the test log.
show() {
	"$@" 2>&1 | sed 's/^/E2E| /'
}

uptime_s() {
	read -r _up _ </proc/uptime
	echo "$_up"
}

# finish prints the verdict and powers off; with end=sync it waits instead,
# for the host to kill the server and then this machine.
finish() {
	echo "E2E-RESULT $*"
	if [ "${WAIT_FOR_KILL:-0}" = 1 ]; then
		echo "E2E-SYNCED"
		while :; do sleep 3600; done
	fi
	sync
	poweroff -f
	sleep 5
	echo o >/proc/sysrq-trigger
}

fail() {
	echo "E2E-FAIL: $*"
	echo "---- dmesg tail ----"
	dmesg | tail -n 60
	if [ -e /dev/zfs ]; then
		echo "---- zpool status ----"
		zpool status -vP 2>&1
	fi
	WAIT_FOR_KILL=0
	finish "FAIL $PHASE $LAYOUT: $*"
}

# step NAME COMMAND… runs a command, logs its time, and fails the phase
# if it fails, through STEP_FAIL (fail unless a phase sets another).
step() {
	_name=$1
	shift
	_t0=$(uptime_s)
	"$@"
	_rc=$?
	_t1=$(uptime_s)
	say "$(awk -v a="$_t0" -v b="$_t1" -v n="$_name" 'BEGIN { printf "step %-22s %6.2f s", n, b - a }') (rc $_rc)"
	[ "$_rc" -eq 0 ] || "${STEP_FAIL:-fail}" "$_name: exit status $_rc"
}

load_modules() {
	while read -r _ko _args; do
		# shellcheck disable=SC2086 # the parameters are separate words
		insmod "$_ko" $_args || return 1
	done </etc/objbacker-modules
	[ -e /dev/zfs ]
}

net_up() {
	ip link set lo up &&
		ip link set eth0 up &&
		ip addr add 10.0.2.15/24 dev eth0 &&
		ip route add default via 10.0.2.2
}

# disk SERIAL prints the virtio disk the host gave that serial number.
disk() {
	for _d in /sys/block/vd*; do
		if [ "$(cat "$_d/serial" 2>/dev/null)" = "$1" ]; then
			echo "/dev/${_d##*/}"
			return 0
		fi
	done
	return 1
}

# attach INDEX EXPORT connects /dev/nbdINDEX to an export of the host's
# objbacker and lets one request carry a whole 1 MiB block. With TLS=1 it
# uses TLS with the client certificate in /e2e/tls: nbd-client then hands
# the kernel one end of a socket pair per connection, and a process of its
# own relays between that and the TLS connection.
attach() {
	_dev=nbd$1
	_export=$2
	_tls=
	set -- -b 4096 -C "$CONNS"
	if [ "$TLS" = 1 ]; then
		set -- "$@" -cacertfile /e2e/tls/ca-cert.pem -certfile /e2e/tls/client-cert.pem \
			-keyfile /e2e/tls/client-key.pem -tlshostname localhost
		_tls=", TLS"
	fi
	nbd-client -N "$_export" 10.0.2.2 "$PORT" "/dev/$_dev" "$@" || return 1
	_i=0
	while [ "$(cat "/sys/block/$_dev/size")" = 0 ]; do
		_i=$((_i + 1))
		[ "$_i" -le 100 ] || return 1
		sleep 0.1
	done
	echo 1024 >"/sys/block/$_dev/queue/max_sectors_kb" || return 1
	say "/dev/$_dev: export $_export, $(($(cat "/sys/block/$_dev/size") / 2048)) MiB, -C $CONNS$_tls, max_sectors_kb $(cat "/sys/block/$_dev/queue/max_sectors_kb")"
}

# attach_all [ATTACH] attaches every export with ATTACH INDEX EXPORT
# (default attach: nbd-client) and sets NBD_DEVS to their devices.
attach_all() {
	NBD_DEVS=
	_n=0
	for _e in $(echo "$EXPORTS" | tr , ' '); do
		step "attach_$_e" "${1:-attach}" "$_n" "$_e"
		NBD_DEVS="$NBD_DEVS /dev/nbd$_n"
		_n=$((_n + 1))
	done
}

detach_all() {
	for _d in $NBD_DEVS; do
		nbd-client -d "$_d" || return 1
	done
}
