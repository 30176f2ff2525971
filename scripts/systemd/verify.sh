#!/usr/bin/env bash
# verify.sh: checks the units of this directory with systemd-analyze verify,
# in a scratch root that holds the system's own units, objbacker built from
# this tree at /usr/local/bin and a stand-in /sbin/zpool (the units' paths).
# Any warning fails, not only errors.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/sbin" "$root/etc/systemd/system" "$root/lib/systemd"
cp -r /lib/systemd/system "$root/lib/systemd/"
(cd "$here/../.." && go build -o "$root/usr/local/bin/objbacker" .)
printf '#!/bin/sh\n' >"$root/sbin/zpool"
chmod +x "$root/sbin/zpool"
cp "$here"/*.service "$here"/*.target "$root/etc/systemd/system/"
out=$(systemd-analyze verify --man=no --root="$root" objbacker.service objbacker-attach@nbd0.service \
	objbacker-pool@tank.service objbacker-devices.target 2>&1) || {
	printf '%s\n' "$out" >&2
	exit 1
}
if [[ -n $out ]]; then
	printf 'systemd-analyze verify warned:\n%s\n' "$out" >&2
	exit 1
fi
echo "systemd units: verified (systemd-analyze $(systemd-analyze --version | awk 'NR == 1 {print $2}'))"
