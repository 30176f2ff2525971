package blockmap

import "bytes"

var zeroChunk [64 << 10]byte

// isZero reports whether buf is all zeros. Zero blocks are stored as no
// object at all, as s3backer does.
func isZero(buf []byte) bool {
	for len(buf) > 0 {
		n := min(len(buf), len(zeroChunk))
		if !bytes.Equal(buf[:n], zeroChunk[:n]) {
			return false
		}
		buf = buf[n:]
	}
	return true
}
