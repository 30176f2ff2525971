package attach

import (
	"fmt"

	"github.com/objbacker/objbacker/blockmap"
)

// Incarnation is what a server says about its history on an export, at the
// end of the export's NBD_INFO_DESCRIPTION: " [incarnation=T1 continues=T0]".
// T1 is the serving daemon's mount token for the bucket; T0 is the token of
// the daemon that last stopped cleanly on it (everything flushed), or
// "none". A daemon that crashed left no clean stop, so the one after it
// continues an older token.
type Incarnation struct {
	Token     string
	Continues string // "none" for a bucket no daemon stopped cleanly on
}

// ParseIncarnation reads the tag at the end of a description, as the
// daemon writes it (blockmap.IncarnationTag).
func ParseIncarnation(description string) (Incarnation, bool) {
	token, continues, ok := blockmap.ParseIncarnationTag(description)
	if !ok {
		return Incarnation{}, false
	}
	if continues == "" {
		continues = "none"
	}
	return Incarnation{Token: token, Continues: continues}, true
}

func (i Incarnation) String() string {
	return fmt.Sprintf("incarnation=%s continues=%s", i.Token, i.Continues)
}

// Verdict is what a reconnect may do with a server.
type Verdict int

const (
	// Same: the daemon the device was attached to (a network cut, or
	// connections that died under it).
	Same Verdict = iota
	// Continues: a daemon that took over from the attached one after it
	// stopped cleanly (a restart or an upgrade).
	Continues
	// Lossy: a daemon that does not continue the attached one: the
	// attached one stopped without flushing (a crash, then a start with
	// --force), and writes the device was told were done may be lost.
	Lossy
	// Unknown: the server does not say its incarnation, so a clean
	// restart cannot be told from a lossy one.
	Unknown
)

func (v Verdict) String() string {
	switch v {
	case Same:
		return "same daemon"
	case Continues:
		return "clean continuation"
	case Lossy:
		return "lossy restart"
	default:
		return "incarnation unknown"
	}
}

// Judge decides whether a device attached to incarnation attached may be
// reconnected to a server whose export description is description, and
// returns the incarnation to remember after it. attached is empty when
// the device was attached to a server that did not say its incarnation.
func Judge(attached string, description string) (Verdict, Incarnation) {
	inc, ok := ParseIncarnation(description)
	switch {
	case !ok || attached == "":
		return Unknown, inc
	case inc.Token == attached:
		return Same, inc
	case inc.Continues == attached:
		return Continues, inc
	default:
		return Lossy, inc
	}
}
