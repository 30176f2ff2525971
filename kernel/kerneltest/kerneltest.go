// Package kerneltest fakes the ZFS module's end of an objbacker channel for
// tests: it speaks the protocol of kernel/module/include/zfs_objbacker.h
// on one end of a socket pair whose other end is what a kernel.Server
// serves, as it would serve /dev/zfs_objbacker. Like the kernel, it
// registers the daemon's exports, sends many requests at once with its own
// ids, matches replies by id, checks that each reply echoes its request,
// and records the BYEs.
package kerneltest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/objbacker/objbacker/kernel"
)

// A Kernel is the kernel's end of one channel.
type Kernel struct {
	conn io.ReadWriteCloser
	r    *bufio.Reader
	wmu  sync.Mutex // one message at a time on the wire
	// closed is set by Close, whose effect on the reader is no violation.
	closed atomic.Bool

	mu      sync.Mutex
	exports []kernel.ExportInfo
	nextID  uint64
	pending map[uint64]*call
	byes    []kernel.Header
	err     error // the first protocol violation by the daemon
	done    chan struct{}
}

type call struct {
	req   kernel.Header
	reply chan Reply
}

// Reply is the daemon's answer to one request.
type Reply struct {
	kernel.Header
	Data []byte // a successful READ's data
}

// Pair returns a fake kernel and the daemon's end of its channel: an
// *os.File on a non-blocking Unix socket, which, like the real device,
// supports deadlines through the runtime's poller.
func Pair() (*Kernel, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return New(os.NewFile(uintptr(fds[0]), "kerneltest")), os.NewFile(uintptr(fds[1]), "zfs_objbacker"), nil
}

// New returns a fake kernel speaking on conn, the kernel's end of a
// channel.
func New(conn io.ReadWriteCloser) *Kernel {
	return &Kernel{conn: conn, r: bufio.NewReader(conn), pending: make(map[uint64]*call), done: make(chan struct{})}
}

// Accept reads the daemon's HELLO, checks it as the kernel does, answers
// it with reply and starts reading the daemon's messages. A malformed
// HELLO is answered with EINVAL and returned as an error.
func (k *Kernel) Accept(reply kernel.HelloReply) ([]kernel.ExportInfo, error) {
	h, payload, err := k.readHello()
	if err != nil {
		return nil, err
	}
	exports, err := kernel.ParseHello(payload)
	if err == nil {
		err = checkUnique(exports)
	}
	if err != nil {
		k.answerHello(h, syscall.EINVAL, kernel.Version, nil)
		return nil, err
	}
	if err := k.answerHello(h, 0, kernel.Version, kernel.AppendHelloReply(nil, reply)); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.exports = exports
	k.mu.Unlock()
	go k.readMessages()
	return exports, nil
}

// Refuse reads the daemon's HELLO and refuses it with status, saying it
// speaks version.
func (k *Kernel) Refuse(status syscall.Errno, version uint16) error {
	h, _, err := k.readHello()
	if err != nil {
		return err
	}
	return k.answerHello(h, status, version, nil)
}

func (k *Kernel) readHello() (kernel.Header, []byte, error) {
	var hb [kernel.HeaderLen]byte
	if _, err := io.ReadFull(k.r, hb[:]); err != nil {
		return kernel.Header{}, nil, fmt.Errorf("reading HELLO: %w", err)
	}
	h := kernel.DecodeHeader(hb[:])
	if h.Magic != kernel.RequestMagic || h.Op != kernel.OpHello || h.Version != kernel.Version ||
		h.Offset != 0 || h.Flags != 0 || h.Export != 0 || h.Status != 0 {
		return h, nil, fmt.Errorf("expected a HELLO, got %+v", h)
	}
	if h.Length > 8+kernel.MaxExports*kernel.ExportInfoLen {
		return h, nil, fmt.Errorf("HELLO of %d bytes", h.Length)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(k.r, payload); err != nil {
		return h, nil, fmt.Errorf("reading HELLO: %w", err)
	}
	return h, payload, nil
}

func (k *Kernel) answerHello(req kernel.Header, status syscall.Errno, version uint16, payload []byte) error {
	h := kernel.Header{Magic: kernel.ReplyMagic, Version: version, Op: kernel.OpHello, ID: req.ID, Length: uint32(len(payload)), Status: status}
	return k.WriteRaw(append(kernel.AppendHeader(nil, h), payload...))
}

func checkUnique(exports []kernel.ExportInfo) error {
	ids, names := map[uint32]bool{}, map[string]bool{}
	for _, e := range exports {
		if ids[e.ID] || names[e.Name] {
			return fmt.Errorf("export %q (id %d) registered twice", e.Name, e.ID)
		}
		ids[e.ID], names[e.Name] = true, true
	}
	return nil
}

// Export returns the registered export called name.
func (k *Kernel) Export(name string) (kernel.ExportInfo, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range k.exports {
		if e.Name == name {
			return e, true
		}
	}
	return kernel.ExportInfo{}, false
}

// Send writes a request with a fresh id and returns where its reply will
// arrive; the channel is closed without a reply if the daemon's end
// closes first. Magic and Version default to the protocol's when zero;
// payload follows the header as it is (a WRITE's data).
func (k *Kernel) Send(h kernel.Header, payload []byte) (<-chan Reply, error) {
	if h.Magic == 0 {
		h.Magic = kernel.RequestMagic
	}
	if h.Version == 0 {
		h.Version = kernel.Version
	}
	c := &call{reply: make(chan Reply, 1)}
	k.mu.Lock()
	if k.isDone() {
		k.mu.Unlock()
		return nil, errors.New("kerneltest: the channel is closed")
	}
	k.nextID++
	h.ID = k.nextID
	c.req = h
	k.pending[h.ID] = c
	k.mu.Unlock()
	if err := k.WriteRaw(append(kernel.AppendHeader(nil, h), payload...)); err != nil {
		return nil, err
	}
	return c.reply, nil
}

// Do sends a request and waits for its reply.
func (k *Kernel) Do(ctx context.Context, h kernel.Header, payload []byte) (Reply, error) {
	ch, err := k.Send(h, payload)
	if err != nil {
		return Reply{}, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return Reply{}, fmt.Errorf("kerneltest: no reply to %v: the channel closed (%v)", h.Op, k.Err())
		}
		return r, nil
	case <-ctx.Done():
		return Reply{}, ctx.Err()
	}
}

