package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come from power-of-two size classes, 4 KiB to 32 MiB, so
// steady traffic of any mix of sizes allocates nothing. Each buffer has
// replyHeaderLen bytes of headroom so a READ reply goes out as one Write of
// header and data without copying.
const (
	minBufShift = 12
	maxBufShift = 25
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func init() {
	for i := range bufPools {
		size := replyHeaderLen + 1<<(minBufShift+i)
		bufPools[i].New = func() any {
			b := make([]byte, size)
			return &b
		}
	}
}

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuffer returns a buffer of replyHeaderLen+n bytes; n must not exceed
// 1<<maxBufShift. The pointer is what putBuffer wants back.
func getBuffer(n int) *[]byte {
	b := bufPools[bufClass(n)].Get().(*[]byte)
	*b = (*b)[:replyHeaderLen+n]
	return b
}

func putBuffer(b *[]byte) {
	*b = (*b)[:cap(*b)]
	bufPools[bufClass(cap(*b)-replyHeaderLen)].Put(b)
}
