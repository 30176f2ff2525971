package attach

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel stands for the NBD driver behind genltest: it records the
// messages, takes its own reference to each socket it is handed (a dup, as
// the kernel's sockfd_lookup does), and, like the driver's receive
// threads, shuts a socket down when the server closes it and reports the
// dead link.
type fakeKernel struct {
	t        *testing.T
	index    uint32 // what a CONNECT without an index gets
	mu       sync.Mutex
	msgs     []fakeMsg
	fds      []int
	linkDead chan int
	detached bool
	wg       sync.WaitGroup
}

// fakeMsg is one request: its command and attributes (sockets as the
// number of descriptors received).
type fakeMsg struct {
	cmd   uint8
	ack   bool // the request asked for an acknowledgement
	attrs map[uint16]uint64
	socks int
}

func newFakeKernel(t *testing.T) (*fakeKernel, *Kernel) {
	f := &fakeKernel{t: t, index: 5, linkDead: make(chan int, 16)}
	family := genetlink.Family{ID: 0x1f, Name: familyName, Version: version,
		Groups: []genetlink.MulticastGroup{{ID: 7, Name: mcastGroup}}}
	c := genltest.Dial(genltest.ServeFamily(family, f.serve))
	k, err := newKernel(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Close()
		f.mu.Lock()
		for _, fd := range f.fds {
			unix.Shutdown(fd, unix.SHUT_RDWR)
		}
		f.mu.Unlock()
		f.wg.Wait()
		for _, fd := range f.fds {
			unix.Close(fd)
		}
	})
	return f, k
}

func (f *fakeKernel) serve(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
	m := fakeMsg{cmd: greq.Header.Command, ack: nreq.Header.Flags&netlink.Acknowledge != 0, attrs: map[uint16]uint64{}}
	if (m.cmd == cmdConnect || m.cmd == cmdStatus) == m.ack {
		// The driver answers CONNECT and STATUS with a message; an
		// acknowledgement would follow it and be read as the answer to the
		// next request.
		f.t.Errorf("command %d sent with acknowledge=%v", m.cmd, m.ack)
	}
	ad, err := netlink.NewAttributeDecoder(greq.Data)
	if err != nil {
		return nil, err
	}
	var fds []int
	for ad.Next() {
		switch ad.Type() {
		case attrIndex:
			m.attrs[attrIndex] = uint64(ad.Uint32())
		case attrSockets:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					list.Nested(func(item *netlink.AttributeDecoder) error {
						for item.Next() {
							if item.Type() == sockFD {
								fds = append(fds, int(item.Uint32()))
							}
						}
						return nil
					})
				}
				return nil
			})
		default:
			m.attrs[ad.Type()] = ad.Uint64()
		}
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	m.socks = len(fds)
	index := f.index
	if i, ok := m.attrs[attrIndex]; ok {
		index = uint32(i)
	}
	for _, fd := range fds {
		dup, err := unix.Dup(fd)
		if err != nil {
			return nil, fmt.Errorf("fake kernel: fd %d: %v", fd, err)
		}
		f.mu.Lock()
		f.fds = append(f.fds, dup)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.receive(dup, int(index))
	}
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
	if m.cmd == cmdStatus {
		f.mu.Lock()
		connected := !f.detached
		f.mu.Unlock()
		return []genetlink.Message{{Header: genetlink.Header{Command: cmdStatus}, Data: statusReply(index, connected)}}, nil
	}
	if m.cmd == cmdDisconnect {
		f.mu.Lock()
		f.detached = true
		for _, fd := range f.fds {
			unix.Shutdown(fd, unix.SHUT_RDWR)
		}
		f.mu.Unlock()
	}
	if m.cmd == cmdConnect {
		ae := netlink.NewAttributeEncoder()
		ae.Uint32(attrIndex, index)
		b, err := ae.Encode()
		if err != nil {
			return nil, err
		}
		return []genetlink.Message{{Header: genetlink.Header{Command: cmdConnect}, Data: b}}, nil
	}
	return nil, io.EOF
}

// receive reads the socket until the server closes it, then marks it dead
// as nbd_mark_nsock_dead does: a shutdown both ways and a LINK_DEAD event.
func (f *fakeKernel) receive(fd, index int) {
	defer f.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			break
		}
	}
	unix.Shutdown(fd, unix.SHUT_RDWR)
	select {
	case f.linkDead <- index:
	default:
	}
}

func (f *fakeKernel) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.msgs...)
}

// statusReply encodes NBD_ATTR_DEVICE_LIST with one device.
func statusReply(index uint32, connected bool) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(attrDeviceList, func(list *netlink.AttributeEncoder) error {
		list.Nested(deviceItem, func(item *netlink.AttributeEncoder) error {
			item.Uint32(deviceIndex, index)
			var c uint8
			if connected {
				c = 1
			}
			item.Uint8(deviceConnected, c)
			return nil
		})
		return nil
	})
	b, _ := ae.Encode()
	return b
}

// messagesOf leaves out STATUS requests.
func messagesOf(msgs []fakeMsg, cmds ...uint8) []fakeMsg {
	var out []fakeMsg
	for _, m := range msgs {
		for _, c := range cmds {
			if m.cmd == c {
				out = append(out, m)
			}
		}
	}
	return out
}
