package storeurl

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestFileURLs(t *testing.T) {
	t.Chdir(t.TempDir())
	abs := filepath.Join(t.TempDir(), "abs")
	for raw, dir := range map[string]string{
		"file://" + abs:    abs,
		"file://./rel/dir": "rel/dir",
	} {
		s, err := Open(t.Context(), raw, Options{CreateDir: true})
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		storetest.MustPut(t, s, "00000001", []byte("x"), objstore.PutOptions{})
		if _, err := os.Stat(filepath.Join(dir, "00000001")); err != nil {
			t.Errorf("%s: object not stored under %s: %v", raw, dir, err)
		}
		s.Close()
	}
}

func TestMemURLsAreIndependent(t *testing.T) {
	a, err := Open(t.Context(), "mem://", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(t.Context(), "mem://", Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, a, "k", []byte("a"), objstore.PutOptions{})
	if _, err := b.Stat(t.Context(), "k"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("two mem:// stores share objects: %v", err)
	}
}

func TestBadURLs(t *testing.T) {
	for _, raw := range []string{
		"",
		"/just/a/path",
		"ftp://host/x",
		"file://host/dir",
		"file://",
		"s3:///prefix",
		"s3://bucket/p?path_style=maybe",
		"s3://bucket/p?endpont=http://x",
		"mem://?size=1G",
		"%zz://x",
	} {
		if _, err := Open(t.Context(), raw, Options{}); !errors.Is(err, objstore.ErrInvalidURL) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidURL", raw, err)
		}
	}
}
