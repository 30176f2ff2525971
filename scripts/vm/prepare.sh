#!/usr/bin/env bash
# Prepares this host for the ZFS guest test (e2e/): QEMU, and a stock Debian
# bookworm guest kernel with an initramfs that holds ZFS, nbd-client and
# busybox. This host's own kernel needs neither NBD nor ZFS, nor KVM.
#
# The guest assets go to $OBJBACKER_CACHE/vm/<kernel ABI>-zfs<version>/
# (default ~/.cache/objbacker): vmlinuz, initrd.img (no /init: the test
# appends scripts/vm/guest/ at boot, so editing it needs no rebuild) and the
# ZFS modules. $OBJBACKER_CACHE/vm/current links to the directory in use.
#
# The native vdev test (e2e/vdev_test.go) gets a second guest, with the
# objbacker-patched ZFS modules, zpool and zfs that scripts/vm/module.sh
# builds, in $OBJBACKER_CACHE/vm/<kernel ABI>-zfs2.1.11-objbacker-<hash of
# the patches>/, linked as $OBJBACKER_CACHE/vm/vdev.
#
# Idempotent, and cheap when the assets exist. Building them costs one DKMS
# build of zfs-dkms for the guest kernel (3-9 min on 2 cores) and one build
# of the patched ZFS (about as long again); a changed initramfs recipe
# reuses the cached modules instead.
#
# OBJBACKER_VM_KVER pins the guest kernel ABI (e.g. 6.1.0-56-amd64); the
# default is the one linux-headers-amd64 points at, since the mirror keeps
# headers only for some of the kernels it carries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
readonly CACHE=${OBJBACKER_CACHE:-$HOME/.cache/objbacker}
# The test boots a cached guest with QEMU alone; building one needs the rest.
readonly RUN_PACKAGES=(qemu-system-x86)
readonly BUILD_PACKAGES=(busybox-static cpio kmod dkms nbd-client)
readonly CONTRIB_LIST=/etc/apt/sources.list.d/objbacker-contrib.sources

LOG_PREFIX=vm
# shellcheck source=scripts/lib.sh
source "$here/../lib.sh"

# The lock timeout rides out unattended-upgrades on a freshly booted machine.
apt_get() {
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 \
		-o Acquire::Retries=3 -y -qq --no-install-recommends "$@"
}

updated=0
apt_update() {
	((updated)) && return
	timed "apt-get update" apt_get update
	updated=1
}

# installed PKG[=VERSION] reports whether the package is installed, at that
# version if one is given.
installed() {
	local status version
	read -r status version < <(dpkg-query -W -f='${db:Status-Status} ${Version}\n' "${1%%=*}" 2>/dev/null) || return 1
	[[ $status == installed && ($1 != *=* || $version == "${1#*=}") ]]
}

# install PKG[=VERSION]... installs the packages that are missing or at
# another version.
install() {
	local pkg
	local -a missing=()
	for pkg in "$@"; do
		installed "$pkg" || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return
	apt_update
	timed "apt-get install ${missing[*]}" apt_get install "${missing[@]}"
}

# ensure_contrib adds Debian's contrib component, where zfs-dkms and
# zfsutils-linux live, beside each deb822 entry that has only main; a stock
# bookworm image has no contrib.
ensure_contrib() {
	local sources=/etc/apt/sources.list.d/debian.sources
	if grep -rqsE '^(Components:.*\bcontrib\b|deb .*\bcontrib\b)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return
	fi
	[[ -f $sources ]] || {
		log "no contrib component in apt's sources, and no $sources to derive it from"
		return 1
	}
	sed -E 's/^Components:.*/Components: contrib/' "$sources" | as_root tee "$CONTRIB_LIST" >/dev/null
	log "added the contrib component in $CONTRIB_LIST"
	updated=0
	apt_update
}

# guest_kver prints the guest kernel ABI from apt's current lists, or
# nothing if they do not know it.
guest_kver() {
	if [[ -n ${OBJBACKER_VM_KVER:-} ]]; then
		printf '%s\n' "$OBJBACKER_VM_KVER"
		return
	fi
	apt-cache depends linux-headers-amd64 2>/dev/null |
		awk '/Depends: linux-headers-[0-9]/ { sub("linux-headers-", "", $2); print $2; exit }'
}

