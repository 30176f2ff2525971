package memstore_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store { return memstore.New() })
}

func TestLargeObjectsOutsideTheHeap(t *testing.T) {
	ctx := t.Context()
	s := memstore.New()
	big := bytes.Repeat([]byte{7}, 1<<20)
	bigger := bytes.Repeat([]byte{9}, 2<<20)
	for i, data := range [][]byte{big, bigger, big, []byte("small")} {
		if _, err := s.Put(ctx, "k", data, objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		// Another object of the block size takes and frees arena buffers
		// around it.
		if _, err := s.Put(ctx, "other", bytes.Repeat([]byte{byte(i)}, 1<<20), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := get(t, s, "k"); !bytes.Equal(got, data) {
			t.Fatalf("put %d: read back %d bytes that differ from the %d written", i, len(got), len(data))
		}
		if err := s.Delete(ctx, "other"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "k", 0, -1); err == nil || errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get after Close: %v, want an error that is not not-found", err)
	}
	if _, err := s.Put(ctx, "k", big, objstore.PutOptions{}); err == nil {
		t.Fatal("Put after Close succeeded")
	}
}

func get(t *testing.T, s *memstore.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
