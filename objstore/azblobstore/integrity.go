package azblobstore

import (
	"crypto/md5"
	"fmt"
	"hash"
	"io"

	"github.com/objbacker/objbacker/objstore"
)

// md5Verifier checks a whole-blob body against the Content-MD5 that Azure
// keeps for a blob written with one Put Blob, and fails the final read with
// objstore.ErrCorrupt on a mismatch, so that damage in flight is caught
// rather than served.
type md5Verifier struct {
	io.ReadCloser
	want []byte
	h    hash.Hash
	left int64
}

func newMD5Verifier(rc io.ReadCloser, want []byte, size int64) io.ReadCloser {
	if len(want) != md5.Size {
		// Blobs assembled from blocks by other tools carry no MD5.
		return rc
	}
	return &md5Verifier{ReadCloser: rc, want: want, h: md5.New(), left: size}
}

func (v *md5Verifier) Read(p []byte) (int, error) {
	n, err := v.ReadCloser.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if err == io.EOF && v.left == 0 {
		if got := v.h.Sum(nil); string(got) != string(v.want) {
			return n, fmt.Errorf("%w: MD5 %x, Content-MD5 %x", objstore.ErrCorrupt, got, v.want)
		}
	}
	return n, err
}