zfs_version() {
	apt-cache policy zfs-dkms 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# recipe fingerprints what goes into the initramfs, so that editing it
# rebuilds the initramfs even when the kernel and ZFS stay the same.
recipe() { sha256sum "$here/initramfs.sh" | cut -c1-16; }

assets_ready() {
	local dir=$1
	[[ -s $dir/vmlinuz && -s $dir/initrd.img && -f $dir/initrd.recipe &&
		$(<"$dir/initrd.recipe") == "$(recipe)" ]]
}

# build_modules builds the ZFS modules for the guest kernel with DKMS and
# keeps a copy in $dir/zfs. Only the headers are installed: the kernel
# package's postinst would run update-initramfs for minutes.
build_modules() {
	local dir=$1 kver=$2 zver=$3 kmod
	install "linux-headers-$kver" "zfs-dkms=$zver" "zfsutils-linux=$zver"
	# zfs-dkms's postinst builds for every kernel with headers; this covers a
	# zfs-dkms installed before the headers.
	if ! modinfo -k "$kver" zfs >/dev/null 2>&1; then
		timed "dkms install zfs/${zver%%-*} for $kver" as_root dkms install "zfs/${zver%%-*}" -k "$kver"
	fi
	# A kernel module and a userland of different versions compile, then
	# fail at ioctl time.
	kmod=$(modinfo -k "$kver" -F version zfs)
	if [[ $kmod != "${zver%%-*}"* ]]; then
		log "zfs kernel module $kmod does not match zfsutils-linux $zver"
		return 1
	fi
	rm -rf "$dir/zfs.tmp" "$dir/zfs"
	mkdir -p "$dir/zfs.tmp"
	cp "$(dirname "$(modinfo -k "$kver" -n zfs)")"/*.ko "$dir/zfs.tmp/"
	mv "$dir/zfs.tmp" "$dir/zfs"
}

# build_initramfs extracts (never installs) the guest kernel package and
# packs the initramfs from its modules, the cached ZFS modules and this
# host's zpool, zfs (or those in ZFS_BIN), nbd-client and busybox.
build_initramfs() {
	local dir=$1 kver=$2 zver=$3 zfsbin=${4:-}
	install "${BUILD_PACKAGES[@]}" "zfsutils-linux=$zver"
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-vm.XXXXXX")
	# As root, apt would drop to the _apt user, who cannot write to tmp.
	(cd "$tmp" && timed "apt-get download linux-image-$kver" \
		apt-get download -qq -o APT::Sandbox::User=root "linux-image-$kver")
	timed "extracting linux-image-$kver" dpkg-deb -x "$tmp"/linux-image-"$kver"_*.deb "$tmp/root"
	# The package ships no modules.dep: its postinst makes it.
	depmod -b "$tmp/root" "$kver"
	timed "building the initramfs" "$here/initramfs.sh" "$dir/initrd.img.tmp" "$kver" "$tmp/root" "$dir/zfs" ${zfsbin:+"$zfsbin"}
	cp "$tmp/root/boot/vmlinuz-$kver" "$dir/vmlinuz"
	mv "$dir/initrd.img.tmp" "$dir/initrd.img"
	recipe >"$dir/initrd.recipe"
}

tmp=
cleanup() { [[ -z $tmp ]] || rm -rf "$tmp"; }
trap cleanup EXIT

# asset_dir prints the cache directory for the guest that apt's lists name.
asset_dir() {
	local kver zver
	kver=$(guest_kver)
	zver=$(zfs_version)
	[[ -n $kver && -n $zver ]] || return 1
	printf '%s\n' "$CACHE/vm/$kver-zfs$zver"
}

main() {
	local start=$SECONDS dir kver zver
	install "${RUN_PACKAGES[@]}"
	ensure_contrib
	# Cached assets are used as the present lists name them. Anything else
	# refreshes the lists first: stale ones may name a kernel the mirror no
	# longer has.
	if ! dir=$(asset_dir) || ! assets_ready "$dir"; then
		apt_update
		dir=$(asset_dir) || {
			log "apt knows no linux-headers-amd64 or no zfs-dkms"
			return 1
		}
	fi
	kver=$(guest_kver)
	zver=$(zfs_version)
	if assets_ready "$dir"; then
		log "guest kernel $kver with zfs $zver already prepared in $dir"
	else
		log "preparing guest kernel $kver with zfs $zver in $dir"
		mkdir -p "$dir"
		if [[ ! -s $dir/zfs/zfs.ko ]]; then
			timed "building the ZFS modules (DKMS, 3-9 min)" build_modules "$dir" "$kver" "$zver"
		fi
		build_initramfs "$dir" "$kver" "$zver"
	fi
	ln -sfn "$(basename "$dir")" "$CACHE/vm/current"
	log "guest assets ready in $CACHE/vm/current ($((SECONDS - start)) s)"
	prepare_vdev "$kver" "$zver"
}

# prepare_vdev makes the native vdev test's guest: the patched ZFS from
# module.sh (cached by kernel and patch hash), and its own initramfs.
prepare_vdev() {
	local kver=$1 zver=$2 start=$SECONDS dir
	dir=$CACHE/vm/$kver-zfs2.1.11-objbacker-$("$here/module.sh" --key)
	if assets_ready "$dir" && [[ -s $dir/build.key ]]; then
		log "guest kernel $kver with objbacker-patched zfs already prepared in $dir"
	else
		log "preparing guest kernel $kver with objbacker-patched zfs in $dir"
		mkdir -p "$dir"
		timed "building the patched ZFS (module.sh)" "$here/module.sh" "$kver" "$dir"
		rm -f "$dir/initrd.recipe"
		build_initramfs "$dir" "$kver" "$zver" "$dir/bin"
	fi
	ln -sfn "$(basename "$dir")" "$CACHE/vm/vdev"
	# Builds of earlier patches are of no further use.
	local old
	for old in "$CACHE/vm/$kver"-zfs2.1.11-objbacker-*; do
		[[ $old == "$dir" || ! -d $old ]] || rm -rf "$old"
	done
	log "native vdev guest assets ready in $CACHE/vm/vdev ($((SECONDS - start)) s)"
}

main "$@"
