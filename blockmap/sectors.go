package blockmap

// sectorSet records which sectors of a partially written block hold data,
// so a block can be merged with the stored object later instead of being
// read before every small write.
type sectorSet struct {
	words []uint64
	count int // sectors set
	total int
}

func newSectorSet(blockSize int64) sectorSet {
	total := int(blockSize / SectorSize)
	return sectorSet{words: make([]uint64, (total+63)/64), total: total}
}

func (s *sectorSet) full() bool { return s.count == s.total }

// add marks [off, off+n) as written; off and n are sector-aligned.
func (s *sectorSet) add(off, n int64) {
	for i := int(off / SectorSize); i < int((off+n)/SectorSize); i++ {
		w, b := i/64, uint(i%64)
		if s.words[w]&(1<<b) == 0 {
			s.words[w] |= 1 << b
			s.count++
		}
	}
}

// covers reports whether every sector of [off, off+n) is set.
func (s *sectorSet) covers(off, n int64) bool {
	for i := int(off / SectorSize); i < int((off+n)/SectorSize); i++ {
		if s.words[i/64]&(1<<uint(i%64)) == 0 {
			return false
		}
	}
	return true
}

// gaps calls fn for each maximal run of unset sectors, in bytes.
func (s *sectorSet) gaps(fn func(off, n int64)) {
	start := -1
	for i := 0; i <= s.total; i++ {
		set := i < s.total && s.words[i/64]&(1<<uint(i%64)) != 0
		switch {
		case i < s.total && !set && start < 0:
			start = i
		case (set || i == s.total) && start >= 0:
			fn(int64(start)*SectorSize, int64(i-start)*SectorSize)
			start = -1
		}
	}
}
