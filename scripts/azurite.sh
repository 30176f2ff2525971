#!/usr/bin/env bash
# Starts or stops a throw-away Azurite (Azure Blob Storage emulator, blob
# service only) for the tests.
#
#   scripts/azurite.sh start DIR   data, log, pid and env file go in DIR
#   scripts/azurite.sh stop DIR
#
# start listens on 127.0.0.1 at $OBJBACKER_AZURITE_PORT, or a free port, and
# writes DIR/azurite.env, to be sourced, with OBJBACKER_TEST_AZURE_ENDPOINT
# and the AZURE_STORAGE_* variables of Azurite's development account. The
# program comes from scripts/deps.sh ($OBJBACKER_AZURITE, default
# $OBJBACKER_CACHE/azurite/node_modules/.bin/azurite-blob).
set -euo pipefail

readonly NAME=azurite
readonly SERVER_MATCH=azurite-blob
# shellcheck source=scripts/emulator.sh
source "$(dirname "${BASH_SOURCE[0]}")/emulator.sh"
readonly AZURITE=${OBJBACKER_AZURITE:-$CACHE/azurite/node_modules/.bin/azurite-blob}
# Azurite's built-in development account; the key is public, in Azure's docs.
readonly ACCOUNT=devstoreaccount1
readonly ACCOUNT_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

start() {
	local dir=$1 port pid begin=${EPOCHREALTIME/./}
	[[ -x $AZURITE ]] || {
		log "$AZURITE not found; run scripts/deps.sh"
		return 1
	}
	mkdir -p "$dir/azurite-data"
	port=$(free_port OBJBACKER_AZURITE_PORT)
	local endpoint=http://127.0.0.1:$port/$ACCOUNT
	# --skipApiVersionCheck: the Go SDK speaks a newer API version than
	# Azurite 3.35 knows, and Azurite would refuse every request.
	# --disableTelemetry: Azurite reports usage by default, and nothing
	# should leave the machine.
	"$AZURITE" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir/azurite-data" \
		--skipApiVersionCheck --disableTelemetry --silent \
		>"$dir/azurite.log" 2>&1 </dev/null &
	pid=$!
	# There is no health endpoint: an anonymous listing is refused with 403
	# once the server is up.
	started "$dir" "$pid" "$endpoint?comp=list" 403 "$begin"
	cat >"$dir/azurite.env" <<-ENV
		export OBJBACKER_TEST_AZURE_ENDPOINT=$endpoint
		export AZURE_STORAGE_ACCOUNT=$ACCOUNT
		export AZURE_STORAGE_KEY=$ACCOUNT_KEY
	ENV
	log "pid $pid ready at $endpoint in $(since "$begin") (env: $dir/azurite.env)"
}

emulator_main "$@"
