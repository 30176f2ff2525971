package blockmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// s3backer marks a bucket it has mounted with an object holding the host
// name and a timestamp, and refuses to mount a marked bucket. We honour the
// marker and set the same one while we serve, so neither program serves a
// bucket the other is using.
const (
	MountMarkerKey  = "s3backer-mounted"
	metaMountToken  = "s3backer-mount-token"
	mountMarkerType = "text/plain"
)

// ErrMounted: the bucket carries a mount marker.
var ErrMounted = errors.New("bucket is marked as mounted")

// MountMarker describes a mount marker found in a bucket.
type MountMarker struct {
	Host  string
	Since string // UTC, as s3backer writes it: 20260102T150405Z
	Token string
}

func (m MountMarker) String() string {
	return fmt.Sprintf("by %s since %s (token %s)", m.Host, m.Since, m.Token)
}

// ReadMountMarker returns the bucket's mount marker, or ok=false.
func ReadMountMarker(ctx context.Context, store objstore.Store) (m MountMarker, ok bool, err error) {
	rc, a, err := store.Get(ctx, MountMarkerKey, 0, 256)
	if errors.Is(err, objstore.ErrNotFound) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("reading the mount marker: %w", err)
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		return m, false, fmt.Errorf("reading the mount marker: %w", err)
	}
	lines := strings.SplitN(strings.TrimSpace(string(body)), "\n", 2)
	m.Host = lines[0]
	if len(lines) > 1 {
		m.Since = strings.TrimSpace(lines[1])
	}
	m.Token = a.Metadata[metaMountToken]
	return m, true, nil
}

// ResetMountMarker removes the marker, as s3backer --reset-mounted-flag does.
func ResetMountMarker(ctx context.Context, store objstore.Store) error {
	if err := store.Delete(ctx, MountMarkerKey); err != nil {
		return fmt.Errorf("removing the mount marker: %w", err)
	}
	return nil
}

// setMountMarker marks the bucket as ours. Without force it fails with
// ErrMounted if a marker is there, and creates ours only if absent, so two
// daemons starting at once cannot both win.
func setMountMarker(ctx context.Context, store objstore.Store, force bool) error {
	if !force {
		m, ok, err := ReadMountMarker(ctx, store)
		if err != nil {
			return err
		}
		if ok {
			return mountedError(m)
		}
	}
	host, _ := os.Hostname()
	body := fmt.Sprintf("%s\n%s\n", host, time.Now().UTC().Format("20060102T150405Z"))
	_, err := store.Put(ctx, MountMarkerKey, []byte(body), objstore.PutOptions{
		ContentType: mountMarkerType,
		Metadata:    map[string]string{metaMountToken: fmt.Sprintf("%08x", rand.Uint32()|1)},
		IfNoneMatch: !force,
	})
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		m, _, _ := ReadMountMarker(ctx, store)
		return mountedError(m)
	}
	if err != nil {
		return fmt.Errorf("setting the mount marker: %w", err)
	}
	return nil
}

func mountedError(m MountMarker) error {
	return fmt.Errorf("%w %s (%s): another objbacker or s3backer may be serving it; if none is, run `objbacker reset-mounted URL` or pass --force",
		ErrMounted, m, MountMarkerKey)
}
