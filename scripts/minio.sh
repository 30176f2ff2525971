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

readonly CACHE=${OBJBACKER_CACHE:-$HOME/.cache/objbacker}
readonly MINIO=${OBJBACKER_MINIO:-$CACHE/bin/minio}
# Fixed test-only credentials: the server is on loopback and lives for one run.
readonly ROOT_USER=objbacker-test
readonly ROOT_PASSWORD=objbacker-test-secret
readonly READY_TIMEOUT=30 # seconds; a start takes about 1-2 s

log() { printf 'minio: %s\n' "$*"; }

# since prints the milliseconds elapsed from a ${EPOCHREALTIME/./} stamp.
since() { printf '%d ms' $(((${EPOCHREALTIME/./} - $1) / 1000)); }

usage() {
	printf 'usage: %s start|stop DIR\n' "$0" >&2
	exit 2
}

# alive reports whether pid exists; a zombie left for a parent that never
# reaps it counts as gone.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
	local port
	for _ in {1..100}; do
		port=$((20000 + RANDOM % 40000))
		if ! port_in_use "$port"; then
			printf '%s\n' "$port"
			return
		fi
	done
	log "no free port found" >&2
	return 1
}

# wait_ready polls the liveness endpoint until it answers 200, the process
# dies, or READY_TIMEOUT passes.
wait_ready() {
	local pid=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		alive "$pid" || return 1
		if [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url") == 200 ]]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

start() {
	local dir=$1 port pid begin=${EPOCHREALTIME/./}
	[[ -x $MINIO ]] || {
		log "$MINIO not found; run scripts/deps.sh"
		return 1
	}
	mkdir -p "$dir/data"
	port=${OBJBACKER_MINIO_PORT:-$(pick_port)}
	# Another server on the port would answer the readiness poll for us.
	if port_in_use "$port"; then
		log "port $port on 127.0.0.1 is already in use"
		return 1
	fi
	# No console and no update checks: nothing but the S3 API, on loopback.
	MINIO_ROOT_USER=$ROOT_USER MINIO_ROOT_PASSWORD=$ROOT_PASSWORD \
		MINIO_BROWSER=off MINIO_UPDATE=off \
		"$MINIO" server --address "127.0.0.1:$port" "$dir/data" \
		>"$dir/minio.log" 2>&1 </dev/null &
	pid=$!
	printf '%s\n' "$pid" >"$dir/minio.pid"
	local endpoint=http://127.0.0.1:$port
	if ! wait_ready "$pid" "$endpoint/minio/health/live"; then
		log "not ready at $endpoint after $(since "$begin"); log tail:"
		tail -n 30 "$dir/minio.log" >&2
		stop "$dir"
		return 1
	fi
	cat >"$dir/minio.env" <<-ENV
		export OBJBACKER_TEST_S3_ENDPOINT=$endpoint
		export AWS_ACCESS_KEY_ID=$ROOT_USER
		export AWS_SECRET_ACCESS_KEY=$ROOT_PASSWORD
		export AWS_REGION=us-east-1
	ENV
	log "pid $pid ready at $endpoint in $(since "$begin") (env: $dir/minio.env)"
}

stop() {
	local dir=$1 pid
	[[ -f $dir/minio.pid ]] || {
		log "no pid file in $dir; nothing to stop"
		return 0
	}
	pid=$(<"$dir/minio.pid")
	# The comm check keeps a stale pid file from killing a recycled pid.
	if alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == minio ]]; then
		kill "$pid"
		for _ in {1..100}; do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			log "pid $pid ignored SIGTERM for 10 s; killing it"
			kill -KILL "$pid"
		fi
	fi
	rm -f "$dir/minio.pid"
	log "pid $pid stopped"
}

(($# == 2)) || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
