package nbd

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// Size constraint defaults and limits, in bytes.
const (
	DefaultMinBlockSize       = 512
	DefaultPreferredBlockSize = 4096
	// DefaultMaxBlockSize is also the largest allowed (MaxPayload): twice
	// the spec's interoperable payload limit, as nbdkit and nbd-server
	// take. The Linux client sends at most 32 MiB.
	DefaultMaxBlockSize = MaxPayload
	// MaxPayload is the largest READ or WRITE payload served. A WRITE
	// that declares more is taken as a denial of service: its payload is
	// not drained, the connection is dropped.
	MaxPayload = 64 << 20
)

// An Export is one named device offered to clients.
type Export struct {
	// Name is what clients ask for. The empty name selects the only export
	// when there is exactly one; with several, only an export named "".
	Name        string
	Description string
	Backend     Backend
	// ReadOnly advertises NBD_FLAG_READ_ONLY and answers writes, trims and
	// zeroes with EPERM.
	ReadOnly bool

	// Size constraints advertised with NBD_INFO_BLOCK_SIZE; zero selects
	// the Default* constant. MinBlockSize is enforced (EINVAL) only on
	// clients that requested NBD_INFO_BLOCK_SIZE in NBD_OPT_GO, because
	// the spec binds only those; others, such as the kernel's nbd-client,
	// may send any alignment, so backends must accept unaligned I/O.
	// MaxBlockSize bounds READ and WRITE lengths.
	MinBlockSize, PreferredBlockSize, MaxBlockSize uint32

	// MaxBuffered bounds the payload bytes of this export's requests
	// admitted at once, over all its connections (READ data until its
	// reply is sent, WRITE data until it is written); zero means
	// DefaultMaxBuffered. Each export has its own, so that an export
	// whose store is slow or stalled holds up no other; one connection
	// may hold at most half of it. Size it so that the backend's own
	// parallelism fills: requests in flight × request size. A WRITE is
	// admitted only once its payload has been received: until then the
	// payload is held by its connection alone, one at a time and at most
	// MaxBlockSize, so a client that stops sending holds nothing other
	// clients wait for.
	MaxBuffered int64
}

// export is an Export with defaults applied and its capabilities resolved
// once, so the per-request path does no type assertions.
type export struct {
	*Export
	min, preferred, max uint32
	flags               uint16
	fua                 FUAWriter
	trim                Trimmer
	zero                Zeroer
	// blocks, when set, takes writes of exactly blockSize bytes at a
	// multiple of it.
	blocks    BlockWriter
	blockSize uint32
	// lender, when set, serves READs of at least lendMin bytes.
	lender Lender
	// extents (nil: everything is data), cache, fastZero: see Extenter,
	// Cacher, FastZeroer.
	extents  Extenter
	cache    Cacher
	fastZero FastZeroer
	// align is the alignment the backend takes (Aligner), 1 if any; rmw
	// serializes the read-modify-writes of partial units (unaligned.go).
	align int64
	rmw   *rmwLocks
}

// lendMin is the smallest READ sent from the backend's own buffers. A
// smaller one is copied: the copy is cheap, and a loan costs a second
// trip through the backend's lock to give the buffers back.
const lendMin = 64 << 10

func resolveExports(exports []*Export) ([]*export, error) {
	if len(exports) == 0 {
		return nil, errors.New("nbd: no exports")
	}
	seen := make(map[string]bool, len(exports))
	out := make([]*export, 0, len(exports))
	for _, e := range exports {
		if e == nil || e.Backend == nil {
			return nil, errors.New("nbd: export without a backend")
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("nbd: duplicate export name %q", e.Name)
		}
		seen[e.Name] = true
		r, err := resolveExport(e)
		if err != nil {
			return nil, fmt.Errorf("nbd: export %q: %w", e.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func resolveExport(e *Export) (*export, error) {
	r := &export{
		Export:    e,
		min:       orDefault(e.MinBlockSize, DefaultMinBlockSize),
		preferred: orDefault(e.PreferredBlockSize, DefaultPreferredBlockSize),
		max:       orDefault(e.MaxBlockSize, DefaultMaxBlockSize),
	}
	// The limits are the spec's (section "Size constraints").
	switch {
	case !isPowerOfTwo(r.min) || r.min > 64<<10:
		return nil, fmt.Errorf("minimum block size %d is not a power of two up to 64 KiB", r.min)
	case !isPowerOfTwo(r.preferred) || r.preferred < max(r.min, 512):
		return nil, fmt.Errorf("preferred block size %d is not a power of two of at least max(minimum, 512)", r.preferred)
	case r.max < r.preferred || r.max > MaxPayload:
		return nil, fmt.Errorf("maximum block size %d is not between the preferred size and 64 MiB", r.max)
	}

	// CAN_MULTI_CONN is sound because Sync covers writes completed on any
	// connection (see Backend).
	r.flags = protocol.NEGOTIATION_REPLY_FLAGS_HAS_FLAGS | flagSendFlush |
		protocol.NEGOTIATION_REPLY_FLAGS_CAN_MULTI_CONN
	r.lender, _ = e.Backend.(Lender)
	r.extents, _ = e.Backend.(Extenter)
	r.align = 1
	if a, ok := e.Backend.(Aligner); ok {
		r.align = a.Alignment()
		if r.align < 1 || r.align&(r.align-1) != 0 || r.align > int64(r.min) {
			return nil, fmt.Errorf("backend alignment %d is not a power of two up to the minimum block size %d", r.align, r.min)
		}
	}
	r.rmw = &rmwLocks{}
	if r.cache, _ = e.Backend.(Cacher); r.cache != nil {
		r.flags |= flagSendCache
	}
	if e.ReadOnly {
		r.flags |= flagReadOnly
		return r, nil
	}
	if r.blocks, _ = e.Backend.(BlockWriter); r.blocks != nil {
		if bs := r.blocks.BlockSize(); bs > 0 && bs <= int64(r.max) {
			r.blockSize = uint32(bs)
		} else {
			r.blocks = nil
		}
	}
	if r.fua, _ = e.Backend.(FUAWriter); r.fua != nil {
		r.flags |= flagSendFUA
	}
	if r.trim, _ = e.Backend.(Trimmer); r.trim != nil {
		r.flags |= flagSendTrim
	}
	if r.zero, _ = e.Backend.(Zeroer); r.zero != nil {
		// Fast zero is advertised with WRITE_ZEROES: without a FastZeroer
		// every fast zero request fails at once, as the spec allows.
		r.flags |= flagSendWriteZeroes | flagSendFastZero
		r.fastZero, _ = e.Backend.(FastZeroer)
	}
	return r, nil
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

func isPowerOfTwo(v uint32) bool { return bits.OnesCount32(v) == 1 }

// lookupExport resolves a client's export name; see Export.Name for the
// empty name.
func lookupExport(exports []*export, name string) *export {
	if name == "" && len(exports) == 1 {
		return exports[0]
	}
	for _, e := range exports {
		if e.Name == name {
			return e
		}
	}
	return nil
}
