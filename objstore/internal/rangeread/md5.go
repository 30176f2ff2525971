package rangeread

import (
	"crypto/md5"
	"fmt"
	"hash"
	"io"

	"github.com/objbacker/objbacker/objstore"
)

// VerifyMD5 checks a whole-object body of size bytes against want, the MD5
// the service keeps for it (named by source in the error: "ETag",
// "Content-MD5"), and fails the final read with objstore.ErrCorrupt on a
// mismatch, so that damage in flight is caught rather than served. A want
// that is not an MD5 (objects assembled from parts by other tools) leaves
// the body unchecked.
func VerifyMD5(rc io.ReadCloser, want []byte, size int64, source string) io.ReadCloser {
	if len(want) != md5.Size {
		return rc
	}
	return &md5Verifier{ReadCloser: rc, want: want, source: source, h: md5.New(), left: size}
}

type md5Verifier struct {
	io.ReadCloser
	want   []byte
	source string
	h      hash.Hash
	left   int64
}

func (v *md5Verifier) Read(p []byte) (int, error) {
	n, err := v.ReadCloser.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if err == io.EOF && v.left == 0 {
		if got := v.h.Sum(nil); string(got) != string(v.want) {
			return n, fmt.Errorf("%w: MD5 %x, %s %x", objstore.ErrCorrupt, got, v.source, v.want)
		}
	}
	return n, err
}
