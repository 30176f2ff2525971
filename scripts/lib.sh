# shellcheck shell=bash
# Helpers shared by scripts/deps.sh and scripts/vm/*.sh. Set LOG_PREFIX
# before sourcing it.

log() { printf '%s: %s\n' "${LOG_PREFIX:-objbacker}" "$*"; }

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
