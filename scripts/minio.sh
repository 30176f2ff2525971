#!/usr/bin/env bash
# Starts or stops a throw-away MinIO server for the tests.
#
#   scripts/minio.sh start DIR   data, log, pid and env file go in DIR
#   scripts/minio.sh stop DIR
#
# start listens on 127.0.0.1 at $OBJBACKER_MINIO_PORT, or a free port, and
# writes DIR/minio.env, to be sourced, with OBJBACKER_TEST_S3_ENDPOINT and
# the AWS_* variables the tests and the SDK read. The binary comes from
# scripts/deps.sh ($OBJBACKER_MINIO, default $OBJBACKER_CACHE/bin/minio).
set -euo pipefail

readonly NAME=minio
readonly SERVER_MATCH=minio
# shellcheck source=scripts/emulator.sh
source "$(dirname "${BASH_SOURCE[0]}")/emulator.sh"
readonly MINIO=${OBJBACKER_MINIO:-$CACHE/bin/minio}
# Fixed test-only credentials: the server is on loopback and lives for one run.
readonly ROOT_USER=objbacker-test
readonly ROOT_PASSWORD=objbacker-test-secret

start() {
	local dir=$1 port pid begin=${EPOCHREALTIME/./}
	[[ -x $MINIO ]] || {
		log "$MINIO not found; run scripts/deps.sh"
		return 1
	}
	mkdir -p "$dir/data"
	port=$(free_port OBJBACKER_MINIO_PORT)
	local endpoint=http://127.0.0.1:$port
	# No console and no update checks: nothing but the S3 API, on loopback.
	MINIO_ROOT_USER=$ROOT_USER MINIO_ROOT_PASSWORD=$ROOT_PASSWORD \
		MINIO_BROWSER=off MINIO_UPDATE=off \
		"$MINIO" server --address "127.0.0.1:$port" "$dir/data" \
		>"$dir/minio.log" 2>&1 </dev/null &
	pid=$!
	started "$dir" "$pid" "$endpoint/minio/health/live" 200 "$begin"
	cat >"$dir/minio.env" <<-ENV
		export OBJBACKER_TEST_S3_ENDPOINT=$endpoint
		export AWS_ACCESS_KEY_ID=$ROOT_USER
		export AWS_SECRET_ACCESS_KEY=$ROOT_PASSWORD
		export AWS_REGION=us-east-1
	ENV
	log "pid $pid ready at $endpoint in $(since "$begin") (env: $dir/minio.env)"
}

emulator_main "$@"
