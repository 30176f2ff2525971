#!/usr/bin/env bash
# Installs what the tests need outside Go's module cache: Debian's NBD and
# QEMU client tools, and the emulators of the three clouds: MinIO and
# fake-gcs-server built from source (no other registry is reachable in CI)
# and Azurite from npm. Idempotent: it only does what is missing, so the test
# command can run it every time.
#
# The Go servers go to $OBJBACKER_CACHE/bin (default ~/.cache/objbacker/bin)
# and Azurite to $OBJBACKER_CACHE/azurite; a stamp file beside each records
# the version, so a cached install is reused only when it is exactly the
# pinned one.
set -euo pipefail

# MinIO's tags are not semver; pin the pseudo-version @latest resolved to.
readonly MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
readonly FAKEGCS_VERSION=v1.56.1
readonly AZURITE_VERSION=3.35.0
# curl is for scripts/minio.sh's readiness poll.
readonly APT_PACKAGES=(libnbd-bin qemu-utils fio nbdkit python3-libnbd curl s3backer systemd)
readonly CACHE=${OBJBACKER_CACHE:-$HOME/.cache/objbacker}

LOG_PREFIX=deps
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

# go_build keeps go's list of every module it downloads in a log, shown
# only when the build fails.
go_build() {
	local module=$1 build_log=$2
	if ! GOBIN="$CACHE/bin" go install "$module" >"$build_log" 2>&1; then
		tail -n 30 "$build_log" >&2
		return 1
	fi
}

# install_go_server NAME MODULE VERSION builds $CACHE/bin/NAME.
install_go_server() {
	local name=$1 module=$2 version=$3
	local bin=$CACHE/bin/$name stamp=$CACHE/bin/$name.version
	if [[ -x $bin && -f $stamp && $(<"$stamp") == "$version" ]]; then
		log "$name $version already built at $bin"
		return
	fi
	command -v go >/dev/null || {
		log "go not found in PATH; it is needed to build $name"
		return 1
	}
	mkdir -p "$CACHE/bin"
	# The stamp is removed first and written last so that an interrupted build
	# is redone instead of trusted.
	rm -f "$stamp"
	local build_log=$CACHE/$name-build.log
	timed "go install $name@$version (2-5 min uncached, log in $build_log)" \
		go_build "$module@$version" "$build_log"
	printf '%s\n' "$version" >"$stamp"
}

# npm_install keeps npm's output in a log, shown only when it fails.
npm_install() {
	local dir=$1 package=$2 install_log=$3
	if ! npm install --prefix "$dir" --no-audit --no-fund "$package" >"$install_log" 2>&1; then
		tail -n 30 "$install_log" >&2
		return 1
	fi
}

install_azurite() {
	local dir=$CACHE/azurite
	local bin=$dir/node_modules/.bin/azurite-blob stamp=$dir/azurite.version
	if [[ -x $bin && -f $stamp && $(<"$stamp") == "$AZURITE_VERSION" ]]; then
		log "azurite $AZURITE_VERSION already installed at $bin"
		return
	fi
	command -v npm >/dev/null || {
		log "npm not found in PATH; it is needed to install Azurite"
		return 1
	}
	# A clean directory, so that no package of an older version lingers.
	rm -rf "$dir"
	mkdir -p "$dir"
	local install_log=$CACHE/azurite-install.log
	timed "npm install azurite@$AZURITE_VERSION (about 30 s uncached, log in $install_log)" \
		npm_install "$dir" "azurite@$AZURITE_VERSION" "$install_log"
	printf '%s\n' "$AZURITE_VERSION" >"$stamp"
}

start=$SECONDS
install_packages
install_go_server minio github.com/minio/minio "$MINIO_VERSION"
install_go_server fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKEGCS_VERSION"
install_azurite
log "all dependencies present ($((SECONDS - start)) s)"
