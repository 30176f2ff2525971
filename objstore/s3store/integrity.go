package s3store

import (
	"encoding/hex"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
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

// etagIsMD5 reports whether the ETag of a single-part object may be the MD5
// of its bytes: AWS documents that it is not for objects encrypted with
// SSE-KMS (or its dual-layer form) or with a customer-provided key (SSE-C),
// which would otherwise all read as corrupt. SSE-S3 (AES256) and
// unencrypted objects keep the MD5.
func etagIsMD5(out *s3.GetObjectOutput) bool {
	switch {
	case out.SSECustomerAlgorithm != nil:
		return false
	case out.ServerSideEncryption == types.ServerSideEncryptionAwsKms,
		out.ServerSideEncryption == types.ServerSideEncryptionAwsKmsDsse:
		return false
	}
	return true
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
