package blockmap

// presence tracks which blocks have an object in the store. It is filled by
// listing the bucket when the device opens and kept current by every PUT and
// DELETE, so reads of holes cost no request and trims of never-written
// blocks cost no DELETE. Bits live in 32768-block chunks allocated on first
// use, so a sparse 4 PiB device costs memory only where it has data.
type presence struct {
	chunks map[int64]*[chunkWords]uint64
	count  int64
}

const (
	chunkBlocks = 1 << 15
	chunkWords  = chunkBlocks / 64
)

func newPresence() presence { return presence{chunks: make(map[int64]*[chunkWords]uint64)} }

func (p *presence) has(n int64) bool {
	c := p.chunks[n/chunkBlocks]
	if c == nil {
		return false
	}
	i := n % chunkBlocks
	return c[i/64]&(1<<uint(i%64)) != 0
}

func (p *presence) set(n int64, present bool) {
	c := p.chunks[n/chunkBlocks]
	if c == nil {
		if !present {
			return
		}
		c = new([chunkWords]uint64)
		p.chunks[n/chunkBlocks] = c
	}
	i := n % chunkBlocks
	w, bit := &c[i/64], uint64(1)<<uint(i%64)
	switch {
	case present && *w&bit == 0:
		*w |= bit
		p.count++
	case !present && *w&bit != 0:
		*w &^= bit
		p.count--
	}
}
