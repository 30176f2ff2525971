package kernel

import (
	"errors"
	"syscall"
)

// status maps a backend error to the status sent to the kernel, which
// hands it to ZFS as the ZIO's error. Only the protocol's values pass:
// ZFS treats some errnos specially (ENOTSUP on a flush disables flushing
// for good; ENXIO on a read can suspend the pool), so an arbitrary errno
// from a store must not reach it. Everything else, including errors
// without an Errno, is EIO.
func status(err error) syscall.Errno {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return syscall.EIO
	}
	switch errno {
	case syscall.EINVAL:
		return syscall.EINVAL
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return syscall.ENOSPC
	case syscall.EPERM, syscall.EROFS:
		return syscall.EROFS
	default:
		return syscall.EIO
	}
}
