package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

func testConcurrentDistinctKeys(t *testing.T, s objstore.Store) {
	const workers = 16
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("par/%02d", i)
			data := RandomBytes(64<<10 + i)
			if _, err := s.Put(t.Context(), key, data, objstore.PutOptions{}); err != nil {
				t.Errorf("Put(%q): %v", key, err)
				return
			}
			got, _, err := get(t, s, key, 0, -1)
			if err != nil {
				t.Errorf("Get(%q): %v", key, err)
			} else if !bytes.Equal(got, data) {
				t.Errorf("Get(%q): %s", key, differ(got, data))
			}
		})
	}
	wg.Wait()
	infos := ListAll(t, s, "par/")
	if len(infos) != workers {
		t.Fatalf("List(par/) returned %d entries; want %d", len(infos), workers)
	}
	for i, info := range infos {
		if info.Size != int64(64<<10+i) {
			t.Errorf("List entry %q size %d; want %d", info.Key, info.Size, 64<<10+i)
		}
	}
}

// observation is one read of the contended key: which version's bytes came
// back and the ETag the store reported with them.
type observation struct {
	version int
	etag    string
}

// testConcurrentSameKey has writers replace one block-sized object while
// readers read it whole and in part: every read must be exactly one written
// version (no torn object) and carry that version's ETag.
func testConcurrentSameKey(t *testing.T, s objstore.Store) {
	const key = "contended/block"
	const writers, putsEach, readers, readsEach = 2, 6, 3, 10
	const rangeOff, rangeLen = 512<<10 - 100, 4096
	versions := [][]byte{RandomBytes(1 << 20), RandomBytes(1 << 20), RandomBytes(512 << 10), RandomBytes(1 << 20)}
	whole := map[[32]byte]int{}
	part := map[[32]byte]int{}
	for i, v := range versions {
		whole[sha256.Sum256(v)] = i
		part[sha256.Sum256(window(v, rangeOff, rangeLen))] = i
	}

	var mu sync.Mutex
	etags := map[int]map[string]bool{} // version → ETags its puts returned
	var seen []observation
	record := func(version int, etag string) {
		mu.Lock()
		defer mu.Unlock()
		if etags[version] == nil {
			etags[version] = map[string]bool{}
		}
		etags[version][etag] = true
	}
	put := func(version int) error {
		a, err := s.Put(t.Context(), key, versions[version], objstore.PutOptions{})
		if err == nil {
			record(version, a.ETag)
		}
		return err
	}
	if err := put(0); err != nil {
		t.Fatalf("Put: %v", err)
	}

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range putsEach {
				if err := put((w + i) % len(versions)); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := range readsEach {
				off, n, sums := int64(0), int64(-1), whole
				if (r+i)%2 == 1 {
					off, n, sums = rangeOff, rangeLen, part
				}
				got, a, err := get(t, s, key, off, n)
				if err != nil {
					t.Errorf("Get(%d, %d): %v", off, n, err)
					return
				}
				version, ok := sums[sha256.Sum256(got)]
				if !ok {
					t.Errorf("Get(%d, %d) returned %d bytes matching no written version: a torn object", off, n, len(got))
					return
				}
				mu.Lock()
				seen = append(seen, observation{version, a.ETag})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// ETags are checked once all puts returned, since a read may see a
	// version before its Put has reported the ETag.
	for _, o := range seen {
		if !etags[o.version][o.etag] {
			t.Errorf("a read of version %d carried ETag %q; that version's puts returned %v", o.version, o.etag, etags[o.version])
		}
	}
}
