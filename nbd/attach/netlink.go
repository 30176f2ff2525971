package attach

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// The kernel's generic-netlink NBD family (include/uapi/linux/nbd-netlink.h).
const (
	familyName = "nbd"
	mcastGroup = "nbd_mc_group"
	version    = 1

	cmdConnect     = 1
	cmdDisconnect  = 2
	cmdReconfigure = 3
	cmdLinkDead    = 4
	cmdStatus      = 5

	attrIndex           = 1 // u32
	attrSizeBytes       = 2 // u64
	attrBlockSizeBytes  = 3 // u64
	attrTimeout         = 4 // u64, seconds
	attrServerFlags     = 5 // u64, the transmission flags of the handshake
	attrClientFlags     = 6 // u64
	attrSockets         = 7 // nested: sockItem { sockFD }
	attrDeadConnTimeout = 8 // u64, seconds
	attrDeviceList      = 9 // nested: deviceItem { deviceIndex, deviceConnected }

	sockItem = 1
	sockFD   = 1 // u32

	deviceItem      = 1
	deviceIndex     = 1 // u32
	deviceConnected = 2 // u8
)

// Config is what NBD_CMD_CONNECT tells the kernel about a device.
type Config struct {
	// Index is the device, N of /dev/nbdN; negative lets the kernel pick
	// the first free one (or create one).
	Index int
	Size  uint64
	// BlockSize is the device's logical block size: a power of two from
	// 512 to the page size.
	BlockSize uint64
	// ServerFlags are the transmission flags from the handshake, passed on
	// as they are: the kernel sends FLUSH, FUA and TRIM, and uses several
	// connections, only when the server advertised them.
	ServerFlags uint16
	// Timeout is the per-request timeout in seconds (0: the kernel's 30 s,
	// but then a request lost with its connection is never re-sent).
	Timeout uint64
	// DeadConnTimeout is how long, in seconds, the kernel holds requests
	// while no connection is alive, waiting for a RECONFIGURE.
	DeadConnTimeout uint64
}

// Kernel is the netlink conversation with the NBD driver.
type Kernel struct {
	c      *genetlink.Conn
	family genetlink.Family
}

// ErrNoFamily means the nbd module is not loaded (or not built).
var ErrNoFamily = errors.New(`no generic-netlink family "nbd": load the nbd module (modprobe nbd)`)

// DialKernel opens a netlink socket to the NBD driver.
func DialKernel() (*Kernel, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	k, err := newKernel(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return k, nil
}

// newKernel looks the family up on c, which it then owns.
func newKernel(c *genetlink.Conn) (*Kernel, error) {
	f, err := c.GetFamily(familyName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoFamily
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: family %q: %w", familyName, err)
	}
	return &Kernel{c: c, family: f}, nil
}

// Close closes the netlink socket.
func (k *Kernel) Close() error { return k.c.Close() }

// execute sends a request and reads its answer. CONNECT and STATUS answer
// with a message of their own, the others with nothing but an
// acknowledgement. Asking a command that answers for an acknowledgement
// too would leave that second message unread, and the next request would
// read it as its own answer (seen on 6.1: "mismatched sequence in netlink
// reply" on every request after the CONNECT). Errors come back either way.
func (k *Kernel) execute(cmd uint8, data []byte) ([]genetlink.Message, error) {
	flags := netlink.Request
	if cmd != cmdConnect && cmd != cmdStatus {
		flags |= netlink.Acknowledge
	}
	return k.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: k.family.Version},
		Data:   data,
	}, k.family.ID, flags)
}

// Connect configures a device with the sockets fds, which must be in the
// transmission phase, and returns its index. The kernel takes its own
// reference to each socket: the caller closes its descriptors after.
func (k *Kernel) Connect(cfg Config, fds []int) (int, error) {
	data, err := encodeConnect(cfg, fds)
	if err != nil {
		return 0, err
	}
	msgs, err := k.execute(cmdConnect, data)
	if err != nil {
		return 0, fmt.Errorf("NBD_CMD_CONNECT: %w", err)
	}
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return 0, err
		}
		for ad.Next() {
			if ad.Type() == attrIndex {
				return int(ad.Uint32()), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, err
		}
	}
	if cfg.Index >= 0 {
		return cfg.Index, nil
	}
	return 0, errors.New("NBD_CMD_CONNECT: the kernel did not say which device it configured")
}

// Reconfigure hands a configured device new sockets, each of which takes
// the place of a dead connection. A socket for which the kernel finds no
// dead connection is dropped (the kernel closes its reference), and so
// are the ones after it.
func (k *Kernel) Reconfigure(index int, fds []int) error {
	data, err := encodeReconfigure(index, fds)
	if err != nil {
		return err
	}
	if _, err := k.execute(cmdReconfigure, data); err != nil {
		return fmt.Errorf("NBD_CMD_RECONFIGURE nbd%d: %w", index, err)
	}
	return nil
}

