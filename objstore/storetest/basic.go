package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

func testRoundTrip(t *testing.T, s objstore.Store) {
	const key = "vol/00000001"
	data := RandomBytes(1 << 20)
	put := MustPut(t, s, key, data, objstore.PutOptions{})
	if put.Size != int64(len(data)) || put.ETag == "" {
		t.Errorf("Put returned Size %d, ETag %q; want %d and a non-empty ETag", put.Size, put.ETag, len(data))
	}
	got, a := MustGet(t, s, key, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatalf("Get after Put: %s", differ(got, data))
	}
	if a.Size != int64(len(data)) || a.ETag != put.ETag {
		t.Errorf("Get attrs Size %d, ETag %q; want %d, %q", a.Size, a.ETag, len(data), put.ETag)
	}
}

func testEmptyObject(t *testing.T, s objstore.Store) {
	for _, key := range []string{"empty/slice", "empty/nil"} {
		data := []byte{}
		if key == "empty/nil" {
			data = nil
		}
		MustPut(t, s, key, data, objstore.PutOptions{})
		got, a := MustGet(t, s, key, 0, -1)
		if len(got) != 0 || a.Size != 0 {
			t.Errorf("Get(%q) = %d bytes, Size %d; want an empty object", key, len(got), a.Size)
		}
		st, err := s.Stat(t.Context(), key)
		if err != nil || st.Size != 0 || st.ETag == "" {
			t.Errorf("Stat(%q) = Size %d, ETag %q, %v; want size 0 and an ETag", key, st.Size, st.ETag, err)
		}
	}
	infos := ListAll(t, s, "empty/")
	if len(infos) != 2 || infos[0].Size != 0 || infos[1].Size != 0 {
		t.Errorf("List(empty/) = %+v; want two entries of size 0", infos)
	}
}

func testRangeReads(t *testing.T, s objstore.Store) {
	const key = "range/obj"
	const size = 10000
	data := RandomBytes(size)
	put := MustPut(t, s, key, data, objstore.PutOptions{})
	for _, r := range []struct{ off, n int64 }{
		{0, 10}, {100, 200}, {size - 10, 10}, {size - 10, 100}, {5000, -1}, {0, -1}, {0, size},
		{size, 10}, {size, -1}, {size + 1000, 5}, {size + 1000, -1}, {0, 0}, {500, 0},
	} {
		got, a := MustGet(t, s, key, r.off, r.n)
		want := window(data, r.off, r.n)
		if !bytes.Equal(got, want) {
			t.Errorf("Get(off %d, n %d): %s", r.off, r.n, differ(got, want))
		}
		// Attrs describe the whole object; a range past the end has no body
		// to take them from, so drivers may leave them empty there.
		if len(want) > 0 && (a.Size != size || a.ETag != put.ETag) {
			t.Errorf("Get(off %d, n %d) attrs Size %d, ETag %q; want the object's %d, %q", r.off, r.n, a.Size, a.ETag, size, put.ETag)
		}
	}
}

func testMissing(t *testing.T, s objstore.Store) {
	ctx := t.Context()
	// "dir" exists only as the leading part of another key: a directory in a
	// file store, nothing at all in a bucket.
	MustPut(t, s, "dir/obj", []byte("x"), objstore.PutOptions{})
	for _, key := range []string{"absent", "absent/deeper", "dir"} {
		if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Get(%q) = %v; want ErrNotFound", key, err)
		}
		if _, _, err := s.Get(ctx, key, 10, 5); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Get(%q, 10, 5) = %v; want ErrNotFound", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Stat(%q) = %v; want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) of a missing object = %v; want nil", key, err)
		}
	}
	if got, _ := MustGet(t, s, "dir/obj", 0, -1); string(got) != "x" {
		t.Errorf("dir/obj = %q after deleting the missing key dir; want %q", got, "x")
	}
}

func testDelete(t *testing.T, s objstore.Store) {
	ctx := t.Context()
	const key = "del/obj"
	MustPut(t, s, key, []byte("doomed"), objstore.PutOptions{})
	MustPut(t, s, "del/keep", []byte("kept"), objstore.PutOptions{})
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Stat after Delete = %v; want ErrNotFound", err)
	}
	if keys := keysOf(ListAll(t, s, "del/")); !slices.Equal(keys, []string{"del/keep"}) {
		t.Errorf("List after Delete = %q; want only del/keep", keys)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("second Delete = %v; want nil", err)
	}
	MustPut(t, s, key, []byte("reborn"), objstore.PutOptions{})
	if got, _ := MustGet(t, s, key, 0, -1); string(got) != "reborn" {
		t.Errorf("Get after re-Put = %q; want %q", got, "reborn")
	}
}

func testOverwrite(t *testing.T, s objstore.Store) {
	const key = "over/obj"
	first := MustPut(t, s, key, RandomBytes(1000), objstore.PutOptions{})
	data := RandomBytes(300)
	second := MustPut(t, s, key, data, objstore.PutOptions{})
	if second.ETag == first.ETag {
		t.Errorf("ETag %q unchanged by an overwrite with different content", first.ETag)
	}
	got, a := MustGet(t, s, key, 0, -1)
	if !bytes.Equal(got, data) {
		t.Errorf("Get after overwrite: %s", differ(got, data))
	}
	if a.Size != 300 || a.ETag != second.ETag {
		t.Errorf("Get attrs Size %d, ETag %q; want 300, %q", a.Size, a.ETag, second.ETag)
	}
	if infos := ListAll(t, s, "over/"); len(infos) != 1 || infos[0].Size != 300 {
		t.Errorf("List after overwrite = %+v; want one entry of size 300", infos)
	}
}

// testKeyCharacters covers characters that need escaping in URLs or
// signatures, where a network driver most often mangles keys.
func testKeyCharacters(t *testing.T, s objstore.Store) {
	keys := []string{
		"chars/with space", "chars/plus+sign", "chars/percent%2Fencoded", "chars/equals=and&amp",
		"chars/unicodé-ключ", "chars/tilde~star*", "chars/colon:semi;", "chars/quote'paren()",
	}
	for _, key := range keys {
		MustPut(t, s, key, []byte(key), objstore.PutOptions{})
	}
	for _, key := range keys {
		if got, _ := MustGet(t, s, key, 0, -1); string(got) != key {
			t.Errorf("Get(%q) = %q; want the key itself", key, got)
		}
	}
	want := slices.Sorted(slices.Values(keys))
	if got := keysOf(ListAll(t, s, "chars/")); !slices.Equal(got, want) {
		t.Errorf("List(chars/) = %q; want %q", got, want)
	}
}

func keysOf(infos []objstore.ObjectInfo) []string {
	keys := make([]string, len(infos))
	for i, info := range infos {
		keys[i] = info.Key
	}
	return keys
}
