package nbd

import "github.com/pojntfx/go-nbd/pkg/backend"

// Backend is go-nbd's backend contract, the base every export implements:
// io.ReaderAt, io.WriterAt, Size and Sync. FLUSH and the final flush on
// disconnect call Sync, which must return only when every write that
// completed before it is durable.
//
// One backend serves every connection to its export, concurrently and with
// requests of one connection in flight together, so all methods must be
// safe for concurrent use. "Every write" in Sync means writes completed on
// any connection: that is what lets the server advertise
// NBD_FLAG_CAN_MULTI_CONN. Offsets need not be aligned (see
// Export.MinBlockSize), unless the backend says otherwise (Aligner). To choose the error a client sees, wrap a
// syscall.Errno: EPERM (also EROFS), EINVAL, ENOSPC (also EDQUOT, EFBIG) and
// EOVERFLOW pass through; anything else becomes EIO.
//
// The optional interfaces below add commands; the server advertises a
// transmission flag only when the export's backend implements its interface.
type Backend = backend.Backend

// FUAWriter makes one write durable before it returns (NBD_CMD_FLAG_FUA).
type FUAWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

// Trimmer discards a range (NBD_CMD_TRIM); it then reads as zeros.
type Trimmer interface {
	Trim(off, length int64) error
}

// Zeroer writes zeros over a range (NBD_CMD_WRITE_ZEROES). With noHole the
// client asked that the range stay allocated; a backend that stores zero
// blocks as holes may still deallocate, which reads back the same.
type Zeroer interface {
	ZeroAt(off, length int64, noHole bool) error
}

// Lender lends its own buffers for a READ reply, so that the data is sent
// from where the backend keeps it instead of being copied into a request
// buffer first (blockmap.Device).
type Lender interface {
	// LendAt appends to views slices that together hold the n bytes at
	// off. They must not change until release is called, once the reply
	// has been sent.
	LendAt(off, n int64, views [][]byte) (_ [][]byte, release func(), err error)
}

// BlockWriter takes writes of exactly one of its blocks into buffers of its
// own, so that the payload is read from the network into its final place
// instead of being copied there (blockmap.Device).
type BlockWriter interface {
	// BlockSize is the size and alignment of the writes it takes.
	BlockSize() int64
	// BlockBuffer returns a buffer of one block, or nil to decline.
	BlockBuffer() []byte
	// ReturnBlockBuffer takes back a buffer that will not be written.
	ReturnBlockBuffer(buf []byte)
	// WriteBlockBuffer writes buf at off, a multiple of len(buf), and owns
	// buf from the call on; with fua it returns once durable.
	WriteBlockBuffer(buf []byte, off int64, fua bool) error
}

// Extenter describes which parts of a range are holes, for
// NBD_CMD_BLOCK_STATUS with base:allocation and for READ replies that send
// holes as hole chunks (blockmap.Device). A backend without it reports
// everything as data.
type Extenter interface {
	// Extents calls fn for consecutive extents from off on, at most
	// maxExtents of them and up to off+n at most, but at least one when
	// n > 0. A hole reads as zeros and costs no backend I/O to read.
	Extents(off, n int64, maxExtents int, fn func(length int64, hole bool)) error
}

// Cacher prefetches a range the client will read soon (NBD_CMD_CACHE). It
// may return before the data is cached.
type Cacher interface {
	Cache(off, n int64) error
}

// FastZeroer says whether zeroing a range is faster than writing it
// (NBD_CMD_FLAG_FAST_ZERO); it must answer at once. Without it, fast zero
// requests get NBD_ENOTSUP.
type FastZeroer interface {
	ZeroIsFast(off, n int64) bool
}

// Aligner is a backend that takes only offsets and lengths that are
// multiples of Alignment, a power of two (blockmap.Device: 512-byte
// sectors). For clients that did not agree to the minimum block size, the
// server turns unaligned requests into aligned ones: it reads the partial
// sectors at either end and merges them (read-modify-write).
type Aligner interface {
	Alignment() int64
}
