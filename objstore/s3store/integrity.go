package s3store

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/objstore"
)

// hasChecksum reports whether the response carries a checksum the SDK
// validates while the body is read.
func hasChecksum(out *s3.GetObjectOutput) bool {
	return out.ChecksumCRC32 != nil || out.ChecksumCRC32C != nil || out.ChecksumCRC64NVME != nil ||
		out.ChecksumSHA1 != nil || out.ChecksumSHA256 != nil
}

// isChecksumMismatch recognises the SDK's validation failure, whose type
// is internal to the SDK.
func isChecksumMismatch(err error) bool {
	return strings.Contains(err.Error(), "checksum did not match")
}

// md5Verifier checks a body against the MD5 its ETag holds and fails the
// final read with objstore.ErrCorrupt on a mismatch. Multipart ETags
// ("…-N") and other ETag forms are not content hashes and pass unchecked.
type md5Verifier struct {
	io.ReadCloser
	want []byte
	h    hash.Hash
	left int64
}

func newMD5Verifier(rc io.ReadCloser, etag string, size int64) io.ReadCloser {
	want, err := hex.DecodeString(etag)
	if err != nil || len(want) != md5.Size {
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
			return n, fmt.Errorf("%w: MD5 %x, ETag %x", objstore.ErrCorrupt, got, v.want)
		}
	}
	return n, err
}
