package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// eraseFixture is a bucket of blocks of both namings, spread over a device
// of 2^20 blocks (256 chunks listed in parts), and other objects.
func eraseFixture(t *testing.T) (*memstore.Store, blockmap.Layout, int) {
	t.Helper()
	mem := memstore.New()
	l := blockmap.Layout{Geometry: blockmap.Geometry{Size: 1 << 32, BlockSize: 4096}}
	blocks := 0
	for n := int64(0); n < l.Blocks(); n += 397 {
		for _, nm := range []blockmap.Naming{{}, {HashPrefix: true}} {
			if _, err := mem.Put(t.Context(), nm.Key(n), []byte("b"), objstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			blocks++
		}
	}
	for _, k := range []string{"objbacker-device", "s3backer-mounted", "0000000g", "zz"} {
		if _, err := mem.Put(t.Context(), k, []byte("other"), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return mem, l, blocks
}

func remaining(t *testing.T, store objstore.Store) (keys []string) {
	t.Helper()
	if err := store.List(t.Context(), "", "", func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// Erase deletes every block, of both namings, as the listing finds them,
// and nothing else.
func TestEraseBlocks(t *testing.T) {
	mem, l, blocks := eraseFixture(t)
	p := startProgress(io.Discard, "erasing blocks")
	n, err := eraseBlocks(t.Context(), mem, l, 8, slog.New(slog.DiscardHandler), p)
	p.finish()
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(blocks) {
		t.Errorf("%d blocks erased, want %d", n, blocks)
	}
	if left := remaining(t, mem); len(left) != 4 {
		t.Errorf("left in the bucket: %q, want the 4 other objects", left)
	}
}

// failingDelete fails one DELETE.
type failingDelete struct {
	objstore.Store
	deletes atomic.Int64
}

func (s *failingDelete) Delete(ctx context.Context, key string) error {
	if s.deletes.Add(1) == 100 {
		return errors.New("injected DELETE failure")
	}
	return s.Store.Delete(ctx, key)
}

// A failed DELETE ends the erase with its error, without waiting for the
// listing to finish or hanging the listing on a full queue.
func TestEraseStopsAtAFailedDelete(t *testing.T) {
	mem, l, _ := eraseFixture(t)
	p := startProgress(io.Discard, "erasing blocks")
	_, err := eraseBlocks(t.Context(), &failingDelete{Store: mem}, l, 4, slog.New(slog.DiscardHandler), p)
	p.finish()
	if err == nil || !containsInjected(err) {
		t.Fatalf("erase with a failing DELETE: %v, want the injected failure", err)
	}
}

func containsInjected(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "injected DELETE failure" {
			return true
		}
	}
	return false
}
