package httpnet

import (
	"errors"
	"io"
	"net"
	"net/url"
	"syscall"
)

// IsTransient reports whether err is a network failure that a retry may
// get past: a refused, reset or dropped connection, a response cut short,
// or a timeout. The caller must first rule out its own cancelled context,
// because a network timeout also satisfies
// errors.Is(err, context.DeadlineExceeded).
func IsTransient(err error) bool {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	// A connection the server closed before answering, such as a
	// keep-alive connection it timed out: net/http reports a bare EOF.
	if ue, ok := errors.AsType[*url.Error](err); ok && errors.Is(ue.Err, io.EOF) {
		return true
	}
	return false
}
