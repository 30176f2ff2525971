#!/usr/bin/env bash
# Builds the objbacker-patched OpenZFS for the guest of the native vdev test
# (e2e/vdev_test.go, docs/vdev.md): the kernel modules for the guest kernel
# and zpool and zfs, from Debian's source package of OpenZFS 2.1.11 with
# kernel/module/patches/*.patch applied and the wire header
# kernel/module/include/zfs_objbacker.h copied in.
#
#   scripts/vm/module.sh --key          prints the hash the build depends on
#   scripts/vm/module.sh KVER OUT       builds into OUT: zfs/*.ko, bin/zpool,
#                                       bin/zfs, and the stamp OUT/build.key
#
# Idempotent: OUT whose build.key matches is left alone. Called by
# scripts/vm/prepare.sh, which names OUT after KVER and the key, packs the
# initramfs, and links $OBJBACKER_CACHE/vm/vdev to it.
#
# One configure (--with-config=all) serves both halves; the modules are
# built with kbuild as DKMS would build them (make -C module), but from this
# tree, so nothing is registered with DKMS or installed on the host. zpool
# and zfs link their ZFS libraries statically, so the guest cannot pick up
# a host's unpatched libzfs. The source tarball is fetched once with
# apt-get source (a private list directory; apt's own lists are untouched)
# into $OBJBACKER_CACHE/src and checked against its SHA-256.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
root=$(cd "$here/../.." && pwd)
readonly root
LOG_PREFIX=vm
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