// Disconnect disconnects a device: the kernel sends NBD_CMD_DISC on its
// connections, fails what is queued and clears its configuration.
func (k *Kernel) Disconnect(index int) error {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(index))
	data, err := ae.Encode()
	if err != nil {
		return err
	}
	if _, err := k.execute(cmdDisconnect, data); err != nil {
		return fmt.Errorf("NBD_CMD_DISCONNECT nbd%d: %w", index, err)
	}
	return nil
}

// Status reports whether each device is configured (connected), by index;
// index < 0 asks about all of them.
func (k *Kernel) Status(index int) (map[int]bool, error) {
	var data []byte
	if index >= 0 {
		ae := netlink.NewAttributeEncoder()
		ae.Uint32(attrIndex, uint32(index))
		var err error
		if data, err = ae.Encode(); err != nil {
			return nil, err
		}
	}
	msgs, err := k.execute(cmdStatus, data)
	if err != nil {
		return nil, fmt.Errorf("NBD_CMD_STATUS: %w", err)
	}
	out := map[int]bool{}
	for _, m := range msgs {
		if err := decodeStatus(m.Data, out); err != nil {
			return nil, fmt.Errorf("NBD_CMD_STATUS: %w", err)
		}
	}
	return out, nil
}

func encodeConnect(cfg Config, fds []int) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	if cfg.Index >= 0 {
		ae.Uint32(attrIndex, uint32(cfg.Index))
	}
	ae.Uint64(attrSizeBytes, cfg.Size)
	ae.Uint64(attrBlockSizeBytes, cfg.BlockSize)
	ae.Uint64(attrServerFlags, uint64(cfg.ServerFlags))
	ae.Uint64(attrTimeout, cfg.Timeout)
	ae.Uint64(attrDeadConnTimeout, cfg.DeadConnTimeout)
	// No client flags: the device stays after a disconnect, and closing it
	// does not disconnect it.
	ae.Uint64(attrClientFlags, 0)
	ae.Nested(attrSockets, encodeSockets(fds))
	return ae.Encode()
}

func encodeReconfigure(index int, fds []int) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(index))
	ae.Nested(attrSockets, encodeSockets(fds))
	return ae.Encode()
}

func encodeSockets(fds []int) func(*netlink.AttributeEncoder) error {
	return func(nae *netlink.AttributeEncoder) error {
		for _, fd := range fds {
			nae.Nested(sockItem, func(item *netlink.AttributeEncoder) error {
				item.Uint32(sockFD, uint32(fd))
				return nil
			})
		}
		return nil
	}
}

func decodeStatus(b []byte, out map[int]bool) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != attrDeviceList {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != deviceItem {
					continue
				}
				list.Nested(func(item *netlink.AttributeDecoder) error {
					index, connected := -1, false
					for item.Next() {
						switch item.Type() {
						case deviceIndex:
							index = int(item.Uint32())
						case deviceConnected:
							connected = item.Uint8() != 0
						}
					}
					if index >= 0 {
						out[index] = connected
					}
					return item.Err()
				})
			}
			return list.Err()
		})
	}
	return ad.Err()
}

// WatchLinkDead joins the family's multicast group and sends on the
// returned channel the index of each device whose connection the kernel
// declared dead (NBD_CMD_LINK_DEAD), until ctx ends or the socket fails.
// The kernel sends one event per dead connection.
func WatchLinkDead(ctx context.Context) (<-chan int, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	ch, err := watchLinkDead(ctx, c)
	if err != nil {
		c.Close()
	}
	return ch, err
}

// watchLinkDead is WatchLinkDead on c, which it owns.
func watchLinkDead(ctx context.Context, c *genetlink.Conn) (<-chan int, error) {
	f, err := c.GetFamily(familyName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoFamily
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: family %q: %w", familyName, err)
	}
	var group uint32
	for _, g := range f.Groups {
		if g.Name == mcastGroup {
			group = g.ID
		}
	}
	if group == 0 {
		return nil, fmt.Errorf("netlink: family %q has no multicast group %q", familyName, mcastGroup)
	}
	if err := c.JoinGroup(group); err != nil {
		return nil, fmt.Errorf("netlink: joining %q: %w", mcastGroup, err)
	}
	ch := make(chan int, 16)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer c.Close()
		for {
			msgs, _, err := c.Receive()
			if err != nil {
				return
			}
			for _, m := range msgs {
				if m.Header.Command != cmdLinkDead {
					continue
				}
				ad, err := netlink.NewAttributeDecoder(m.Data)
				if err != nil {
					continue
				}
				for ad.Next() {
					if ad.Type() == attrIndex {
						select {
						case ch <- int(ad.Uint32()):
						case <-ctx.Done():
							return
						}
					}
				}
			}
		}
	}()
	return ch, nil
}
