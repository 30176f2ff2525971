package kernel

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/objbacker/objbacker/internal/inflight"
)

// export is an Export with its id, size and capabilities resolved once,
// and its FLUSH ordering state for one channel.
type export struct {
	*Export
	id   uint32
	size uint64
	fua  FUAWriter
	trim Trimmer
	// lender, when set, serves READs of at least lendMin bytes.
	lender  Lender
	barrier *inflight.WriteBarrier
}

// lendMin is the smallest READ written from the backend's own buffers. A
// smaller one is copied: the copy is cheap, and a loan costs a second trip
// through the backend's lock to give the buffers back.
const lendMin = 64 << 10

func resolveExports(exports []*Export) ([]*export, error) {
	if len(exports) == 0 || len(exports) > MaxExports {
		return nil, fmt.Errorf("kernel: %d exports; want 1 to %d", len(exports), MaxExports)
	}
	seen := make(map[string]bool, len(exports))
	out := make([]*export, 0, len(exports))
	for i, e := range exports {
		if e == nil || e.Backend == nil {
			return nil, errors.New("kernel: export without a backend")
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("kernel: duplicate export name %q", e.Name)
		}
		seen[e.Name] = true
		r, err := resolveExport(e, uint32(i))
		if err != nil {
			return nil, fmt.Errorf("kernel: export %q: %w", e.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func resolveExport(e *Export, id uint32) (*export, error) {
	if len(e.Name) == 0 || len(e.Name) > NameMax || strings.IndexByte(e.Name, 0) >= 0 {
		return nil, fmt.Errorf("name must be 1 to %d bytes without NUL", NameMax)
	}
	if e.BlockSize != 0 && (bits.OnesCount32(e.BlockSize) != 1 || e.BlockSize < SectorSize) {
		return nil, fmt.Errorf("block size %d is not a power of two of at least %d", e.BlockSize, SectorSize)
	}
	size, err := e.Backend.Size()
	if err != nil {
		return nil, fmt.Errorf("size: %w", err)
	}
	if size <= 0 || size%SectorSize != 0 {
		return nil, fmt.Errorf("size %d is not a positive multiple of %d", size, SectorSize)
	}
	r := &export{Export: e, id: id, size: uint64(size), barrier: inflight.NewWriteBarrier()}
	r.fua, _ = e.Backend.(FUAWriter)
	r.trim, _ = e.Backend.(Trimmer)
	r.lender, _ = e.Backend.(Lender)
	return r, nil
}

// info is what HELLO registers for the export.
func (e *export) info() ExportInfo {
	var flags uint32
	if e.ReadOnly {
		flags |= ExportReadOnly
	}
	if e.trim != nil && !e.ReadOnly {
		flags |= ExportTrim
	}
	bs := e.BlockSize
	if bs == 0 {
		bs = SectorSize
	}
	return ExportInfo{Size: e.size, ID: e.id, Flags: flags, SectorSize: SectorSize, BlockSize: bs, Name: e.Name}
}
