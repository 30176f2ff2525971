#!/usr/bin/env bash
# The project's test command, run by CI (.ci/run) and by developers:
#
#   scripts/test.sh                          everything
#   scripts/test.sh -run X ./objstore/...    extra go test arguments
#
# It installs the dependencies (scripts/deps.sh), starts a throw-away MinIO,
# fake-gcs-server and Azurite, and runs gofmt, go vet and go test -race with
# OBJBACKER_TEST_STRICT=1, so a missing dependency fails instead of skipping.
# Arguments that start with "." are package patterns and replace ./... for vet
# and test; the others go to go test as they are.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test: %s\n' "$*"; }

# The storage emulators, each with scripts/NAME.sh start|stop DIR.
readonly SERVERS=(minio fakegcs azurite)

scripts/deps.sh
scripts/vm/prepare.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/objbacker-test.XXXXXX")
cleanup() {
	local status=$? server
	for server in "${SERVERS[@]}"; do
		if ((status != 0)) && [[ -s $tmp/$server.log ]]; then
			log "failed (exit $status); $server log tail:"
			tail -n 40 "$tmp/$server.log"
		fi
		"scripts/$server.sh" stop "$tmp" || true
	done
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
# Turn signals into an ordinary exit so the EXIT trap cleans up once.
trap 'exit 130' INT
trap 'exit 143' TERM

for server in "${SERVERS[@]}"; do
	"scripts/$server.sh" start "$tmp"
	# shellcheck source=/dev/null
	source "$tmp/$server.env"
done
export OBJBACKER_TEST_STRICT=1
# nbdsh needs Debian's python3 with the nbd module, not pyenv's python3:
# put /usr/bin just before the first pyenv directory in PATH (a regex, which
# ${PATH/…/…} cannot express).
# shellcheck disable=SC2001
PATH=$(sed 's#[^:]*pyenv#/usr/bin:&#' <<<"$PATH")
export PATH

packages=()
for arg in "$@"; do
	if [[ $arg == .* ]]; then
		packages+=("$arg")
	fi
done
everything=0
if ((${#packages[@]} == 0)); then
	packages=(./...)
	everything=1
fi

log "gofmt -l"
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
	log "files need gofmt:"
	printf '%s\n' "$unformatted"
	exit 1
fi
log "go vet ${packages[*]}"
go vet "${packages[@]}"
if ((everything)); then
	# The systemd units (issue 17), as systemd itself reads them.
	scripts/systemd/verify.sh
fi
# -count=1 everywhere: the e2e suites build and run the daemon as a child
# process, which Go's test cache cannot see, so a cached pass could stand
# for code that changed since; on 2026-12-03 it reported the fault suite
# passed without running it.
if ((everything)); then
	log "go test -count=1 -race -timeout 40m $* -skip ^(TestZFS|TestVdev|TestRestart|TestCrash|TestFaults)\$ ./..."
	go test -count=1 -race -timeout 40m "$@" -skip '^(TestZFS|TestVdev|TestRestart|TestCrash|TestFaults)$' ./...
	# Block buffers live outside the Go heap only without -race, which
	# watches heap memory alone (blockmap/arena_heap.go): run the packages
	# that use them once more on mapped memory.
	log "go test -count=1 -timeout 10m $* ./blockmap/ ./kernel/ ./nbd/"
	go test -count=1 -timeout 10m "$@" ./blockmap/ ./kernel/ ./nbd/
	# The ZFS guest test runs alone and verbosely: its log (pool status,
	# scrub result, bucket checks) is the evidence a passing run leaves.
	log "go test -count=1 -race -timeout 40m $* -v -run ^TestZFS\$ ./e2e/"
	go test -count=1 -race -timeout 40m "$@" -v -run '^TestZFS$' ./e2e/
	# The native vdev (docs/vdev.md): the objbacker-patched ZFS in the guest.
	log "go test -count=1 -race -timeout 40m $* -v -run ^TestVdev\$ ./e2e/"
	go test -count=1 -race -timeout 40m "$@" -v -run '^TestVdev$' ./e2e/
	# Restarts under a live pool (issue 17): objbacker attach in the guest,
	# five SIGTERM restarts of the server under a load.
	log "go test -count=1 -race -timeout 40m $* -v -run ^TestRestart\$ ./e2e/"
	go test -count=1 -race -timeout 40m "$@" -v -run '^TestRestart$' ./e2e/
	# A crash under a live pool (issue 17): the server killed without a
	# journal, its successor refused, the pool suspended and recovered.
	log "go test -count=1 -race -timeout 40m $* -v -run ^TestCrash\$ ./e2e/"
	go test -count=1 -race -timeout 40m "$@" -v -run '^TestCrash$' ./e2e/
	# The fault suite (e2e/faults, about 3 min): objbacker behind a
	# fault-injecting proxy, killed and raced; verbose for its table of
	# figures (README, "The fault suite").
	log "go test -count=1 -race -timeout 20m $* -v -run ^TestFaults\$ ./e2e/faults/"
	go test -count=1 -race -timeout 20m "$@" -v -run '^TestFaults$' ./e2e/faults/
else
	log "go test -count=1 -race -timeout 40m $*"
	go test -count=1 -race -timeout 40m "$@"
fi
