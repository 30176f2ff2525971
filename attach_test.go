package main

import (
	"strings"
	"testing"
)

func TestParseNBDURL(t *testing.T) {
	for in, want := range map[string][2]string{
		"nbd://10.0.2.2:10821/disk0": {"10.0.2.2:10821", "disk0"},
		"nbd://host/disk1":           {"host:10809", "disk1"},
		"nbd://[::1]:5/x":            {"[::1]:5", "x"},
	} {
		addr, export, err := parseNBDURL(in)
		if err != nil || addr != want[0] || export != want[1] {
			t.Errorf("parseNBDURL(%q) = %q, %q, %v; want %q, %q", in, addr, export, err, want[0], want[1])
		}
	}
	for _, in := range []string{"10.0.2.2:10809/disk", "s3://b/x", "nbd:///disk"} {
		if _, _, err := parseNBDURL(in); err == nil {
			t.Errorf("parseNBDURL(%q) accepted", in)
		}
	}
}

// TestAttachBadInput: usage errors exit 2 before anything touches the
// kernel.
func TestAttachBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"attach"},
		{"attach", "http://x/y"},
		{"attach", "--device", "/dev/sda", "nbd://127.0.0.1:1/x"},
		{"attach", "--connections", "0", "nbd://127.0.0.1:1/x"},
		{"detach"},
		{"detach", "/dev/loop0"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != 2 || !strings.HasPrefix(stderr, "objbacker: ") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
}
