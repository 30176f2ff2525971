// Package payload gives HTTP clients a caller's buffer to send without
// letting them read it after the call returns.
//
// objstore.Store.Put, like io.Writer.Write, must not use its data once it
// returns: the caller reuses the buffer, and blockmap unmaps it when a
// device closes. An HTTP transport may still be reading a request body
// after the response came back (net/http's RoundTrip may close the body in
// another goroutine after it returns, e.g. when the server answered an
// error early). Detach makes any such late read fail instead.
package payload

import (
	"errors"
	"io"
	"sync"
)

// ErrDetached is what a Reader returns once detached.
var ErrDetached = errors.New("request payload read after its request returned")

// Reader is a bytes.Reader that can be detached from its buffer.
type Reader struct {
	mu       sync.Mutex
	data     []byte
	off      int64
	detached bool
}

// NewReader reads data until Detach.
func NewReader(data []byte) *Reader { return &Reader{data: data} }

// Detach drops the buffer; it waits for a read in progress to finish.
func (r *Reader) Detach() {
	r.mu.Lock()
	r.data, r.detached = nil, true
	r.mu.Unlock()
}

func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return 0, ErrDetached
	}
	if r.off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += int64(n)
	return n, nil
}

// writeToChunk bounds what WriteTo hands w at a time, and so how long
// Detach may wait for it: w could be a connection.
const writeToChunk = 64 << 10

// WriteTo lets io.Copy hand the buffer to w (the SDK's checksum hashers)
// without first copying it into a buffer of its own.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		r.mu.Lock()
		if r.detached {
			r.mu.Unlock()
			return total, ErrDetached
		}
		if r.off >= int64(len(r.data)) {
			r.mu.Unlock()
			return total, nil
		}
		chunk := r.data[r.off:min(r.off+writeToChunk, int64(len(r.data)))]
		n, err := w.Write(chunk)
		r.off += int64(n)
		r.mu.Unlock()
		total += int64(n)
		if err == nil && n < len(chunk) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
	}
}

// ReadAt reads as io.ReaderAt does.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return 0, ErrDetached
	}
	if off < 0 {
		return 0, errors.New("payload.Reader.ReadAt: negative offset")
	}
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Seek lets a client rewind the body to retry a request or hash it first.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = int64(len(r.data)) + offset
	default:
		return 0, errors.New("payload.Reader.Seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("payload.Reader.Seek: negative position")
	}
	r.off = abs
	return abs, nil
}

// Len is the number of unread bytes, as bytes.Reader's, which clients use
// to learn a body's length.
func (r *Reader) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off >= int64(len(r.data)) {
		return 0
	}
	return int(int64(len(r.data)) - r.off)
}
