package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// The suite's device: small blocks, so that a few hundred writes touch
// many objects, and a cache of a quarter of the device, so that reads
// and partial writes go to the store.
const (
	deviceSize = 8 << 20
	blockSize  = 64 << 10
	cacheSize  = 2 << 20
	prefix     = "vol"
)

// blockKey matches the block objects of the export's prefix, s3backer's
// names: the prefix, then the block number as 8 lower-case hex digits.
var blockKey = regexp.MustCompile(`^` + prefix + `/([0-9a-f]{8})$`)

// verify starts a fresh daemon directly on the bucket (--force: a killed
// or stuck daemon may have left its marker), checks what it reads back,
// and stops it, which must be clean.
func (sc *scenario) verify(what string) {
	sc.t.Helper()
	d := sc.daemon(sc.directURL(), "--force", "--read-only")
	sc.readBack(d, what)
	d.stopClean(sc.t)
}

// readBack reads the whole device through d, a daemon started directly on
// the bucket, and checks it against the ledger (every durable write there,
// nothing no write wrote) and against the raw objects in MinIO, read with
// the S3 SDK (every block exactly its object, or zeros with none).
func (sc *scenario) readBack(d *daemon, what string) {
	t := sc.t
	t.Helper()
	out := filepath.Join(t.TempDir(), "device.bin")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Command(t, "nbdcopy"), d.uri(), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: nbdcopy %s: %v\n%s\n%s log tail:\n%s", what, d.uri(), err, b, d.Name, d.Tail(20))
	}
	device, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(device) != deviceSize {
		t.Fatalf("%s: read back %d bytes, want %d", what, len(device), deviceSize)
	}
	observed := make([]int64, deviceSize/unitSize)
	for u := range observed {
		off := int64(u) * unitSize
		observed[u] = decode(off, device[off:off+unitSize])
	}
	lost, corrupted := sc.ledger.check(observed, what)
	if lost > 0 || corrupted > 0 {
		t.Errorf("%s: %d durable writes lost, %d units corrupted", what, lost, corrupted)
	}
	if n := sc.crossCheck(ctx, device, what); n > 0 {
		t.Errorf("%s: %d blocks differ from their objects in the bucket", what, n)
	}
}

// crossCheck compares the device with the raw block objects and returns
// how many blocks differ.
func (sc *scenario) crossCheck(ctx context.Context, device []byte, what string) int {
	t := sc.t
	keys, err := listKeys(ctx, sc.s3, sc.bucket, prefix+"/")
	if err != nil {
		t.Fatalf("%s: listing the bucket: %v", what, err)
	}
	stored := map[int64][]byte{}
	for _, k := range keys {
		m := blockKey.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[1], 16, 64)
		if stored[n], err = getObject(ctx, sc.s3, sc.bucket, k); err != nil {
			t.Fatalf("%s: reading %s: %v", what, k, err)
		}
	}
	differ := 0
	for n := int64(0); n < deviceSize/blockSize; n++ {
		block := device[n*blockSize : (n+1)*blockSize]
		obj, ok := stored[n]
		var problem string
		switch {
		case !ok && !isZero(block):
			problem = "has no object but does not read as zeros"
		case ok && len(obj) != blockSize:
			problem = fmt.Sprintf("object holds %d bytes", len(obj))
		case ok && !bytes.Equal(obj, block):
			problem = "reads differently from its object"
		}
		if problem != "" {
			differ++
			sc.ledger.report("%s: block %d %s", what, n, problem)
		}
		delete(stored, n)
	}
	for n := range stored {
		differ++
		sc.ledger.report("%s: object for block %d, beyond the device's end", what, n)
	}
	sc.fig.Add("raw mismatch", int64(differ))
	return differ
}
