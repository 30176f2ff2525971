package blockmap

import (
	"errors"
	"syscall"
)

var (
	// ErrInvalidConfig: bad geometry or options, or a mismatch with what the
	// bucket records. The CLI reports these as usage errors (exit code 2).
	ErrInvalidConfig = errors.New("invalid device configuration")
	// ErrClosed: the device was closed.
	ErrClosed = errors.New("device closed")
	// ErrAborted: the device was aborted (Device.Abort).
	ErrAborted = errors.New("device aborted")
)

// Request errors wrap a syscall.Errno so that front ends (NBD, the vdev
// shim) can map them to the protocol's error codes with errors.As.
var (
	errOutOfRange = syscall.EINVAL
	errMisaligned = syscall.EINVAL
	errIO         = syscall.EIO
)
