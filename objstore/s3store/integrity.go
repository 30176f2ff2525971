package s3store

import (
	"encoding/hex"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
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

// etagMD5 returns the MD5 a single-part ETag holds. Multipart ETags
// ("…-N") and other forms are not content hashes: nil, and the body passes
// unchecked.
func etagMD5(etag string) []byte {
	want, err := hex.DecodeString(etag)
	if err != nil {
		return nil
	}
	return want
}
