package filestore_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/filestore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store { return open(t, t.TempDir()) })
}

func open(t *testing.T, dir string) *filestore.Store {
	t.Helper()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func md5hex(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

func TestOpen(t *testing.T) {
	base := t.TempDir()
	nested := filepath.Join(base, "new", "nested")
	open(t, nested)
	if fi, err := os.Stat(nested); err != nil || !fi.IsDir() {
		t.Errorf("Open did not create %s: %v", nested, err)
	}

	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "below")} {
		if _, err := filestore.Open(dir); !errors.Is(err, objstore.ErrInvalidURL) || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("Open(%q) = %v; want a not-a-directory ErrInvalidURL", dir, err)
		}
	}

	if os.Geteuid() == 0 {
		return // root writes anywhere, so permissions cannot be tested
	}
	locked := filepath.Join(base, "locked")
	if err := os.Mkdir(locked, 0o500); err != nil {
		t.Fatal(err)
	}
	if _, err := filestore.Open(locked); !errors.Is(err, objstore.ErrAccessDenied) {
		t.Errorf("Open of a read-only directory = %v; want ErrAccessDenied", err)
	}
}

func TestKeyValidation(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	s := open(t, root)
	ctx := t.Context()
	for _, key := range []string{
		"", "/abs", "../escape", "a/../../escape", "a/./b", ".", "..", "a/..", "a//b", "a/",
		".hidden", "a/.tmp-123", "a/.b.meta", "nul\x00byte", strings.Repeat("x", 250),
	} {
		_, err := s.Put(ctx, key, []byte("x"), objstore.PutOptions{})
		if !errors.Is(err, filestore.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v; want ErrInvalidKey", key, err)
		}
		if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, filestore.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v; want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, filestore.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v; want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, filestore.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v; want ErrInvalidKey", key, err)
		}
	}
	if entries, _ := os.ReadDir(base); len(entries) != 1 {
		t.Errorf("rejected keys left files beside the root: %v", entries)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("rejected keys left files in the root: %v", entries)
	}

	// Dots inside an element and long-but-legal names are ordinary keys.
	for _, key := range []string{"a.b", "x..y/z.", strings.Repeat("y", 249)} {
		storetest.MustPut(t, s, key, []byte(key), objstore.PutOptions{})
	}
	// A listing prefix that could only match invalid keys matches nothing and
	// never walks outside the root.
	for _, prefix := range []string{"../", "..", "/", ".", "a//", "x..y/."} {
		if infos := storetest.ListAll(t, s, prefix); len(infos) != 0 {
			t.Errorf("List(%q) = %+v; want nothing", prefix, infos)
		}
	}
}

