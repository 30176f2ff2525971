package blockmap

import (
	"fmt"
	"math/bits"
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
		return fmt.Errorf("%w: block size %s outside %s … %s", ErrInvalidConfig, FormatSize(bs), FormatSize(MinBlockSize), FormatSize(MaxBlockSize))
	}
	if g.Size <= 0 {
		return fmt.Errorf("%w: size %d must be positive", ErrInvalidConfig, g.Size)
	}
	if g.Size%bs != 0 {
		return fmt.Errorf("%w: size %s (%d bytes) is not a multiple of the block size %s", ErrInvalidConfig, FormatSize(g.Size), g.Size, FormatSize(bs))
	}
	if g.Size/bs > maxBlocks {
		return fmt.Errorf("%w: size %s is more than 2^32 blocks of %s", ErrInvalidConfig, FormatSize(g.Size), FormatSize(bs))
	}
	return nil
}

// BlockKey is the object name of block n, as s3backer names it: the block
// number as 8 lower-case, zero-padded hex digits. A store prefix, if any, is
// added by the store (objstore.Prefixed).
func BlockKey(n int64) string { return fmt.Sprintf("%08x", uint32(n)) }

// ParseBlockKey is the inverse of BlockKey; ok is false for other names.
func ParseBlockKey(key string) (n int64, ok bool) {
	if len(key) != 8 {
		return 0, false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		var d int64
		switch {
		case '0' <= c && c <= '9':
			d = int64(c - '0')
		case 'a' <= c && c <= 'f':
			d = int64(c-'a') + 10
		default:
			return 0, false
		}
		n = n<<4 | d
	}
	return n, true
}
