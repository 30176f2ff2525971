#!/usr/bin/env bash
# Starts or stops a throw-away fake-gcs-server (Google Cloud Storage
# emulator) for the tests.
#
#   scripts/fakegcs.sh start DIR   data, log, pid and env file go in DIR
#   scripts/fakegcs.sh stop DIR
#
# start listens on 127.0.0.1 at $OBJBACKER_FAKEGCS_PORT, or a free port, and
# writes DIR/fakegcs.env, to be sourced, with OBJBACKER_TEST_GCS_ENDPOINT.
# The emulator checks no credentials. The binary comes from scripts/deps.sh
# ($OBJBACKER_FAKEGCS, default $OBJBACKER_CACHE/bin/fake-gcs-server).
set -euo pipefail

readonly NAME=fakegcs
readonly SERVER_MATCH=fake-gcs-server
# shellcheck source=scripts/emulator.sh
source "$(dirname "${BASH_SOURCE[0]}")/emulator.sh"
readonly FAKEGCS=${OBJBACKER_FAKEGCS:-$CACHE/bin/fake-gcs-server}

start() {
	local dir=$1 port pid begin=${EPOCHREALTIME/./}
	[[ -x $FAKEGCS ]] || {
		log "$FAKEGCS not found; run scripts/deps.sh"
		return 1
	}
	mkdir -p "$dir/fakegcs-data"
	port=$(free_port OBJBACKER_FAKEGCS_PORT)
	local endpoint=http://127.0.0.1:$port
	# Its defaults are 0.0.0.0 and https; the filesystem backend keeps the
	# server small (the memory one never gives back what it took), and
	# "warn" drops the line it logs for every request.
	"$FAKEGCS" -scheme http -host 127.0.0.1 -port "$port" \
		-public-host "127.0.0.1:$port" -external-url "$endpoint" \
		-backend filesystem -filesystem-root "$dir/fakegcs-data" -log-level warn \
		>"$dir/fakegcs.log" 2>&1 </dev/null &
	pid=$!
	# Listing the buckets answers 200 once the API is up.
	started "$dir" "$pid" "$endpoint/storage/v1/b" 200 "$begin"
	cat >"$dir/fakegcs.env" <<-ENV
		export OBJBACKER_TEST_GCS_ENDPOINT=$endpoint
	ENV
	log "pid $pid ready at $endpoint in $(since "$begin") (env: $dir/fakegcs.env)"
}

emulator_main "$@"
