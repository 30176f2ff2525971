package main

import (
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore/memstore"
)

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dev := func(url string) *openedExport {
		d, err := blockmap.Open(t.Context(), blockmap.Config{Store: memstore.New(), Geometry: blockmap.Geometry{Size: 64 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return &openedExport{spec: exportSpec{Name: "d", URL: url}, device: d}
	}
	file := dev("file://" + filepath.Join(t.TempDir(), "x"))

	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	setMemoryLimit([]*openedExport{file, file}, log)
	// 64 MiB of 1 MiB blocks: an 8-byte presence bitmap per export.
	want := int64(heapBase + 2*(heapPerExport+8))
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Fatalf("limit %d, want %d", got, want)
	}
	// A mem:// store keeps its blocks outside the heap, and a little per
	// block in it.
	setMemoryLimit([]*openedExport{file, dev("mem://")}, log)
	want += 64 * heapPerMemBlock
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Fatalf("limit with a mem:// export %d, want %d", got, want)
	}

	// A payload budget taken out of the cache is heap memory.
	budgeted := *file
	budgeted.payloadBudget = 32 << 20
	setMemoryLimit([]*openedExport{&budgeted}, log)
	if got, want := debug.SetMemoryLimit(-1), int64(heapBase+heapPerExport+8+32<<20); got != want {
		t.Fatalf("limit with a payload budget %d, want %d", got, want)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "1GiB")
	setMemoryLimit([]*openedExport{file}, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("an operator's GOMEMLIMIT must win, got %d", got)
	}
}
