#!/usr/bin/env bash
# Packs the guest's initramfs for the ZFS test: busybox, this host's zpool,
# zfs and nbd-client with their libraries, and the kernel modules for NBD,
# virtio (network, disks, entropy) and ZFS, with their load order in
# /etc/objbacker-modules for busybox insmod. It has no /init: the test
# appends one (scripts/vm/guest/) at boot.
#
#   scripts/vm/initramfs.sh OUT KVER KERNEL_ROOT ZFS_MODULES [ZFS_BIN]
#
# KERNEL_ROOT holds lib/modules/KVER with its modules.dep (an extracted
# linux-image package after depmod -b); ZFS_MODULES holds the DKMS-built
# spl.ko, zfs.ko, … for KVER. ZFS_BIN, if given, holds the zpool and zfs to
# pack instead of this host's (the objbacker-patched ones, scripts/vm/module.sh).
# Called by scripts/vm/prepare.sh.
set -euo pipefail

(($# == 4 || $# == 5)) || {
	printf 'usage: %s OUT KVER KERNEL_ROOT ZFS_MODULES [ZFS_BIN]\n' "$0" >&2
	exit 2
}
out=$1 kver=$2 kroot=$3 zfsdir=$4 zfsbin=${5:-}
moddir=$kroot/lib/modules/$kver
readonly DRIVERS=(virtio_pci virtio_net virtio_blk virtio_rng nbd)

stage=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,etc/zfs,proc,sys,dev,run,tmp,var/tmp,mnt}

# Applet links go first and never replace the real programs copied below.
cp /bin/busybox "$stage/bin/busybox"
for applet in $("$stage/bin/busybox" --list-full); do
	[[ -e $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done

copy_with_libs() {
	local bin=$1 lib
	rm -f "$stage/sbin/${bin##*/}"
	cp -L "$bin" "$stage/sbin/"
	ldd "$bin" | awk '/=>/ { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
		case $lib in
		*ld-linux*) cp -Ln "$lib" "$stage/lib64/" ;;
		?*) cp -Ln "$lib" "$stage/lib/x86_64-linux-gnu/" ;;
		esac
	done
}
for prog in zpool zfs nbd-client; do
	if [[ -n $zfsbin && $prog != nbd-client ]]; then
		copy_with_libs "$zfsbin/$prog"
	else
		copy_with_libs "$(command -v "$prog")"
	fi
	ln -sf "/sbin/$prog" "$stage/usr/sbin/$prog"
done

smod=$stage/lib/modules/$kver
mkdir -p "$smod/updates/dkms"
cp "$moddir"/modules.{order,builtin,builtin.modinfo} "$smod/"
cp "$zfsdir"/*.ko "$smod/updates/dkms/"
for driver in "${DRIVERS[@]}"; do
	# modules.dep spells some files with dashes (virtio-rng.ko).
	pattern=${driver//_/[-_]}
	path=$(grep -E "(^|/)$pattern\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1)
	[[ -n $path ]] || {
		printf 'initramfs: module %s is not in %s/modules.dep\n' "$driver" "$moddir" >&2
		exit 1
	}
	# shellcheck disable=SC2046 # modules.dep separates paths with spaces
	for mod in "$path" $(grep -E "^$path:" "$moddir/modules.dep" | cut -d: -f2-); do
		mkdir -p "$smod/$(dirname "$mod")"
		cp -n "$moddir/$mod" "$smod/$mod"
	done
done
depmod -b "$stage" "$kver"

# modprobe on this host works out the order from the stage's modules.dep.
for module in "${DRIVERS[@]}" zfs; do
	modprobe -d "$stage" -S "$kver" --show-depends --ignore-install "$module" |
		awk -v stage="$stage" '$1 == "insmod" { sub("^" stage, "", $2); print $2 }'
done | awk '!seen[$0]++' |
	# The guest has no modprobe.d, which on a real host gives nbd max_part.
	sed -E 's#/nbd\.ko$#& nbds_max=4 max_part=15#' >"$stage/etc/objbacker-modules"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"

# Uncompressed: it unpacks faster under TCG, and the test appends a second
# archive with /init to it.
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$out"
printf 'initramfs: %s (%s), modules:\n' "$out" "$(du -h "$out" | cut -f1)"
sed 's/^/  /' "$stage/etc/objbacker-modules"