readonly CACHE=${OBJBACKER_CACHE:-$HOME/.cache/objbacker}
readonly ZFS_VERSION=2.1.11
readonly ORIG=zfs-linux_$ZFS_VERSION.orig.tar.gz
readonly ORIG_SHA256=a54fe4e854d0a207584f1799a80e165eae66bc30dc8e8c96a1f99ed9d4d8ceb2
readonly MIRROR=${OBJBACKER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly BUILD_PACKAGES=(gcc make patch libc6-dev dpkg-dev pkg-config libblkid-dev uuid-dev libudev-dev libssl-dev
	zlib1g-dev libaio-dev libattr1-dev libelf-dev libtirpc-dev)
# What zpool and zfs need from lib/, in link order.
readonly USER_DIRS=(lib/libspl lib/libavl lib/libefi lib/libtpool lib/libnvpair lib/libuutil
	lib/libzutil lib/libzfs_core lib/libshare lib/libzfs cmd/zpool cmd/zfs)

# key hashes everything the build depends on but the kernel: the patches,
# the wire header, and this script.
key() {
	cat "$root"/kernel/module/patches/*.patch "$root/kernel/module/include/zfs_objbacker.h" \
		"${BASH_SOURCE[0]}" | sha256sum | cut -c1-12
}

# install_missing installs the Debian packages that are not installed.
install_missing() {
	local pkg
	local -a missing=()
	for pkg in "$@"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]] || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return
	local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
	timed "apt-get update" as_root "${apt[@]}" update -qq
	timed "apt-get install ${missing[*]}" as_root "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
}

orig_ok() {
	[[ -s $1 && $(sha256sum "$1" | cut -d' ' -f1) == "$ORIG_SHA256" ]]
}

# fetch_source downloads Debian's zfs-linux source package with apt-get
# source, through a sources list and list directory of its own.
fetch_source() {
	local dest=$CACHE/src/$ORIG codename apt_dir
	orig_ok "$dest" && return
	codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-bookworm}")
	apt_dir=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-apt.XXXXXX")
	mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,parts,get}
	printf 'deb-src %s %s contrib\n' "$MIRROR" "$codename" >"$apt_dir/sources.list"
	local -a opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
		-o APT::Sandbox::User=root -o Acquire::Retries=3)
	timed "apt-get update (deb-src $codename contrib)" apt-get "${opts[@]}" -qq update
	(cd "$apt_dir/get" && timed "apt-get source zfs-linux" apt-get "${opts[@]}" -qq source --download-only zfs-linux)
	if ! orig_ok "$apt_dir/get/$ORIG"; then
		log "apt-get source zfs-linux gave no $ORIG with SHA-256 $ORIG_SHA256:"
		ls -l "$apt_dir/get" >&2
		rm -rf "$apt_dir"
		return 1
	fi
	mkdir -p "$CACHE/src"
	mv "$apt_dir/get/$ORIG" "$dest"
	rm -rf "$apt_dir"
}

# run_logged runs a command with its output in a log file, whose tail is
# shown if it fails.
run_logged() {
	local logfile=$1
	shift
	if ! "$@" >>"$logfile" 2>&1; then
		tail -n 40 "$logfile" >&2
		return 1
	fi
}

build_user() {
	local tree=$1 logfile=$2 dir
	for dir in "${USER_DIRS[@]}"; do
		run_logged "$logfile" nice -n 10 make -C "$tree/$dir" -j"$(nproc)" || return 1
	done
}

work=
cleanup() { [[ -z $work ]] || rm -rf "$work"; }
trap cleanup EXIT

build() {
	local kver=$1 out=$2 k tree kdir ksrc logfile start=$SECONDS
	k=$(key)
	if [[ -f $out/build.key && $(<"$out/build.key") == "$k" && -s $out/zfs/zfs.ko && -x $out/bin/zpool ]]; then
		log "patched zfs $ZFS_VERSION ($k) for $kver already built in $out"
		return
	fi
	install_missing "${BUILD_PACKAGES[@]}" "linux-headers-$kver"
	fetch_source
	kdir=/usr/src/linux-headers-$kver
	# Debian splits the headers: the sources in ...-common, the build
	# (.config, Module.symvers) in ...-amd64.
	ksrc=/usr/src/linux-headers-${kver%-*}-common
	[[ -d $ksrc ]] || ksrc=$kdir
	work=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-zfs.XXXXXX")
	tree=$work/zfs-$ZFS_VERSION
	mkdir -p "$out"
	logfile=$out/build.log
	: >"$logfile"
	tar -xzf "$CACHE/src/$ORIG" -C "$work"
	cp "$root/kernel/module/include/zfs_objbacker.h" "$tree/include/sys/zfs_objbacker.h"
	local patch
	for patch in "$root"/kernel/module/patches/*.patch; do
		patch -d "$tree" -p1 --quiet --forward <"$patch" || {
			log "$patch does not apply to zfs $ZFS_VERSION"
			return 1
		}
	done
	# As zfs-dkms configures it (dkms.conf), plus user space.
	if ! (cd "$tree" && timed "configure" run_logged "$logfile" nice -n 10 ./configure \
		--prefix=/usr --with-config=all --with-linux="$ksrc" --with-linux-obj="$kdir" \
		--disable-shared --enable-static --disable-pyzfs --disable-sysvinit --disable-systemd) ||
		! timed "building the kernel modules (kbuild)" run_logged "$logfile" nice -n 10 make -C "$tree/module" -j"$(nproc)" ||
		! timed "building zpool and zfs" build_user "$tree" "$logfile"; then
		log "build log: $logfile"
		return 1
	fi
	rm -rf "${out:?}/zfs" "${out:?}/bin" "${out:?}/build.key"
	mkdir -p "$out/zfs" "$out/bin"
	find "$tree/module" -name '*.ko' -exec cp {} "$out/zfs/" \;
	# Debug info would make the initramfs ten times larger.
	strip --strip-debug "$out"/zfs/*.ko
	cp "$tree/cmd/zpool/zpool" "$tree/cmd/zfs/zfs" "$out/bin/"
	strip "$out"/bin/*
	printf '%s\n' "$k" >"$out/build.key"
	log "patched zfs $ZFS_VERSION ($k) for $kver built in $out in $((SECONDS - start)) s"
}

case ${1:-} in
--key)
	key
	;;
*)
	(($# == 2)) || {
		printf 'usage: %s --key | KVER OUT\n' "$0" >&2
		exit 2
	}
	build "$1" "$2"
	;;
esac
