package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// Without faults, Faulty is the store it wraps.
func TestFaultyWithoutFaultsConforms(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store {
		return storetest.NewFaulty(memstore.New(), 1, storetest.Faults{})
	})
}

// Every failure is transient; some PUTs and DELETEs are done although they
// fail, some GET bodies break off, and the fates repeat for a seed.
func TestFaultyFailures(t *testing.T) {
	ctx := t.Context()
	fates := func(seed uint64) string {
		mem := memstore.New()
		s := storetest.NewFaulty(mem, seed, storetest.Faults{Fail: 0.5, CutBodies: true, Delay: time.Microsecond})
		var out []byte
		for i := range 200 {
			key := fmt.Sprintf("k%d", i%10)
			_, err := s.Put(ctx, key, []byte{byte(i)}, objstore.PutOptions{})
			if err != nil && !objstore.IsTransient(err) {
				t.Fatalf("put: %v is not transient", err)
			}
			got, gerr := readAll(ctx, mem, key)
			stored := gerr == nil && len(got) == 1 && got[0] == byte(i)
			switch {
			case err == nil && !stored:
				t.Fatalf("put %d answered success but did not store", i)
			case err == nil:
				out = append(out, 'p')
			case stored:
				out = append(out, 'l') // lost answer
			default:
				out = append(out, 'f')
			}
			rc, _, err := s.Get(ctx, key, 0, -1)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			switch {
			case err == nil:
				out = append(out, 'g')
			case errors.Is(err, objstore.ErrNotFound):
				out = append(out, 'n')
			case !objstore.IsTransient(err):
				t.Fatalf("get: %v is not transient", err)
			default:
				out = append(out, 'e')
			}
		}
		return string(out)
	}
	a := fates(7)
	for _, c := range "pflge" {
		if !strings.ContainsRune(a, c) {
			t.Errorf("no request met fate %q in %s", c, a)
		}
	}
	if b := fates(7); a != b {
		t.Errorf("the same seed drew other fates:\n%s\n%s", a, b)
	}
}

func readAll(ctx context.Context, s objstore.Store, key string) ([]byte, error) {
	rc, _, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
