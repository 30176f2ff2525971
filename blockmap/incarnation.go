package blockmap

import (
	"fmt"
	"regexp"
)

// A client that stays attached to an export while its daemon restarts
// (objbacker attach, the kernel's NBD driver holding requests for a new
// connection) must know whether the daemon it reconnects to holds every
// write the old one acknowledged. A daemon tells it in the export's
// description, as a tag: its own incarnation (its mount token) and the
// incarnation it continues (the one that last stopped cleanly on the
// bucket, CleanStopKey). The client accepts the daemon it was attached to,
// or one that continues it; any other had a crash in between.

// Incarnation returns this device's mount token, and the token of the
// device that last stopped cleanly on the bucket before it ("" if none).
func (d *Device) Incarnation() (token, continues string) {
	return d.mount.Incarnation(), d.mount.Continues()
}

// IncarnationTag is the tag an export's description ends with.
func IncarnationTag(token, continues string) string {
	if continues == "" {
		continues = "none"
	}
	return fmt.Sprintf("[incarnation=%s continues=%s]", token, continues)
}

var incarnationTag = regexp.MustCompile(`\[incarnation=([0-9a-f]+) continues=([0-9a-f]+|none)\]$`)

// ParseIncarnationTag reads the tag at the end of an export's description;
// continues is "" for none. ok is false if there is no tag.
func ParseIncarnationTag(description string) (token, continues string, ok bool) {
	m := incarnationTag.FindStringSubmatch(description)
	if m == nil {
		return "", "", false
	}
	if m[2] == "none" {
		m[2] = ""
	}
	return m[1], m[2], true
}
