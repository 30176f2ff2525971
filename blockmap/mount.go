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

// ErrMountNotReleased: a closing device stored every write, but could not
// give its claim on the bucket back: deleting its marker failed, or the
// marker is another daemon's, set with --force while this one served. The
// error says which.
var ErrMountNotReleased = errors.New("mount marker not removed")

// MountMarker describes a mount marker found in a bucket.
type MountMarker struct {
	Host  string
	Since string // UTC, as s3backer writes it: 20260102T150405Z
	Token string
	ETag  string // of the marker object, for a conditional delete
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
	lines := strings.SplitN(strings.TrimSpace(string(body)), "\n", 3)
	m.Host = lines[0]
	if len(lines) > 1 {
		m.Since = strings.TrimSpace(lines[1])
	}
	m.Token = a.Metadata[metaMountToken]
	m.ETag = a.ETag
	return m, true, nil
}

// ResetMountMarker removes the marker, as s3backer --reset-mounted-flag does.
func ResetMountMarker(ctx context.Context, store objstore.Store) error {
	if err := store.Delete(ctx, MountMarkerKey); err != nil {
		return fmt.Errorf("removing the mount marker: %w", err)
	}
	return nil
}

// CleanStopKey is the object in which a device that stopped cleanly (every
// acknowledged write stored, its marker still its own) leaves its mount
// token, just before it removes its marker. The next device reads it at
// its claim: it continues that incarnation. A client that stays attached
// across a restart (objbacker attach) compares the two, and so tells a
// clean restart from a crash whose lost writes a reconnect would hide.
const CleanStopKey = "objbacker-clean-stop"

// Mount is a claim on a bucket: the mount marker this process set, told
// from any other by its token.
type Mount struct {
	store objstore.Store
	token string
	// continues is the token CleanStopKey held at the claim: the device
	// that last stopped cleanly; "" if none ever did.
	continues string
}

// Incarnation is the claim's token: the one this device leaves in
// CleanStopKey if it stops cleanly.
func (mt *Mount) Incarnation() string { return mt.token }

// Continues is the incarnation of the device that last stopped cleanly on
// the bucket before this claim, or "" if none did.
func (mt *Mount) Continues() string { return mt.continues }

// readCleanStop returns the token in CleanStopKey, or "".
func readCleanStop(ctx context.Context, store objstore.Store) (string, error) {
	rc, _, err := store.Get(ctx, CleanStopKey, 0, 64)
	if errors.Is(err, objstore.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", CleanStopKey, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", CleanStopKey, err)
	}
	return strings.TrimSpace(string(body)), nil
}

// Claim attempts and backoff: Retrying passes a create-only PUT through
// untried, since it cannot tell a conflict from its own earlier attempt
// whose answer was lost. Claim can, by the token, so it retries the PUT
// itself, as patiently as the daemon's store policy (10 attempts, waits
// of up to 0.1 s doubling to 8 s).
const (
	claimAttempts = 10
	claimBaseWait = 100 * time.Millisecond
	claimMaxWait  = 8 * time.Second
)

// ReleaseTimeout bounds giving a claim back when the caller's context is
// gone: a start-up cancelled by SIGTERM still removes its marker.
const ReleaseTimeout = time.Minute

