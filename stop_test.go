package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// refusingStore refuses block PUTs (8-character keys) as a store that
// revoked the credentials would, and may refuse deleting the mount marker.
type refusingStore struct {
	objstore.Store
	blocks, marker bool
}

var errRefused = fmt.Errorf("%w: 403 AccessDenied", objstore.ErrAccessDenied)

func (s refusingStore) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if s.blocks && len(key) == 8 {
		return objstore.Attrs{}, errRefused
	}
	return s.Store.Put(ctx, key, data, opts)
}

func (s refusingStore) DeleteIfMatch(ctx context.Context, key, etag string) error {
	if s.marker && key == blockmap.MountMarkerKey {
		return errRefused
	}
	return s.Store.DeleteIfMatch(ctx, key, etag)
}

// stopWith opens a device on store, writes a block without flushing it,
// and stops it as serve does; it returns the stop's error and log.
func stopWith(t *testing.T, store objstore.Store) (log string, err error) {
	t.Helper()
	d, err := blockmap.Open(t.Context(), blockmap.Config{Store: store,
		Geometry: blockmap.Geometry{Size: 8 << 20, BlockSize: 1 << 20}, CacheSize: 4 << 20, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	data[0] = 1 // not all zeros, which would be a DELETE
	if _, err := d.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	set := &exportSet{log: slog.New(slog.NewTextHandler(&buf, nil)),
		opened: []*openedExport{{spec: exportSpec{Name: "d", URL: "mem://"}, device: d, store: memstore.New()}}}
	err = set.close()
	return buf.String(), err
}

// TestStopFailuresExit1: a final flush refused by the store is a runtime
// failure (exit 1, as the README says), not bad input, although the cause
// is access denied; and a marker that could not be removed after a
// complete flush is not reported as a failed flush.
func TestStopFailuresExit1(t *testing.T) {
	t.Run("flush refused", func(t *testing.T) {
		log, err := stopWith(t, refusingStore{Store: memstore.New(), blocks: true})
		if !errors.Is(err, objstore.ErrAccessDenied) || exitCode(err) != 1 {
			t.Errorf("stop: %v, exit code %d; want an access-denied flush failure and exit code 1", err, exitCode(err))
		}
		if !strings.Contains(log, "FLUSH FAILED") {
			t.Errorf("no FLUSH FAILED in the log:\n%s", log)
		}
	})
	t.Run("marker delete refused", func(t *testing.T) {
		mem := memstore.New()
		log, err := stopWith(t, refusingStore{Store: mem, marker: true})
		if err == nil || exitCode(err) != 1 {
			t.Errorf("stop: %v, exit code %d; want an error and exit code 1", err, exitCode(err))
		}
		if strings.Contains(log, "FLUSH FAILED") || !strings.Contains(log, "mount marker not removed") {
			t.Errorf("the log does not say that only the marker is left:\n%s", log)
		}
		if _, err := mem.Stat(t.Context(), blockmap.BlockKey(1)); err != nil {
			t.Errorf("the block was not stored: %v", err)
		}
	})
}
