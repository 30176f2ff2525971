// Package faults is objbacker's fault suite: a daemon between a recording
// NBD writer (writer.py, libnbd) and a MinIO behind a fault-injecting
// proxy (internal/faultproxy), killed, stopped and raced, with every
// durable write checked afterwards through a fresh daemon and against the
// raw objects. The tests are in faults_test.go; scripts/test.sh runs them
// verbosely, so that the figures they end with are in the CI log.
package faults
