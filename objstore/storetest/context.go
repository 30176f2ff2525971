package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// testCancelledContext checks that every call honours its context and
// reports the cancellation as such, which Retrying relies on to stop.
func testCancelledContext(t *testing.T, s objstore.Store) {
	const key = "ctx/obj"
	MustPut(t, s, key, []byte("before"), objstore.PutOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v; want context.Canceled", op, err)
		}
	}
	rc, _, err := s.Get(ctx, key, 0, -1)
	if err == nil {
		rc.Close()
	}
	check("Get", err)
	_, err = s.Put(ctx, key, []byte("after"), objstore.PutOptions{})
	check("Put", err)
	_, err = s.Stat(ctx, key)
	check("Stat", err)
	check("Delete", s.Delete(ctx, key))
	check("List", s.List(ctx, "ctx/", "", func(objstore.ObjectInfo) error { return nil }))

	if got, _ := MustGet(t, s, key, 0, -1); string(got) != "before" {
		t.Errorf("content after cancelled Put and Delete = %q; want %q", got, "before")
	}
}
