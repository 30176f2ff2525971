package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// testList uses keys whose byte order differs from a naive directory walk:
// "dir-x" and "dir.x" sort before "dir/…" because '-' and '.' are below '/'.
// No key is also the leading part of another ("a" and "a/b"), which a file
// store cannot hold.
func testList(t *testing.T, s objstore.Store) {
	objects := map[string][]byte{}
	for i, key := range []string{"dir-x", "dir.x", "dir/0001", "dir/0002", "dir/sub/0003", "dirz", "other/0001", "top"} {
		objects[key] = RandomBytes(i + 1)
	}
	putAll(t, s, objects)
	etags := map[string]string{}
	for key := range objects {
		a, err := s.Stat(t.Context(), key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		etags[key] = a.ETag
	}
	type listing struct{ prefix, startAfter string }
	var listings []listing
	for _, prefix := range []string{"", "dir", "dir/", "dir/0", "dir/sub/", "dir/0001", "dir/0001/", "di", "nothing", "nothing/deeper/"} {
		listings = append(listings, listing{prefix, ""})
	}
	for _, startAfter := range []string{
		"a",            // before every key
		"dir.x",        // a key
		"dir/",         // not a key: a directory's start
		"dir/0001",     // a key inside a directory
		"dir/00015",    // not a key, between two
		"dir/sub",      // not a key, before a directory's keys
		"dir/sub/",     // the start of that directory
		"dir/sub/0003", // the last key in a directory
		"dir/zzz",      // after every key in a directory, not in it
		"dir0",         // after every "dir/" key ('0' > '/'), before "dirz"
		"top",          // the last key
		"zzz",          // past the end
	} {
		listings = append(listings, listing{"", startAfter})
	}
	listings = append(listings,
		listing{"dir/", "a"},         // before the prefix
		listing{"dir/", "dir/"},      // the prefix itself
		listing{"dir/", "dir/0001"},  // a key under the prefix
		listing{"dir/", "dir/00015"}, // no key, under the prefix
		listing{"dir/", "dirz"},      // after every key under the prefix
		listing{"dir", "dir.x"},      // a key under a prefix that is no directory
		listing{"dir/sub/", "dir/0002"},
		listing{"other/", "other/0001"},
	)
	for _, l := range listings {
		var want []string
		for _, key := range slices.Sorted(maps.Keys(objects)) {
			if strings.HasPrefix(key, l.prefix) && key > l.startAfter {
				want = append(want, key)
			}
		}
		infos := ListAfter(t, s, l.prefix, l.startAfter)
		if got := keysOf(infos); !slices.Equal(got, want) {
			t.Errorf("List(%q, after %q) = %q; want %q", l.prefix, l.startAfter, got, want)
			continue
		}
		for _, info := range infos {
			if info.Size != int64(len(objects[info.Key])) || info.ETag != etags[info.Key] {
				t.Errorf("List(%q, after %q) entry %+v; want Size %d, ETag %q", l.prefix, l.startAfter, info, len(objects[info.Key]), etags[info.Key])
			}
		}
	}
}

// testListManyPages crosses S3's 1000-key page with a prefix that has
// neighbours on both sides.
func testListManyPages(t *testing.T, s objstore.Store) {
	objects := map[string][]byte{"manx": {1}, "many0": {2}, "manz/1": {3}}
	for i := range ListPageObjects {
		objects[fmt.Sprintf("many/%05d", i)] = make([]byte, i%7)
	}
	putAll(t, s, objects)
	infos := ListAll(t, s, "many/")
	if len(infos) != ListPageObjects {
		t.Fatalf("List(many/) returned %d entries; want %d", len(infos), ListPageObjects)
	}
	for i, info := range infos {
		if want := fmt.Sprintf("many/%05d", i); info.Key != want || info.Size != int64(i%7) {
			t.Fatalf("List(many/) entry %d = %q size %d; want %q size %d", i, info.Key, info.Size, want, i%7)
		}
	}
	// Resumed in the middle of the first 1000-key page, and at its end.
	for _, from := range []int{499, 999} {
		startAfter := fmt.Sprintf("many/%05d", from)
		infos := ListAfter(t, s, "many/", startAfter)
		if len(infos) != ListPageObjects-from-1 {
			t.Fatalf("List(many/, after %q) returned %d entries; want %d", startAfter, len(infos), ListPageObjects-from-1)
		}
		for i, info := range infos {
			if want := fmt.Sprintf("many/%05d", from+1+i); info.Key != want {
				t.Fatalf("List(many/, after %q) entry %d = %q; want %q", startAfter, i, info.Key, want)
			}
		}
	}
}

func testListStops(t *testing.T, s objstore.Store) {
	for _, key := range []string{"stop/1", "stop/2", "stop/3"} {
		MustPut(t, s, key, []byte(key), objstore.PutOptions{})
	}
	errStop := errors.New("enough")
	var seen []string
	err := s.List(t.Context(), "stop/", "", func(info objstore.ObjectInfo) error {
		seen = append(seen, info.Key)
		if len(seen) == 2 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Errorf("List = %v; want the callback's error", err)
	}
	if !slices.Equal(seen, []string{"stop/1", "stop/2"}) {
		t.Errorf("callback saw %q; want it stopped after stop/2", seen)
	}
}
