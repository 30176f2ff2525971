package objstore_test

import (
	"errors"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestCountingConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store { return objstore.Counting(memstore.New(), &objstore.Counts{}) })
}

func TestCountingCounts(t *testing.T) {
	var c objstore.Counts
	s := objstore.Counting(memstore.New(), &c)
	ctx := t.Context()

	storetest.MustPut(t, s, "a", make([]byte, 10), objstore.PutOptions{})
	storetest.MustPut(t, s, "b", make([]byte, 20), objstore.PutOptions{})
	// A refused put moves no bytes and counts as an error.
	if _, err := s.Put(ctx, "a", make([]byte, 5), objstore.PutOptions{IfNoneMatch: true}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("Put = %v; want ErrPreconditionFailed", err)
	}
	storetest.MustGet(t, s, "a", 0, -1)
	storetest.MustGet(t, s, "b", 2, 3)
	// A body left unread moves no bytes.
	rc, _, err := s.Get(ctx, "b", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	// A missing object is an answer, not an error.
	if _, _, err := s.Get(ctx, "missing", 0, -1); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get(missing) = %v", err)
	}
	if _, err := s.Stat(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	storetest.ListAll(t, s, "")

	for _, n := range []struct {
		name      string
		got, want int64
	}{
		{"Gets", c.Gets.Load(), 4},
		{"Puts", c.Puts.Load(), 3},
		{"Deletes", c.Deletes.Load(), 1},
		{"Stats", c.Stats.Load(), 1},
		{"Lists", c.Lists.Load(), 1},
		{"Errors", c.Errors.Load(), 1},
		{"BytesRead", c.BytesRead.Load(), 13},
		{"BytesWritten", c.BytesWritten.Load(), 30},
	} {
		if n.got != n.want {
			t.Errorf("%s = %d; want %d", n.name, n.got, n.want)
		}
	}
}
