package storeurl

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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
		"mem://?latency=30",
		"mem://?latency=-1ms",
		"mem://?latency=soon",
		"mem://?bandwidth=0",
		"mem://?bandwidth=-1M",
		"mem://?bandwidth=fast",
		"mem://?latency=1ms&jitter=1.5",
		"mem://?latency=1ms&jitter=-0.1",
		"mem://?latency=1ms&jitter=NaN",
		"file://./dir?latency=1x",
		"file://./dir?latency=1ms&latencyy=2ms",
		// Checked before any connection is tried.
		"s3://bucket/p?endpoint=http://127.0.0.1:1&latency=fast",
	} {
		if _, err := Open(t.Context(), raw, Options{}); !errors.Is(err, objstore.ErrInvalidURL) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidURL", raw, err)
		}
	}
}

// TestLatencyParams: every scheme takes the latency parameters, and they
// reach objstore.Latency, not the driver.
func TestLatencyParams(t *testing.T) {
	const lat = 5 * time.Millisecond
	dir := t.TempDir()
	for _, raw := range []string{
		"mem://?latency=5ms",
		"mem://?latency=5ms&bandwidth=100M&jitter=0",
		"mem://?bandwidth=1.5G&latency=0.005s",
		"file://" + dir + "?latency=5ms&bandwidth=4096000",
	} {
		s, err := Open(t.Context(), raw, Options{})
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		start := time.Now()
		storetest.MustPut(t, s, "k", []byte("x"), objstore.PutOptions{})
		if d := time.Since(start); d < lat {
			t.Errorf("%s: Put answered after %v, before the latency", raw, d)
		}
		s.Close()
	}
}

func TestDelayed(t *testing.T) {
	for raw, want := range map[string]bool{
		"mem://":                       false,
		"mem://?latency=0":             true,
		"file:///d?bandwidth=1M":       true,
		"s3://b/p?endpoint=x&jitter=0": true,
		"s3://b/p?endpoint=x":          false,
		"%zz://x":                      false,
	} {
		if got := Delayed(raw); got != want {
			t.Errorf("Delayed(%q) = %v, want %v", raw, got, want)
		}
	}
}
