package inflight

import (
	"math/bits"
	"sync"
)

// Buffers hands out payload buffers from power-of-two size classes, 4 KiB
// up to a maximum, so steady traffic of any mix of sizes allocates nothing.
// Each buffer has headroom bytes in front of the payload, so a READ reply
// goes out as one write of header and data without a copy.
type Buffers struct {
	headroom int
	pools    []sync.Pool
}

const minBufShift = 12

// NewBuffers serves payloads of up to maxPayload bytes.
func NewBuffers(headroom, maxPayload int) *Buffers {
	p := &Buffers{headroom: headroom}
	p.pools = make([]sync.Pool, class(maxPayload)+1)
	for i := range p.pools {
		size := headroom + 1<<(minBufShift+i)
		p.pools[i].New = func() any {
			b := make([]byte, size)
			return &b
		}
	}
	return p
}

func class(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// Get returns a buffer of headroom+n bytes, n at most the maximum payload.
// The pointer is what Put wants back.
func (p *Buffers) Get(n int) *[]byte {
	b := p.pools[class(n)].Get().(*[]byte)
	*b = (*b)[:p.headroom+n]
	return b
}

// Put returns a buffer for reuse.
func (p *Buffers) Put(b *[]byte) {
	*b = (*b)[:cap(*b)]
	p.pools[class(cap(*b)-p.headroom)].Put(b)
}
