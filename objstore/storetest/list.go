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
	for _, prefix := range []string{"", "dir", "dir/", "dir/0", "dir/sub/", "dir/0001", "dir/0001/", "di", "nothing", "nothing/deeper/"} {
		var want []string
		for _, key := range slices.Sorted(maps.Keys(objects)) {
			if strings.HasPrefix(key, prefix) {
				want = append(want, key)
			}
		}
		infos := ListAll(t, s, prefix)
		if got := keysOf(infos); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q; want %q", prefix, got, want)
			continue
		}
		for _, info := range infos {
			if info.Size != int64(len(objects[info.Key])) || info.ETag != etags[info.Key] {
				t.Errorf("List(%q) entry %+v; want Size %d, ETag %q", prefix, info, len(objects[info.Key]), etags[info.Key])
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
}

func testListStops(t *testing.T, s objstore.Store) {
	for _, key := range []string{"stop/1", "stop/2", "stop/3"} {
		MustPut(t, s, key, []byte(key), objstore.PutOptions{})
	}
	errStop := errors.New("enough")
	var seen []string
	err := s.List(t.Context(), "stop/", func(info objstore.ObjectInfo) error {
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
