package blockmap

import (
	"fmt"
	"math/bits"

	"github.com/objbacker/objbacker/internal/bytesize"
)

const (
	// SectorSize is the request alignment: the smallest unit a client may
	// read or write, and the granularity at which partial writes are merged.
	SectorSize = 512

	MinBlockSize     = 4 << 10
	MaxBlockSize     = 64 << 20
	DefaultBlockSize = 1 << 20

	// maxBlocks: s3backer numbers blocks with a uint32 printed as 8 hex digits.
	maxBlocks = 1 << 32
)

// Geometry is the shape of a device: its size and the size of the blocks
// (one object each) it is cut into.
type Geometry struct {
	Size      int64
	BlockSize int64
}

// Blocks is the number of blocks, the last one possibly never written.
func (g Geometry) Blocks() int64 { return g.Size / g.BlockSize }

// Validate returns an ErrInvalidConfig error describing what is wrong.
func (g Geometry) Validate() error {
	bs := g.BlockSize
	if bs <= 0 || bits.OnesCount64(uint64(bs)) != 1 {
		return fmt.Errorf("%w: block size %d is not a power of two", ErrInvalidConfig, bs)
	}
	if bs < MinBlockSize || bs > MaxBlockSize {
		return fmt.Errorf("%w: block size %s outside %s … %s", ErrInvalidConfig, bytesize.Format(bs), bytesize.Format(MinBlockSize), bytesize.Format(MaxBlockSize))
	}
	if g.Size <= 0 {
		return fmt.Errorf("%w: size %d must be positive", ErrInvalidConfig, g.Size)
	}
	if g.Size%bs != 0 {
		return fmt.Errorf("%w: size %s (%d bytes) is not a multiple of the block size %s", ErrInvalidConfig, bytesize.Format(g.Size), g.Size, bytesize.Format(bs))
	}
	if g.Size/bs > maxBlocks {
		return fmt.Errorf("%w: size %s is more than 2^32 blocks of %s", ErrInvalidConfig, bytesize.Format(g.Size), bytesize.Format(bs))
	}
	return nil
}

// Naming is how block numbers become object names, as s3backer names them:
// the block number as 8 lower-case, zero-padded hex digits, optionally
// preceded by a hash of it and a dash (s3backer's --blockHashPrefix), which
// spreads keys over a store's partitions. A store prefix, if any, is added
// by the store (objstore.Prefixed).
type Naming struct {
	HashPrefix bool
}

// Key is the object name of block n.
func (nm Naming) Key(n int64) string {
	if nm.HashPrefix {
		return fmt.Sprintf("%08x-%08x", blockHash(uint32(n)), uint32(n))
	}
	return fmt.Sprintf("%08x", uint32(n))
}

// Parse is the inverse of Key; ok is false for names Key does not make,
// including a hash prefix that does not match the block number.
func (nm Naming) Parse(key string) (n int64, ok bool) {
	if !nm.HashPrefix {
		v, ok := parseHex8(key)
		return int64(v), ok
	}
	if len(key) != 17 || key[8] != '-' {
		return 0, false
	}
	h, ok1 := parseHex8(key[:8])
	v, ok2 := parseHex8(key[9:])
	if !ok1 || !ok2 || h != blockHash(v) {
		return 0, false
	}
	return int64(v), true
}

// blockHash is s3backer's deterministic block-number hash, computed in
// 32-bit arithmetic as s3backer does.
func blockHash(n uint32) uint32 {
	h := n
	for i := uint32(12); i > 0; i-- {
		h = ((h>>8)^h)*0x6b + i
	}
	return h
}

// BlockKey is Naming{}.Key: s3backer's plain block names.
func BlockKey(n int64) string { return Naming{}.Key(n) }

// ParseBlockKey is Naming{}.Parse.
func ParseBlockKey(key string) (int64, bool) { return Naming{}.Parse(key) }

func parseHex8(key string) (uint32, bool) {
	if len(key) != 8 {
		return 0, false
	}
	var n uint32
	for i := 0; i < len(key); i++ {
		c := key[i]
		var d uint32
		switch {
		case '0' <= c && c <= '9':
			d = uint32(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint32(c-'a') + 10
		default:
			return 0, false
		}
		n = n<<4 | d
	}
	return n, true
}
