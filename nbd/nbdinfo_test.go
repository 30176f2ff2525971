package nbd

import (
	"encoding/json"
	"testing"
)

// nbdinfoExport is the part of `nbdinfo --json` these tests check.
type nbdinfoExport struct {
	Name         string `json:"export-name"`
	Description  string `json:"description"`
	Size         uint64 `json:"export-size"`
	ReadOnly     bool   `json:"is_read_only"`
	CanFlush     bool   `json:"can_flush"`
	CanFUA       bool   `json:"can_fua"`
	CanTrim      bool   `json:"can_trim"`
	CanZero      bool   `json:"can_zero"`
	CanMultiConn bool   `json:"can_multi_conn"`
	MinBlock     uint32 `json:"block_size_minimum"`
	PrefBlock    uint32 `json:"block_size_preferred"`
	MaxBlock     uint32 `json:"block_size_maximum"`
}

// threeExports serves a backend with every optional interface, one with
// only the base contract, and a read-only one.
func threeExports(t *testing.T) *testServer {
	return startServer(t, &Server{Exports: []*Export{
		{Name: "full", Description: "all commands", Backend: newMemBackend(8 << 20), PreferredBlockSize: 1 << 20},
		{Name: "plain", Backend: baseOnly{newMemBackend(4 << 20)}, MinBlockSize: 4096, MaxBlockSize: 1 << 20},
		{Name: "ro", Backend: newMemBackend(2 << 20), ReadOnly: true},
	}})
}

func TestNbdinfoListAndFlags(t *testing.T) {
	ts := threeExports(t)
	out := mustRun(t, "nbdinfo", "--list", "--json", ts.uri(""))
	var got struct{ Exports []nbdinfoExport }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	want := []nbdinfoExport{
		{Name: "full", Description: "all commands", Size: 8 << 20, CanFlush: true, CanFUA: true, CanTrim: true,
			CanZero: true, CanMultiConn: true, MinBlock: 512, PrefBlock: 1 << 20, MaxBlock: 64 << 20},
		{Name: "plain", Size: 4 << 20, CanFlush: true, CanMultiConn: true, MinBlock: 4096, PrefBlock: 4096, MaxBlock: 1 << 20},
		{Name: "ro", Size: 2 << 20, ReadOnly: true, CanFlush: true, CanMultiConn: true, MinBlock: 512, PrefBlock: 4096, MaxBlock: 64 << 20},
	}
	if len(got.Exports) != len(want) {
		t.Fatalf("nbdinfo --list shows %d exports, want %d:\n%s", len(got.Exports), len(want), out)
	}
	for i := range want {
		if got.Exports[i] != want[i] {
			t.Errorf("export %d:\n got %+v\nwant %+v", i, got.Exports[i], want[i])
		}
	}
}

func TestNbdinfoCan(t *testing.T) {
	ts := threeExports(t)
	for _, c := range []struct {
		export, query, what string
		want                bool
	}{
		{"full", "--can", "flush", true},
		{"full", "--can", "fua", true},
		{"full", "--can", "trim", true},
		{"full", "--can", "zero", true},
		{"full", "--can", "multi-conn", true},
		{"full", "--is", "read-only", false},
		{"plain", "--can", "flush", true},
		{"plain", "--can", "fua", false},
		{"plain", "--can", "trim", false},
		{"plain", "--can", "zero", false},
		{"ro", "--is", "read-only", true},
		{"ro", "--can", "trim", false},
	} {
		// nbdinfo --can/--is exits 0 for true and 2 for false.
		out, code := run(t, "nbdinfo", c.query, c.what, ts.uri(c.export))
		if got := code == 0; got != c.want || code != 0 && code != 2 {
			t.Errorf("nbdinfo %s %s on %s: exit %d, want %v\n%s", c.query, c.what, c.export, code, c.want, out)
		}
	}
}

func TestNbdinfoEmptyExportName(t *testing.T) {
	one := startServer(t, &Server{Exports: []*Export{{Name: "only", Backend: newMemBackend(1 << 20)}}})
	if out := mustRun(t, "nbdinfo", "--size", one.uri("")); out != "1048576\n" {
		t.Errorf("empty name with one export: size %q, want 1048576", out)
	}
	two := threeExports(t)
	if out, code := run(t, "nbdinfo", "--size", two.uri("")); code == 0 {
		t.Errorf("empty name with three exports succeeded:\n%s", out)
	}
}
