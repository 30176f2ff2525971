//go:build linux

package e2e

import (
	"fmt"
	"io"
)

// cpioWriter writes a cpio archive in the "newc" format that the kernel
// unpacks from an initramfs. It needs no cpio program on the host.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
)

// add appends one entry; a directory has no data. Errors stick until close.
func (c *cpioWriter) add(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&cpioDir != 0 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	header := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(header + name + "\x00"))
	c.pad(len(header) + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(p []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
}

// pad aligns what follows n bytes to 4 bytes, as newc requires.
func (c *cpioWriter) pad(n int) {
	c.write(make([]byte, (4-n%4)%4))
}

// close writes the trailer entry that ends the archive.
func (c *cpioWriter) close() error {
	c.add("TRAILER!!!", 0, nil)
	return c.err
}
