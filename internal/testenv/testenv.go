// Package testenv finds what integration tests need outside the process:
// client programs (nbdinfo, qemu-io, fio, …) and servers (MinIO); and it
// builds objbacker and runs it as a child process (Daemon), for the suites
// that test the binary from outside.
//
// The test command (scripts/test.sh) installs and starts all of them and sets
// OBJBACKER_TEST_STRICT=1, under which a missing dependency fails the test.
// A developer running plain `go test` without them gets a skip that names
// what is missing.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing dependencies must fail tests (CI).
func Strict() bool { return os.Getenv("OBJBACKER_TEST_STRICT") == "1" }

// Missing fails the test in strict mode and skips it otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("required by the test command but unavailable: "+format, args...)
	}
	t.Skipf("unavailable (run scripts/test.sh to provide it): "+format, args...)
}

// Command returns the path of program name, or fails/skips via Missing.
func Command(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "program %s: %v", name, err)
	}
	return p
}
