package blockmap

import (
	"errors"
	"testing"

	"github.com/objbacker/objbacker/objstore/memstore"
)

func openIncarnation(t *testing.T, cfg Config) (d *Device, token, continues string) {
	t.Helper()
	d, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, continues = d.Incarnation()
	if token == "" || token == continues {
		t.Fatalf("incarnation %q continuing %q", token, continues)
	}
	return d, token, continues
}

// TestIncarnationContinuesOnlyACleanStop: a device continues the one that
// last stopped with every write stored, never one that crashed, failed its
// final flush, or had its bucket taken over.
func TestIncarnationContinuesOnlyACleanStop(t *testing.T) {
	mem := memstore.New()
	store := &faultyStore{Store: mem}
	a, aToken, cont := openIncarnation(t, mountConfig(store, false))
	if cont != "" {
		t.Fatalf("the first device continues %q, want none", cont)
	}
	if _, err := a.WriteAt(pattern(4096, 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b, bToken, cont := openIncarnation(t, mountConfig(store, false))
	if cont != aToken {
		t.Fatalf("after a clean stop of %s the next device continues %q", aToken, cont)
	}
	// b stops with an acknowledged write not stored (WriteDelay holds it),
	// as a crash does: its marker stays, and the next start needs --force.
	if _, err := b.WriteAt(pattern(4096, 3), 0); err != nil {
		t.Fatal(err)
	}
	b.Abort()
	if err := b.Close(); err == nil {
		t.Fatal("Close after Abort with a write not stored succeeded")
	}
	c, cToken, cont := openIncarnation(t, mountConfig(store, true))
	if cont != aToken {
		t.Fatalf("after %s crashed the next device continues %q, want %s (the last clean stop)", bToken, cont, aToken)
	}

	// c's final flush fails: no clean stop either.
	if _, err := c.WriteAt(pattern(4096, 2), 0); err != nil {
		t.Fatal(err)
	}
	store.failPuts.Store(true)
	if err := c.Close(); err == nil {
		t.Fatal("Close with every PUT failing succeeded")
	}
	store.failPuts.Store(false)
	d, _, cont := openIncarnation(t, mountConfig(store, true))
	if cont != aToken {
		t.Fatalf("after %s failed its final flush the next device continues %q, want %s", cToken, cont, aToken)
	}

	// d is taken over while it serves: its stop is not the bucket's.
	e, eToken, _ := openIncarnation(t, mountConfig(store, true))
	if err := d.Close(); !errors.Is(err, ErrMountNotReleased) {
		t.Fatalf("Close of a device taken over: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, cont = openIncarnation(t, mountConfig(store, false))
	if cont != eToken {
		t.Fatalf("after %s stopped cleanly the next device continues %q", eToken, cont)
	}
}

func TestIncarnationTagRoundTrip(t *testing.T) {
	for _, tc := range []struct{ token, continues string }{{"0a1b2c3d", ""}, {"0a1b2c3d", "00000001"}} {
		desc := "objbacker s3://b, 1 MiB blocks " + IncarnationTag(tc.token, tc.continues)
		token, continues, ok := ParseIncarnationTag(desc)
		if !ok || token != tc.token || continues != tc.continues {
			t.Errorf("%q: %q %q %v", desc, token, continues, ok)
		}
	}
	for _, desc := range []string{"", "objbacker s3://b", "[incarnation=zz continues=none]", "[incarnation=01 continues=none] trailing"} {
		if _, _, ok := ParseIncarnationTag(desc); ok {
			t.Errorf("%q parsed as a tag", desc)
		}
	}
}
