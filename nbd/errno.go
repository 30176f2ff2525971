package nbd

import (
	"errors"
	"syscall"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// nbdErrno maps a backend error to the NBD error sent to the client. The
// protocol defines only a few values; a backend selects one by wrapping a
// syscall.Errno. Everything else, including errors without an Errno, is EIO.
func nbdErrno(err error) uint32 {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return errEIO
	}
	switch errno {
	case syscall.EPERM, syscall.EROFS:
		return protocol.TRANSMISSION_ERROR_EPERM
	case syscall.EINVAL:
		return protocol.TRANSMISSION_ERROR_EINVAL
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG: // the spec asks for ENOSPC
		return errENOSPC
	case syscall.EOVERFLOW:
		return errEOVERFLOW
	case syscall.ENOTSUP: // a fast zero that would not be fast
		return errENOTSUP
	default:
		return errEIO
	}
}
