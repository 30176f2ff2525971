package blockmap

import (
	"bytes"
	"compress/zlib"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// s3backerBlock stores a block the way s3backer does, optionally deflated.
func s3backerBlock(t *testing.T, s objstore.Store, key string, data []byte, g Geometry, deflate bool) {
	t.Helper()
	opts := objstorePut(g)
	body := data
	if deflate {
		var z bytes.Buffer
		w := zlib.NewWriter(&z)
		w.Write(data)
		w.Close()
		body, opts.ContentEncoding = z.Bytes(), "deflate"
	}
	if _, err := s.Put(t.Context(), key, body, opts); err != nil {
		t.Fatal(err)
	}
}

func TestServesS3backerBuckets(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	for _, tc := range []struct {
		name    string
		naming  Naming
		deflate bool
	}{
		{"plain", Naming{}, false},
		{"hash prefix", Naming{HashPrefix: true}, false},
		{"compressed", Naming{}, true},
		{"hash prefix, compressed", Naming{HashPrefix: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			b0, b5 := pattern(mib, 20), bytes.Repeat([]byte("s3backer"), mib/8)
			s3backerBlock(t, mem, tc.naming.Key(0), b0, g, tc.deflate)
			s3backerBlock(t, mem, tc.naming.Key(5), b5, g, tc.deflate)
			d := testDevice(t, mem, Geometry{}, 8*mib)
			if d.Geometry() != g || d.Naming() != tc.naming {
				t.Fatalf("detected %+v %+v", d.Geometry(), d.Naming())
			}
			got := make([]byte, 6*mib)
			if _, err := d.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:mib], b0) || !isZero(got[mib:5*mib]) || !bytes.Equal(got[5*mib:], b5) {
				t.Fatal("read back differs from what s3backer stored")
			}
			// Our writes keep s3backer's names, so s3backer reads them back.
			if _, err := d.WriteAtFUA(pattern(mib, 21), 7*mib); err != nil {
				t.Fatal(err)
			}
			if !exists(t, mem, tc.naming.Key(7)) {
				t.Fatalf("block 7 not stored as %s", tc.naming.Key(7))
			}
		})
	}
}

func TestRefusesEncodingsItCannotRead(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	for _, tc := range []struct {
		name, encoding, hmac, want string
		key                        int64
	}{
		{"encrypted block 0", "deflate, encrypt-AES-128-CBC", "00ff", "--encrypt", 0},
		{"encrypted, block 0 a hole", "encrypt-AES-256-CBC", "00ff", "--encrypt", 3},
		{"zstd", "zstd", "", "--compress=zstd", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			opts := objstorePut(g)
			opts.ContentEncoding = tc.encoding
			if tc.hmac != "" {
				opts.Metadata[MetaHMAC] = tc.hmac
			}
			if tc.key != 0 {
				// s3backer's geometry lives on block 0; without it, say so.
				if _, err := Open(t.Context(), Config{Store: mem}); err == nil {
					t.Fatal("opened a bucket with no geometry")
				}
				writeDescriptor(t.Context(), mem, Layout{Geometry: g})
			}
			if _, err := mem.Put(t.Context(), BlockKey(tc.key), []byte("ciphertext"), opts); err != nil {
				t.Fatal(err)
			}
			_, err := Open(t.Context(), Config{Store: mem})
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrInvalidConfig naming %s", err, tc.want)
			}
			if _, ok, _ := ReadMountMarker(t.Context(), mem); ok {
				t.Fatal("a refused bucket was left marked as mounted")
			}
		})
	}
}

func TestEncryptedBlockReadIsEIO(t *testing.T) {
	mem := memstore.New()
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	d := testDevice(t, mem, g, 8*mib)
	// A block written behind our back (after start-up checks) with an
	// encoding we cannot read must fail the read, not serve its bytes.
	opts := objstorePut(g)
	opts.ContentEncoding = "encrypt-AES-128-CBC"
	mem.Put(t.Context(), BlockKey(2), []byte("ciphertext"), opts)
	d.mu.Lock()
	d.present.set(2, true)
	d.mu.Unlock()
	_, err := d.ReadAt(make([]byte, 4096), 2*mib)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "--encrypt") {
		t.Fatalf("err = %v; want EIO naming --encrypt", err)
	}
}

func TestMountMarker(t *testing.T) {
	mem := memstore.New()
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	d := testDevice(t, mem, g, 8*mib)
	m, ok, err := ReadMountMarker(t.Context(), mem)
	if err != nil || !ok || m.Host == "" || len(m.Since) != len("20060102T150405Z") || len(m.Token) != 8 {
		t.Fatalf("marker while serving: %+v %v %v", m, ok, err)
	}
	_, err = Open(t.Context(), Config{Store: mem})
	if !errors.Is(err, ErrMounted) || !strings.Contains(err.Error(), m.Host) {
		t.Fatalf("second open: err = %v; want ErrMounted naming the host", err)
	}
	forced, err := Open(t.Context(), Config{Store: mem, Force: true})
	if err != nil {
		t.Fatalf("forced open: %v", err)
	}
	forced.Close()
	d.Close()
	if _, ok, _ := ReadMountMarker(t.Context(), mem); ok {
		t.Fatal("marker left after a clean close")
	}
	// A second Close must not remove the marker of the device that has
	// the bucket now.
	next := testDevice(t, mem, Geometry{}, 8*mib)
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok, _ := ReadMountMarker(t.Context(), mem); !ok {
		t.Fatal("a second Close of an old device removed the new device's marker")
	}
	next.Close()

	// A marker left behind (a crash, or s3backer running) blocks until reset.
	mem.Put(t.Context(), MountMarkerKey, []byte("otherhost\n20260101T000000Z\n"), objstore.PutOptions{})
	if _, err := Open(t.Context(), Config{Store: mem}); !errors.Is(err, ErrMounted) || !strings.Contains(err.Error(), "otherhost") {
		t.Fatalf("open with s3backer's marker: %v", err)
	}
	if err := ResetMountMarker(t.Context(), mem); err != nil {
		t.Fatal(err)
	}
	testDevice(t, mem, Geometry{}, 8*mib)
}

func TestMarkerStaysWhenFinalFlushFails(t *testing.T) {
	fs := &faultyStore{Store: memstore.New()}
	d := testDevice(t, fs, Geometry{Size: 8 * mib, BlockSize: mib}, 8*mib)
	d.WriteAt(pattern(4096, 22), 0)
	fs.failPuts.Store(true)
	if err := d.Close(); err == nil {
		t.Fatal("Close reported success with a failing store")
	}
	if _, ok, _ := ReadMountMarker(t.Context(), fs.Store); !ok {
		t.Fatal("the marker must stay after a failed final flush")
	}
}
