package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

func testIfNoneMatch(t *testing.T, s objstore.Store) {
	ctx := t.Context()
	const key = "cond/create"
	MustPut(t, s, key, []byte("first"), objstore.PutOptions{IfNoneMatch: true})
	if _, err := s.Put(ctx, key, []byte("second"), objstore.PutOptions{IfNoneMatch: true}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Errorf("second create-if-absent Put = %v; want ErrPreconditionFailed", err)
	}
	if got, _ := MustGet(t, s, key, 0, -1); string(got) != "first" {
		t.Errorf("content after refused Put = %q; want %q", got, "first")
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	MustPut(t, s, key, []byte("third"), objstore.PutOptions{IfNoneMatch: true})
}

func testIfMatch(t *testing.T, s objstore.Store) {
	ctx := t.Context()
	const key = "cond/cas"
	first := MustPut(t, s, key, []byte("first"), objstore.PutOptions{})
	second := MustPut(t, s, key, []byte("second"), objstore.PutOptions{IfMatch: first.ETag})
	if second.ETag == first.ETag {
		t.Fatalf("ETag %q unchanged by new content", first.ETag)
	}
	if _, err := s.Put(ctx, key, []byte("stale"), objstore.PutOptions{IfMatch: first.ETag}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Errorf("Put with a stale IfMatch = %v; want ErrPreconditionFailed", err)
	}
	if got, _ := MustGet(t, s, key, 0, -1); string(got) != "second" {
		t.Errorf("content after refused Put = %q; want %q", got, "second")
	}
	MustPut(t, s, key, []byte("third"), objstore.PutOptions{IfMatch: second.ETag})

	// store.go promises ErrPreconditionFailed for a missing object; S3 itself
	// answers 404 there, so drivers that pass it through are accepted too.
	const absent = "cond/absent"
	_, err := s.Put(ctx, absent, []byte("x"), objstore.PutOptions{IfMatch: first.ETag})
	if !errors.Is(err, objstore.ErrPreconditionFailed) && !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("IfMatch Put of a missing object = %v; want ErrPreconditionFailed", err)
	}
	if _, err := s.Stat(ctx, absent); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Stat after refused IfMatch Put = %v; want ErrNotFound", err)
	}
}

// testDeleteIfMatch: a compare-and-delete removes the object only while
// it has the ETag given, and tells a replaced object from a missing one.
func testDeleteIfMatch(t *testing.T, s objstore.Store) {
	ctx := t.Context()
	const key = "cond/delete"
	first := MustPut(t, s, key, []byte("first"), objstore.PutOptions{})
	second := MustPut(t, s, key, []byte("second"), objstore.PutOptions{})
	if err := s.DeleteIfMatch(ctx, key, first.ETag); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Errorf("DeleteIfMatch with a stale ETag = %v; want ErrPreconditionFailed", err)
	}
	if got, _ := MustGet(t, s, key, 0, -1); string(got) != "second" {
		t.Fatalf("content after refused DeleteIfMatch = %q; want %q", got, "second")
	}
	if err := s.DeleteIfMatch(ctx, key, second.ETag); err != nil {
		t.Fatalf("DeleteIfMatch with the current ETag: %v", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Stat after DeleteIfMatch = %v; want ErrNotFound", err)
	}
	if err := s.DeleteIfMatch(ctx, key, second.ETag); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("DeleteIfMatch of a missing object = %v; want ErrNotFound", err)
	}
}

// testConditionalRace checks that conditional puts are atomic: of several
// concurrent creates or compare-and-swaps, exactly one wins and the others
// fail with ErrPreconditionFailed; creates of an object that exists all
// fail. S3 may answer a conflicting conditional write with 409, which
// drivers report as transient, so a loser may fail either way, and a round
// without winner is accepted only when some loser was transient and nothing
// was written.
func testConditionalRace(t *testing.T, s objstore.Store) {
	const key = "cond/race"
	const racers = 8
	race := func(round string, opts objstore.PutOptions) (won bool) {
		t.Helper()
		// Fresh content each round: re-putting the current content leaves a
		// content-hash ETag unchanged, letting a second swap match too.
		datas := make([][]byte, racers)
		for i := range datas {
			datas[i] = RandomBytes(1024)
		}
		before, _, beforeErr := get(t, s, key, 0, -1)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() { _, errs[i] = s.Put(t.Context(), key, datas[i], opts) })
		}
		wg.Wait()
		winner, transient := -1, false
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("%s: racers %d and %d both succeeded", round, winner, i)
			case err == nil:
				winner = i
			case objstore.IsTransient(err):
				transient = true
			case !errors.Is(err, objstore.ErrPreconditionFailed):
				t.Fatalf("%s: racer %d: %v; want ErrPreconditionFailed", round, i, err)
			}
		}
		if winner < 0 {
			if !transient {
				t.Fatalf("%s: no racer succeeded", round)
			}
			after, _, afterErr := get(t, s, key, 0, -1)
			if !bytes.Equal(after, before) || errors.Is(afterErr, objstore.ErrNotFound) != errors.Is(beforeErr, objstore.ErrNotFound) {
				t.Fatalf("%s: no racer succeeded, yet the object changed", round)
			}
			return false
		}
		if got, _ := MustGet(t, s, key, 0, -1); !bytes.Equal(got, datas[winner]) {
			t.Fatalf("%s: stored content is not the winner's: %s", round, differ(got, datas[winner]))
		}
		return true
	}
	for round := range 4 {
		if !race(fmt.Sprintf("create-if-absent %d", round), objstore.PutOptions{IfNoneMatch: true}) {
			continue
		}
		// The object exists now: every create must fail, and leave it.
		before, _ := MustGet(t, s, key, 0, -1)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				_, errs[i] = s.Put(t.Context(), key, RandomBytes(1024), objstore.PutOptions{IfNoneMatch: true})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, objstore.ErrPreconditionFailed) && !objstore.IsTransient(err) {
				t.Fatalf("create-if-absent %d of an existing object: racer %d: %v; want ErrPreconditionFailed", round, i, err)
			}
		}
		if got, _ := MustGet(t, s, key, 0, -1); !bytes.Equal(got, before) {
			t.Fatalf("create-if-absent %d: an existing object changed: %s", round, differ(got, before))
		}
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	a := MustPut(t, s, key, []byte("base"), objstore.PutOptions{})
	for round := range 4 {
		if race(fmt.Sprintf("compare-and-swap %d", round), objstore.PutOptions{IfMatch: a.ETag}) {
			var err error
			if a, err = s.Stat(t.Context(), key); err != nil {
				t.Fatalf("Stat: %v", err)
			}
		}
	}
}
