#!/usr/bin/env bash
# Installs what the tests need outside Go's module cache: Debian's NBD and
# QEMU client tools, and a MinIO server built from source (no other registry
# is reachable in CI). Idempotent: it only does what is missing, so the test
# command can run it every time.
#
# MinIO goes to $OBJBACKER_CACHE/bin (default ~/.cache/objbacker/bin); a stamp
# file beside it records the version, so a cached build is reused only when
# it is exactly the pinned one.
set -euo pipefail

# MinIO's tags are not semver; pin the pseudo-version @latest resolved to.
readonly MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# curl is for scripts/minio.sh's readiness poll.
readonly APT_PACKAGES=(libnbd-bin qemu-utils fio nbdkit python3-libnbd curl s3backer)
readonly CACHE=${OBJBACKER_CACHE:-$HOME/.cache/objbacker}

log() { printf 'deps: %s\n' "$*"; }

# timed runs a command and logs how long it took.
timed() {
	local what=$1 start=$SECONDS
	shift
	log "$what ..."
	if ! "$@"; then
		log "$what: FAILED after $((SECONDS - start)) s"
		return 1
	fi
	log "$what: done in $((SECONDS - start)) s"
}

as_root() {
	if ((EUID == 0)); then
		"$@"
	else
		sudo "$@"
	fi
}

missing_packages() {
	local pkg
	for pkg in "${APT_PACKAGES[@]}"; do
		if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
			printf '%s\n' "$pkg"
		fi
	done
}

install_packages() {
	local -a missing
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} == 0)); then
		log "apt: ${APT_PACKAGES[*]} already installed"
		return
	fi
	# The lock timeout rides out unattended-upgrades on a freshly booted machine.
	local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900)
	timed "apt-get update" as_root "${apt[@]}" update -qq
	timed "apt-get install ${missing[*]}" as_root "${apt[@]}" install -y -qq "${missing[@]}"
}

# build_minio keeps go's list of every module it downloads in a log, shown
# only when the build fails.
build_minio() {
	local build_log=$1
	if ! GOBIN="$CACHE/bin" go install "github.com/minio/minio@$MINIO_VERSION" >"$build_log" 2>&1; then
		tail -n 30 "$build_log" >&2
		return 1
	fi
}

install_minio() {
	local bin=$CACHE/bin/minio stamp=$CACHE/bin/minio.version
	if [[ -x $bin && -f $stamp && $(<"$stamp") == "$MINIO_VERSION" ]]; then
		log "minio $MINIO_VERSION already built at $bin"
		return
	fi
	command -v go >/dev/null || {
		log "go not found in PATH; it is needed to build MinIO"
		return 1
	}
	mkdir -p "$CACHE/bin"
	# The stamp is removed first and written last so that an interrupted build
	# is redone instead of trusted.
	rm -f "$stamp"
	local build_log=$CACHE/minio-build.log
	timed "go install minio@$MINIO_VERSION (2-5 min uncached, log in $build_log)" \
		build_minio "$build_log"
	printf '%s\n' "$MINIO_VERSION" >"$stamp"
}

start=$SECONDS
install_packages
install_minio
log "all dependencies present ($((SECONDS - start)) s)"
