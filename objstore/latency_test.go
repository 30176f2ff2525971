package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestLatencyConformance(t *testing.T) {
	cfg := objstore.LatencyConfig{Latency: time.Millisecond, Bandwidth: 1 << 30, Jitter: 0.5, Seed: 1}
	storetest.Run(t, func(*testing.T) objstore.Store { return objstore.Latency(memstore.New(), cfg) })
}

func TestLatencyNoneIsTheStore(t *testing.T) {
	s := memstore.New()
	if got := objstore.Latency(s, objstore.LatencyConfig{Jitter: 0.5}); got != objstore.Store(s) {
		t.Fatalf("Latency without a latency or bandwidth wraps the store: %T", got)
	}
}

// since runs fn and returns how long it took.
func since(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

func TestLatencyWaits(t *testing.T) {
	const lat = 5 * time.Millisecond
	base := memstore.New()
	s := objstore.Latency(base, objstore.LatencyConfig{Latency: lat})
	ctx := t.Context()
	storetest.MustPut(t, base, "k", []byte("data"), objstore.PutOptions{})

	for op, call := range map[string]func() error{
		"Get": func() error {
			rc, _, err := s.Get(ctx, "k", 0, -1)
			if err == nil {
				rc.Close()
			}
			return err
		},
		"Get missing": func() error {
			if _, _, err := s.Get(ctx, "missing", 0, -1); !errors.Is(err, objstore.ErrNotFound) {
				return fmt.Errorf("err = %v, want ErrNotFound", err)
			}
			return nil
		},
		"Put":           func() error { _, err := s.Put(ctx, "p", []byte("x"), objstore.PutOptions{}); return err },
		"Stat":          func() error { _, err := s.Stat(ctx, "k"); return err },
		"Delete":        func() error { return s.Delete(ctx, "p") },
		"DeleteIfMatch": func() error { return s.DeleteIfMatch(ctx, "gone", "etag") },
		"List":          func() error { return s.List(ctx, "", "", func(objstore.ObjectInfo) error { return nil }) },
	} {
		var err error
		if d := since(func() { err = call() }); d < lat {
			t.Errorf("%s answered after %v, before the latency %v", op, d, lat)
		}
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("%s: %v", op, err)
		}
	}
}

// TestLatencyOverlaps: requests wait side by side, not one after another,
// or a store with latency could never be filled by more requests in flight.
func TestLatencyOverlaps(t *testing.T) {
	const n, lat = 16, 10 * time.Millisecond
	s := objstore.Latency(memstore.New(), objstore.LatencyConfig{Latency: lat})
	storetest.MustPut(t, s, "k", []byte("data"), objstore.PutOptions{})
	d := since(func() {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if i%2 == 0 {
					storetest.MustGet(t, s, "k", 0, -1)
				} else {
					storetest.MustPut(t, s, fmt.Sprintf("k%d", i), []byte("x"), objstore.PutOptions{})
				}
			})
		}
		wg.Wait()
	})
	if d >= n*lat/2 {
		t.Fatalf("%d concurrent requests of %v took %v: they do not overlap", n, lat, d)
	}
}

func TestLatencyListPages(t *testing.T) {
	const lat = 5 * time.Millisecond
	base := memstore.New()
	for i := range 2001 {
		storetest.MustPut(t, base, fmt.Sprintf("k%05d", i), nil, objstore.PutOptions{})
	}
	s := objstore.Latency(base, objstore.LatencyConfig{Latency: lat})
	var got []objstore.ObjectInfo
	// 2001 keys are three pages of 1000.
	if d := since(func() { got = storetest.ListAll(t, s, "") }); d < 3*lat {
		t.Errorf("listing 2001 keys took %v, less than three latencies of %v", d, lat)
	}
	if len(got) != 2001 {
		t.Errorf("listed %d keys, want 2001", len(got))
	}
}

func TestLatencyCancel(t *testing.T) {
	base := memstore.New()
	storetest.MustPut(t, base, "k", []byte("before"), objstore.PutOptions{})
	const lat = 5 * time.Second
	s := objstore.Latency(base, objstore.LatencyConfig{Latency: lat})

	for op, call := range map[string]func(context.Context) error{
		"Get": func(ctx context.Context) error {
			rc, _, err := s.Get(ctx, "k", 0, -1)
			if err == nil {
				rc.Close()
			}
			return err
		},
		"Put": func(ctx context.Context) error {
			_, err := s.Put(ctx, "k", []byte("after"), objstore.PutOptions{})
			return err
		},
		"Stat":          func(ctx context.Context) error { _, err := s.Stat(ctx, "k"); return err },
		"Delete":        func(ctx context.Context) error { return s.Delete(ctx, "k") },
		"DeleteIfMatch": func(ctx context.Context) error { return s.DeleteIfMatch(ctx, "k", "etag") },
		"List": func(ctx context.Context) error {
			return s.List(ctx, "", "", func(objstore.ObjectInfo) error { return nil })
		},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(2*time.Millisecond, cancel)
		var err error
		if d := since(func() { err = call(ctx) }); d >= lat/5 {
			t.Errorf("%s took %v though its context was cancelled after 2ms", op, d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s cancelled during its wait = %v; want context.Canceled", op, err)
		}
		cancel()
	}
	// Requests cancelled during their wait never reached the store.
	if got, _ := storetest.MustGet(t, base, "k", 0, -1); string(got) != "before" {
		t.Errorf("content after cancelled Put and Delete = %q; want %q", got, "before")
	}
}

func TestLatencyBandwidth(t *testing.T) {
	const (
		lat       = 2 * time.Millisecond
		bandwidth = 32 << 20 // bytes per second
		size      = 256 << 10
		transfer  = time.Second * size / bandwidth // 7.8 ms
	)
	s := objstore.Latency(memstore.New(), objstore.LatencyConfig{Latency: lat, Bandwidth: bandwidth})
	data := storetest.RandomBytes(size)
	if d := since(func() { storetest.MustPut(t, s, "k", data, objstore.PutOptions{}) }); d < lat+transfer {
		t.Errorf("Put of %d bytes at %d B/s took %v, less than latency + transfer %v", size, bandwidth, d, lat+transfer)
	}
	var got []byte
	if d := since(func() { got, _ = storetest.MustGet(t, s, "k", 0, -1) }); d < lat+transfer {
		t.Errorf("Get of %d bytes at %d B/s took %v, less than latency + transfer %v", size, bandwidth, d, lat+transfer)
	}
	if !bytes.Equal(got, data) {
		t.Error("paced Get returned other bytes than were put")
	}

	// A context that ends while the body is paced ends the body.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	slow := objstore.Latency(s, objstore.LatencyConfig{Bandwidth: 1})
	rc, _, err := slow.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	time.AfterFunc(2*time.Millisecond, cancel)
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Errorf("reading a paced body past its context's end = %v; want context.Canceled", err)
	}
}
