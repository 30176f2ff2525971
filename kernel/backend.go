package kernel

import "io"

// Backend is what an export serves: the base every export implements, the
// same contract as package nbd's Backend (go-nbd's backend.Backend), so a
// blockmap.Device serves both. Methods are called concurrently. Sync must
// return only when every write completed before it is durable. To choose
// the status the kernel sees, wrap a syscall.Errno (see errno.go); anything
// else is EIO.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	Size() (int64, error)
	Sync() error
}

// FUAWriter makes one write durable before it returns (ZOB_F_FUA). Without
// it, a FUA write is WriteAt followed by Sync.
type FUAWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

// Lender lends its own buffers for a READ reply, so that the data is
// written to the kernel from where the backend keeps it instead of being
// copied into a request buffer first (blockmap.Device).
type Lender interface {
	// LendAt appends to views slices that together hold the n bytes at
	// off. They must not change until release is called, once the reply
	// has been written.
	LendAt(off, n int64, views [][]byte) (_ [][]byte, release func(), err error)
}

// Trimmer discards a range, which then reads as zeros. Only exports whose
// backend implements it are registered with ZOB_EXPORT_TRIM, so the kernel
// sends TRIM to no other.
type Trimmer interface {
	Trim(off, length int64) error
}

// An Export is one backend registered with the kernel under Name, which
// "objbacker:Name" vdevs refer to.
type Export struct {
	// Name is 1 to NameMax bytes without NUL; the CLI allows fewer
	// characters still.
	Name    string
	Backend Backend
	// BlockSize is the backend's preferred I/O size, a hint for the
	// kernel (blockmap: the object size); zero means SectorSize.
	BlockSize uint32
	// ReadOnly registers the export read-only; WRITE and TRIM get EROFS.
	ReadOnly bool
}
