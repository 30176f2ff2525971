package rangeread

import (
	"crypto/md5"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

func TestVerifyMD5(t *testing.T) {
	body := "block bytes"
	sum := md5.Sum([]byte(body))
	read := func(want []byte) error {
		_, err := io.ReadAll(VerifyMD5(io.NopCloser(strings.NewReader(body)), want, int64(len(body)), "ETag"))
		return err
	}
	if err := read(sum[:]); err != nil {
		t.Fatalf("matching MD5: %v", err)
	}
	bad := sum
	bad[0] ^= 1
	err := read(bad[:])
	if !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), "ETag") {
		t.Fatalf("mismatching MD5: %v, want ErrCorrupt naming the ETag", err)
	}
	if err := read([]byte("not an md5")); err != nil {
		t.Fatalf("a non-MD5 checksum must leave the body unchecked: %v", err)
	}
}
