package nbd

import (
	"io"
	"sync"
	"syscall"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// Byte-granular I/O. A client that did not agree to the minimum block size
// (NBD_OPT_EXPORT_NAME, or NBD_OPT_GO without NBD_INFO_BLOCK_SIZE) may
// send any offset and length, and the spec asks a server to take them
// (minimum block size 1). A backend that takes only aligned requests
// (Aligner) gets each one cut into an aligned middle, sent as it is, and
// a partial unit at either end, read, merged and written back whole.

// rmwLocks serializes the read-modify-writes of partial units, so that two
// requests that share a unit without overlapping (bytes 0-99 and 100-199
// of one sector) do not undo each other. A request that overlaps another
// in flight has undefined results anyway, as the spec says.
type rmwLocks struct {
	stripes [64]sync.Mutex
}

func (l *rmwLocks) lock(unit int64) func() {
	m := &l.stripes[uint64(unit)%uint64(len(l.stripes))]
	m.Lock()
	return m.Unlock
}

// aligned reports whether req's offset and length suit the backend.
func (c *conn) aligned(req protocol.TransmissionRequestHeader) bool {
	return (req.Offset|uint64(req.Length))&uint64(c.export.align-1) == 0
}

// split cuts [off, off+n) into a head and a tail that each lie within one
// unit of a bytes (either may be empty), and an aligned middle.
func split(off, n, a int64) (head, mid, tail [2]int64) {
	lo, hi := (off+a-1)&^(a-1), (off+n)&^(a-1)
	if hi < lo { // within one unit, touching neither of its ends
		return [2]int64{off, n}, [2]int64{}, [2]int64{}
	}
	return [2]int64{off, lo - off}, [2]int64{lo, hi - lo}, [2]int64{hi, off + n - hi}
}

// readAt reads len(p) bytes at off, aligned or not.
func (c *conn) readAt(p []byte, off int64) error {
	a := c.export.align
	if (off|int64(len(p)))&(a-1) == 0 {
		// A full read counts as success even with an error: io.ReaderAt
		// may report io.EOF alongside the last bytes.
		n, err := c.export.Backend.ReadAt(p, off)
		if n == len(p) {
			return nil
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	head, mid, tail := split(off, int64(len(p)), a)
	for _, part := range [][2]int64{head, mid, tail} {
		if part[1] == 0 {
			continue
		}
		dst := p[part[0]-off : part[0]-off+part[1]]
		if part == mid {
			if err := c.readAt(dst, part[0]); err != nil {
				return err
			}
			continue
		}
		unit := make([]byte, a)
		base := part[0] &^ (a - 1)
		if err := c.readAt(unit, base); err != nil {
			return err
		}
		copy(dst, unit[part[0]-base:])
	}
	return nil
}

// writeUnaligned writes data (nil: zeros) over [off, off+n), whatever its
// alignment: the middle as it is (zeros through the Zeroer), each partial
// unit read, merged and written back.
func (c *conn) writeUnaligned(data []byte, off int64, fua bool) error {
	return c.modify(data, off, int64(len(data)), fua, func(mid [2]int64) error {
		return c.writeAt(data[mid[0]-off:mid[0]-off+mid[1]], mid[0], fua)
	})
}

// modify applies data (nil: zeros) to the partial units of [off, off+n)
// and calls middle for its aligned middle, if any.
func (c *conn) modify(data []byte, off, n int64, fua bool, middle func(mid [2]int64) error) error {
	a := c.export.align
	head, mid, tail := split(off, n, a)
	if mid[1] > 0 {
		if err := middle(mid); err != nil {
			return err
		}
	}
	for _, part := range [][2]int64{head, tail} {
		if part[1] == 0 {
			continue
		}
		if err := c.mergeUnit(data, off, part, fua); err != nil {
			return err
		}
	}
	return nil
}

// mergeUnit read-modify-writes the unit that holds part, a piece of the
// request [off, ...) whose bytes are data (nil: zeros).
func (c *conn) mergeUnit(data []byte, off int64, part [2]int64, fua bool) error {
	a := c.export.align
	base := part[0] &^ (a - 1)
	defer c.export.rmw.lock(base / a)()
	unit := make([]byte, a)
	if err := c.readAt(unit, base); err != nil {
		return err
	}
	piece := unit[part[0]-base : part[0]-base+part[1]]
	if data == nil {
		clear(piece)
	} else {
		copy(piece, data[part[0]-off:])
	}
	return c.writeAt(unit, base, fua)
}

// trim discards [off, off+n). The spec lets a server round a TRIM inwards
// to its alignment: the partial units at either end are left as they are.
func (c *conn) trim(off, n int64) error {
	_, mid, _ := split(off, n, c.export.align)
	if mid[1] == 0 {
		return nil
	}
	return c.export.trim.Trim(mid[0], mid[1])
}

// zero answers WRITE_ZEROES. With NBD_CMD_FLAG_FAST_ZERO it fails at once
// with ENOTSUP, changing nothing, unless the backend says zeroing the
// range is faster than writing it (FastZeroer). FUA is applied by the
// caller (c.fua).
func (c *conn) zero(req protocol.TransmissionRequestHeader) error {
	off, n := int64(req.Offset), int64(req.Length)
	if req.CommandFlags&cmdFlagFastZero != 0 && (c.export.fastZero == nil || !c.export.fastZero.ZeroIsFast(off, n)) {
		return syscall.ENOTSUP
	}
	noHole := req.CommandFlags&cmdFlagNoHole != 0
	if c.aligned(req) {
		return c.export.zero.ZeroAt(off, n, noHole)
	}
	return c.modify(nil, off, n, false, func(mid [2]int64) error {
		return c.export.zero.ZeroAt(mid[0], mid[1], noHole)
	})
}
