package objstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// lostDeleteAnswer deletes, then reports a transient failure once: the
// answer to a delete that went through was lost.
type lostDeleteAnswer struct {
	objstore.Store
	lost bool
}

func (s *lostDeleteAnswer) DeleteIfMatch(ctx context.Context, key, etag string) error {
	err := s.Store.DeleteIfMatch(ctx, key, etag)
	if err == nil && !s.lost {
		s.lost = true
		return objstore.Transient(errors.New("connection reset"))
	}
	return err
}

// TestRetryingDeleteIfMatch: a compare-and-delete whose answer was lost is
// retried, and the retry says the object is gone rather than replaced.
func TestRetryingDeleteIfMatch(t *testing.T) {
	ctx := t.Context()
	base := &lostDeleteAnswer{Store: memstore.New()}
	s := objstore.Retrying(base, tiny, nil)
	a, err := s.Put(ctx, "claim", []byte("mine"), objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIfMatch(ctx, "claim", a.ETag); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("DeleteIfMatch after a lost answer = %v; want ErrNotFound", err)
	}
	if !base.lost {
		t.Fatal("the double lost no answer")
	}
	if _, err := s.Stat(ctx, "claim"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Stat = %v; want ErrNotFound", err)
	}
}
