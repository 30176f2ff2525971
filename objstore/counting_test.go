package objstore_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/iotest"
	"time"

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

// failingBody is a store whose Get bodies fail after their first byte.
type failingBody struct{ objstore.Store }

func (s failingBody) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	rc, a, err := s.Store.Get(ctx, key, off, n)
	if err != nil {
		return nil, a, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 1), iotest.ErrReader(errBroken)), rc}, a, nil
}

var errBroken = errors.New("connection reset")

func TestCountingObserved(t *testing.T) {
	type event struct {
		op     objstore.Op
		failed bool
		err    error
	}
	var mu sync.Mutex
	var events []event
	var c objstore.Counts
	s := objstore.CountingObserved(failingBody{memstore.New()}, &c, func(op objstore.Op, d time.Duration, err error) {
		if d < 0 {
			t.Errorf("%v: duration %v", op, d)
		}
		mu.Lock()
		defer mu.Unlock()
		events = append(events, event{op, objstore.Failed(err), err})
	})
	ctx := t.Context()
	want := func(what string, w ...event) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(events) != len(w) {
			t.Fatalf("%s: events %v; want %v", what, events, w)
		}
		for i := range w {
			if events[i].op != w[i].op || events[i].failed != w[i].failed {
				t.Errorf("%s: event %d = %v; want %v", what, i, events[i], w[i])
			}
		}
		events = nil
	}

	storetest.MustPut(t, s, "a", []byte("hello"), objstore.PutOptions{})
	want("put", event{op: objstore.OpPut})
	s.Put(ctx, "a", []byte("x"), objstore.PutOptions{IfNoneMatch: true})
	want("refused put", event{op: objstore.OpPut, failed: true})

	// A Get ends when its body is closed, once however often it is.
	rc, _, err := s.Get(ctx, "a", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	want("get before its body is closed")
	if _, err := io.ReadAll(rc); !errors.Is(err, errBroken) {
		t.Fatalf("read = %v; want %v", err, errBroken)
	}
	rc.Close()
	rc.Close()
	want("get whose body broke", event{op: objstore.OpGet, failed: true})
	if _, _, err := s.Get(ctx, "missing", 0, -1); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get(missing) = %v", err)
	}
	want("get of a missing object", event{op: objstore.OpGet})

	s.Stat(ctx, "a")
	s.Stat(ctx, "missing")
	storetest.ListAll(t, s, "")
	s.Delete(ctx, "a")
	want("stat, list, delete", event{op: objstore.OpStat}, event{op: objstore.OpStat}, event{op: objstore.OpList}, event{op: objstore.OpDelete})

	if got := c.Errors.Load(); got != 1 {
		t.Errorf("Errors = %d; want 1 (the refused put)", got)
	}
	for op, name := range map[objstore.Op]string{objstore.OpGet: "get", objstore.OpPut: "put", objstore.OpDelete: "delete", objstore.OpStat: "stat", objstore.OpList: "list"} {
		if op.String() != name {
			t.Errorf("Op(%d).String() = %q; want %q", op, op.String(), name)
		}
	}
}