// TestFileLayout pins what users and tools see on disk: one file per object
// holding exactly its bytes, and an MD5 ETag as S3 and memstore give.
func TestFileLayout(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	data := storetest.RandomBytes(4096)
	a := storetest.MustPut(t, s, "vol/00000001", data, objstore.PutOptions{Metadata: map[string]string{"objbacker-version": "1"}})
	onDisk, err := os.ReadFile(filepath.Join(root, "vol", "00000001"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Errorf("data file holds %d bytes (%v); want exactly the %d put", len(onDisk), err, len(data))
	}
	if a.ETag != md5hex(data) {
		t.Errorf("ETag %q; want the content's MD5 %q", a.ETag, md5hex(data))
	}
	entries, err := os.ReadDir(filepath.Join(root, "vol"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{".00000001.meta", "00000001"}; !slices.Equal(names, want) {
		t.Errorf("vol/ holds %q; want %q (no temporary files left)", names, want)
	}
}

// TestSidecarNeverLeaks covers sidecars that outlive or mismatch their data
// file: an orphan left by an interrupted Delete, and a data file replaced by
// hand. Neither may lend its metadata or ETag to the new content.
func TestSidecarNeverLeaks(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	meta := objstore.PutOptions{ContentType: "application/x-old", Metadata: map[string]string{"objbacker-version": "old"}}
	dataPath := filepath.Join(root, "vol", "00000001")

	storetest.MustPut(t, s, "vol/00000001", []byte("old"), meta)
	if err := os.Remove(dataPath); err != nil { // Delete interrupted after its first step
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "vol/00000001"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Stat with only a sidecar left = %v; want ErrNotFound", err)
	}
	storetest.MustPut(t, s, "vol/00000001", []byte("new"), objstore.PutOptions{})
	checkBare(t, s, "vol/00000001", []byte("new"))

	storetest.MustPut(t, s, "vol/00000001", []byte("old"), meta)
	edited := []byte("edited by hand, longer")
	if err := os.WriteFile(dataPath, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	checkBare(t, s, "vol/00000001", edited)
}

// checkBare checks that key holds data with no content type or metadata and
// the MD5 of data as its ETag, through both Stat and List.
func checkBare(t *testing.T, s objstore.Store, key string, data []byte) {
	t.Helper()
	a, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if a.ContentType != "" || len(a.Metadata) != 0 || a.ETag != md5hex(data) || a.Size != int64(len(data)) {
		t.Errorf("Stat(%q) = %+v; want size %d, ETag %s and no content type or metadata", key, a, len(data), md5hex(data))
	}
	infos := storetest.ListAll(t, s, key)
	if len(infos) != 1 || infos[0].ETag != md5hex(data) {
		t.Errorf("List(%q) = %+v; want one entry with ETag %s", key, infos, md5hex(data))
	}
}

// TestCrashLeftovers plants what a crash mid-Put can leave behind: temporary
// files and a torn sidecar. None may show up as an object or corrupt one.
func TestCrashLeftovers(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	storetest.MustPut(t, s, "vol/00000001", []byte("one"), objstore.PutOptions{})
	storetest.MustPut(t, s, "vol/00000002", []byte("two"), objstore.PutOptions{Metadata: map[string]string{"objbacker-version": "1"}})
	for _, name := range []string{".tmp-123456", "vol/.tmp-654321"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte("half-written block"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "vol", ".00000002.meta"), []byte(`{"cur":{"fi`), 0o600); err != nil {
		t.Fatal(err)
	}

	var keys []string
	for _, info := range storetest.ListAll(t, s, "") {
		keys = append(keys, info.Key)
	}
	if want := []string{"vol/00000001", "vol/00000002"}; !slices.Equal(keys, want) {
		t.Errorf("List = %q; want only the objects %q", keys, want)
	}
	if got, _ := storetest.MustGet(t, s, "vol/00000001", 0, -1); string(got) != "one" {
		t.Errorf("Get = %q; want %q", got, "one")
	}
	// The torn sidecar's metadata is lost, but content and ETag stay right.
	checkBare(t, s, "vol/00000002", []byte("two"))
}

// TestCrashBetweenRenames rebuilds the state a crash between a Put's two
// renames leaves: the new sidecar beside the old data file. The old object
// must come back whole, with its own ETag and metadata.
func TestCrashBetweenRenames(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	dataPath := filepath.Join(root, "vol", "00000001")
	oldMeta := map[string]string{"objbacker-version": "old"}
	old := storetest.MustPut(t, s, "vol/00000001", []byte("old data"), objstore.PutOptions{ContentType: "application/x-old", Metadata: oldMeta})
	// A hard link keeps the old data file itself (same inode and mtime).
	saved := filepath.Join(t.TempDir(), "old")
	if err := os.Link(dataPath, saved); err != nil {
		t.Skipf("hard links unavailable here: %v", err)
	}
	storetest.MustPut(t, s, "vol/00000001", []byte("new"), objstore.PutOptions{ContentType: "application/x-new", Metadata: map[string]string{"objbacker-version": "new"}})
	if err := os.Rename(saved, dataPath); err != nil {
		t.Fatal(err)
	}

	got, a := storetest.MustGet(t, s, "vol/00000001", 0, -1)
	if string(got) != "old data" || a.ETag != old.ETag || a.ContentType != "application/x-old" || !maps.Equal(a.Metadata, oldMeta) {
		t.Errorf("after the crash: %q with %+v; want the old object %q, ETag %s, its content type and %v", got, a, "old data", old.ETag, oldMeta)
	}
}

// TestKeyPrefixConflicts pins the one limit of mapping keys to paths: a key
// cannot be both an object and the directory of others. The refused Put must
// fail cleanly and leave both keys as they were.
func TestKeyPrefixConflicts(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := t.Context()
	storetest.MustPut(t, s, "a/b", []byte("under a"), objstore.PutOptions{})
	if _, err := s.Put(ctx, "a", []byte("x"), objstore.PutOptions{}); err == nil {
		t.Error(`Put("a") over the directory of "a/b" succeeded`)
	}
	if _, err := s.Stat(ctx, "a"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf(`Stat("a") after the refused Put = %v; want ErrNotFound`, err)
	}
	storetest.MustPut(t, s, "c", []byte("object c"), objstore.PutOptions{})
	if _, err := s.Put(ctx, "c/d", []byte("x"), objstore.PutOptions{}); err == nil {
		t.Error(`Put("c/d") below the object "c" succeeded`)
	}
	if got, _ := storetest.MustGet(t, s, "c", 0, -1); string(got) != "object c" {
		t.Errorf(`Get("c") = %q after the refused Put; want %q`, got, "object c")
	}
	if keys := storetest.ListAll(t, s, ""); len(keys) != 2 || keys[0].Key != "a/b" || keys[1].Key != "c" {
		t.Errorf("List = %+v; want only a/b and c", keys)
	}
}

// TestListAfterLeavesEarlierFilesUnread: a listing that starts after a key
// reads neither the files nor the directories whose keys all come at or
// before it. Their sidecars are made unreadable (a directory in a sidecar's
// place fails the read), so that opening one fails the listing.
func TestListAfterLeavesEarlierFilesUnread(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, key := range []string{"a/1", "a/2", "a-b", "b", "c/1"} {
		storetest.MustPut(t, s, key, []byte(key), objstore.PutOptions{})
	}
	for _, sidecar := range []string{"a/.1.meta", ".a-b.meta", ".b.meta"} {
		path := filepath.Join(dir, filepath.FromSlash(sidecar))
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.List(t.Context(), "", "", func(objstore.ObjectInfo) error { return nil }); err == nil {
		t.Fatal("List from the start read every file despite the broken sidecars; the test proves nothing")
	}
	for _, tc := range []struct {
		prefix, startAfter string
		want               []string
		fails              bool // reads a broken file
	}{
		// Key order: a-b < a/1 < a/2 < b < c/1 ('-' sorts before '/').
		{"", "b", []string{"c/1"}, false},
		{"", "a/zz", nil, true}, // reads b
		{"", "a-b", nil, true},  // reads a/1
		{"a/", "a/1", []string{"a/2"}, false},
		{"a", "a/1", []string{"a/2"}, false}, // leaves a-b unread
		{"c", "a-b", []string{"c/1"}, false},
	} {
		var got []string
		err := s.List(t.Context(), tc.prefix, tc.startAfter, func(info objstore.ObjectInfo) error {
			got = append(got, info.Key)
			return nil
		})
		switch {
		case tc.fails && err == nil:
			t.Errorf("List(%q, after %q) = %q; want a broken sidecar to fail it", tc.prefix, tc.startAfter, got)
		case !tc.fails && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("List(%q, after %q) = %q, %v; want %q", tc.prefix, tc.startAfter, got, err, tc.want)
		}
	}
}

// TestRootGone: a root directory removed, or replaced as a mount point is
// when its file system is unmounted, fails every request as a deleted
// bucket does, instead of reading as a device of zeros, and is not created
// again by a write.
func TestRootGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(root string) error
	}{
		{"removed", os.RemoveAll},
		// Moved aside, so that the new directory cannot reuse its inode,
		// and another made in its place: what a client sees of a mount
		// point whose file system is unmounted.
		{"replaced", func(root string) error {
			if err := os.Rename(root, root+".old"); err != nil {
				return err
			}
			return os.Mkdir(root, 0o700)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			s := open(t, root)
			const key = "vol/00000000"
			storetest.MustPut(t, s, key, []byte("block"), objstore.PutOptions{})
			if err := tc.gone(root); err != nil {
				t.Fatal(err)
			}
			storetest.BucketGone(t, s, key)
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("requests on a store whose root is gone left %v in its place", entries)
			}
		})
	}
}

// TestCreateOnlyAcrossStores races create-only Puts of one key through two
// stores open on one directory, as two daemons sharing it would: exactly
// one may win each round, and the object must be the winner's, with its
// metadata.
func TestCreateOnlyAcrossStores(t *testing.T) {
	root := t.TempDir()
	stores := []*filestore.Store{open(t, root), open(t, root)}
	const key = "vol/marker"
	const racers = 8
	for round := range 30 {
		datas := make([][]byte, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			datas[i] = storetest.RandomBytes(64 << 10)
			opts := objstore.PutOptions{IfNoneMatch: true, Metadata: map[string]string{"racer": strconv.Itoa(i)}}
			wg.Go(func() { _, errs[i] = stores[i%2].Put(t.Context(), key, datas[i], opts) })
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: racers %d and %d both created %s", round, winner, i, key)
			case err == nil:
				winner = i
			case !errors.Is(err, objstore.ErrPreconditionFailed):
				t.Fatalf("round %d: racer %d: %v; want ErrPreconditionFailed", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer created %s", round, key)
		}
		for _, s := range stores {
			got, a := storetest.MustGet(t, s, key, 0, -1)
			if !bytes.Equal(got, datas[winner]) || a.Metadata["racer"] != strconv.Itoa(winner) || a.ETag != md5hex(got) {
				t.Fatalf("round %d: %s holds %d bytes with metadata %v, ETag %s; want racer %d's", round, key, len(got), a.Metadata, a.ETag, winner)
			}
		}
		if err := stores[round%2].Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
}

// A listing reads the whole directory whatever its prefix: a device must
// not split its listing into ranges here, each a full read.
func TestListScansAll(t *testing.T) {
	if !objstore.ListScansAll(open(t, t.TempDir())) {
		t.Error("filestore says its listings read only the names that match")
	}
}