// WriteRaw writes b to the daemon as it is.
func (k *Kernel) WriteRaw(b []byte) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	_, err := k.conn.Write(b)
	return err
}

// readMessages delivers replies and records BYEs until the daemon's end
// closes or breaks the protocol.
func (k *Kernel) readMessages() {
	defer k.finish()
	var hb [kernel.HeaderLen]byte
	for {
		if _, err := io.ReadFull(k.r, hb[:]); err != nil {
			if !errors.Is(err, io.EOF) && !k.closed.Load() {
				k.violation(fmt.Errorf("reading: %w", err))
			}
			return
		}
		h := kernel.DecodeHeader(hb[:])
		switch {
		case h.Magic == kernel.RequestMagic && h.Op == kernel.OpBye:
			if h.Version != kernel.Version || h.ID != 0 || h.Offset != 0 || h.Length != 0 || h.Flags != 0 {
				k.violation(fmt.Errorf("malformed BYE %+v", h))
				return
			}
			k.mu.Lock()
			k.byes = append(k.byes, h)
			k.mu.Unlock()
		case h.Magic == kernel.ReplyMagic:
			if err := k.deliver(h); err != nil {
				k.violation(err)
				return
			}
		default:
			k.violation(fmt.Errorf("unexpected message %+v", h))
			return
		}
	}
}

func (k *Kernel) deliver(h kernel.Header) error {
	var data []byte
	if h.HasPayload() {
		if h.Length > kernel.MaxIO {
			return fmt.Errorf("reply with %d bytes of data", h.Length)
		}
		data = make([]byte, h.Length)
		if _, err := io.ReadFull(k.r, data); err != nil {
			return fmt.Errorf("reading reply data: %w", err)
		}
	}
	k.mu.Lock()
	c, ok := k.pending[h.ID]
	delete(k.pending, h.ID)
	k.mu.Unlock()
	if !ok {
		return fmt.Errorf("reply to unknown id %d", h.ID)
	}
	want := c.req
	want.Magic, want.Status = kernel.ReplyMagic, h.Status
	want.Version = kernel.Version
	if h != want {
		return fmt.Errorf("reply %+v does not echo its request %+v", h, c.req)
	}
	c.reply <- Reply{Header: h, Data: data}
	return nil
}

func (k *Kernel) violation(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		k.err = err
	}
}

// finish fails the requests still waiting and marks the channel done.
func (k *Kernel) finish() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, c := range k.pending {
		close(c.reply)
		delete(k.pending, id)
	}
	close(k.done)
}

func (k *Kernel) isDone() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

// Done is closed once the daemon's end has closed (or broke the protocol)
// and every reply has been delivered.
func (k *Kernel) Done() <-chan struct{} { return k.done }

// Err returns the first protocol violation seen from the daemon.
func (k *Kernel) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Byes returns the BYE messages received so far.
func (k *Kernel) Byes() []kernel.Header {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kernel.Header(nil), k.byes...)
}

// Close closes the kernel's end, as a kernel ending the channel would.
func (k *Kernel) Close() error {
	k.closed.Store(true)
	return k.conn.Close()
}