// ClaimMount marks the bucket as ours. Without force it fails with
// ErrMounted if a marker is there, and creates ours only if absent, so two
// daemons starting at once cannot both win. If it fails after a PUT that
// may have stored the marker (an answer lost, a cancelled context), it
// removes that marker if it is ours.
func ClaimMount(ctx context.Context, store objstore.Store, force bool) (*Mount, error) {
	if !force {
		m, ok, err := ReadMountMarker(ctx, store)
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, mountedError(m)
		}
	}
	continues, err := readCleanStop(ctx, store)
	if err != nil {
		return nil, err
	}
	mt := &Mount{store: store, token: fmt.Sprintf("%08x", rand.Uint32()|1), continues: continues}
	host, _ := os.Hostname()
	// The token is in the body too, so that markers of two daemons differ
	// in their ETags, which some stores compute from the body alone (S3's
	// MD5): a conditional delete must not match the other one's.
	body := fmt.Sprintf("%s\n%s\n%s\n", host, time.Now().UTC().Format("20060102T150405Z"), mt.token)
	opts := objstore.PutOptions{
		ContentType: mountMarkerType,
		Metadata:    map[string]string{metaMountToken: mt.token},
		IfNoneMatch: !force,
	}
	for attempt := 1; ; attempt++ {
		_, err := store.Put(ctx, MountMarkerKey, []byte(body), opts)
		switch {
		case err == nil:
			return mt, nil
		case errors.Is(err, objstore.ErrPreconditionFailed):
			m, ok, rerr := ReadMountMarker(ctx, store)
			switch {
			case rerr != nil:
				return nil, mt.abandon(ctx, rerr)
			case ok && m.Token == mt.token:
				// An earlier attempt stored it; its answer was lost.
				return mt, nil
			case ok:
				return nil, mountedError(m)
			}
			// Removed since the PUT was refused: try again.
		case !objstore.IsTransient(err):
			return nil, mt.abandon(ctx, fmt.Errorf("setting the mount marker: %w", err))
		}
		if attempt == claimAttempts {
			return nil, mt.abandon(ctx, fmt.Errorf("setting the mount marker: giving up after %d attempts: %w", attempt, err))
		}
		wait := time.NewTimer(rand.N(min(claimBaseWait<<(attempt-1), claimMaxWait) + 1))
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, mt.abandon(ctx, fmt.Errorf("setting the mount marker: %w (last error: %v)", ctx.Err(), err))
		case <-wait.C:
		}
	}
}

// abandon removes the marker a failed claim may have stored, and returns
// err, the reason the claim failed.
func (mt *Mount) abandon(ctx context.Context, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReleaseTimeout)
	defer cancel()
	if rerr := mt.Release(ctx); rerr != nil && !errors.Is(rerr, errNotOurs) {
		return fmt.Errorf("%w (and a marker this claim may have set could not be checked: %v)", err, rerr)
	}
	return err
}

// errNotOurs: the marker present is another's.
var errNotOurs = errors.New("the mount marker is another's")

// Release removes our marker, and only ours: a marker with another token
// was set by a daemon that took the bucket over with --force while this
// one held it, and stays. The delete is conditional on the ETag read with
// the token, atomic where the store can (objstore.Store.DeleteIfMatch).
// Failures wrap ErrMountNotReleased. A missing marker is not an error.
func (mt *Mount) Release(ctx context.Context) error { return mt.release(ctx, false) }

// ReleaseClean is Release for a device that stored every acknowledged
// write: with the marker still ours, it first leaves the claim's token in
// CleanStopKey. If that fails the marker stays, and the stop counts as
// unclean.
func (mt *Mount) ReleaseClean(ctx context.Context) error { return mt.release(ctx, true) }

func (mt *Mount) release(ctx context.Context, clean bool) error {
	m, ok, err := ReadMountMarker(ctx, mt.store)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMountNotReleased, err)
	}
	if !ok {
		return nil
	}
	if m.Token != mt.token {
		return takenOver(m)
	}
	if clean {
		if _, err := mt.store.Put(ctx, CleanStopKey, []byte(mt.token+"\n"), objstore.PutOptions{ContentType: mountMarkerType}); err != nil {
			return fmt.Errorf("%w: recording the clean stop in %s: %w", ErrMountNotReleased, CleanStopKey, err)
		}
	}
	err = mt.store.DeleteIfMatch(ctx, MountMarkerKey, m.ETag)
	switch {
	case err == nil, errors.Is(err, objstore.ErrNotFound):
		return nil
	case errors.Is(err, objstore.ErrPreconditionFailed):
		// Replaced between the read and the delete.
		if m, ok, rerr := ReadMountMarker(ctx, mt.store); rerr == nil && ok {
			return takenOver(m)
		}
		return fmt.Errorf("%w: %w", ErrMountNotReleased, err)
	}
	return fmt.Errorf("%w: removing it: %w", ErrMountNotReleased, err)
}

func takenOver(m MountMarker) error {
	return fmt.Errorf("%w: %w %s: another daemon took the bucket over (--force) while this one served; its marker stays",
		ErrMountNotReleased, errNotOurs, m)
}

func mountedError(m MountMarker) error {
	return fmt.Errorf("%w %s (%s): another objbacker or s3backer may be serving it; if none is, run `objbacker reset-mounted URL` or pass --force",
		ErrMounted, m, MountMarkerKey)
}
