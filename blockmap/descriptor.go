package blockmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/objstore"
)

// The device's layout is recorded in the bucket so that a restart needs no
// flags and can never silently reinterpret the blocks:
//   - DescriptorKey holds it as JSON, written once when the device is created;
//   - every block object carries s3backer's size headers, so s3backer (which
//     probes block 0 with a HEAD) finds them too, and so do we in a bucket
//     that s3backer created.
const (
	DescriptorKey = "objbacker-device"

	MetaBlockSize    = "s3backer-blocksize"
	MetaFileSize     = "s3backer-filesize"
	MetaHMAC         = "s3backer-hmac"
	BlockContentType = "application/x-s3backer-block"
)

// Layout is everything needed to find and interpret a device's blocks.
type Layout struct {
	Geometry
	Naming Naming
}

type descriptor struct {
	Format     int       `json:"format"`
	Size       int64     `json:"size"`
	BlockSize  int64     `json:"blockSize"`
	HashPrefix bool      `json:"hashPrefix,omitempty"`
	Created    time.Time `json:"created"`
}

// Found is what a bucket records about the device it holds.
type Found struct {
	Layout
	// Source says where the layout was found: "descriptor", or "s3backer
	// block 0" for a bucket s3backer created.
	Source string
	// Block0 holds block 0's attributes when it exists (ok is false for a
	// hole), for the encoding checks.
	Block0   objstore.Attrs
	Block0OK bool
}

// Recorded returns what store records about its device, or ok=false for a
// fresh bucket.
func Recorded(ctx context.Context, store objstore.Store) (f Found, ok bool, err error) {
	d, ok, err := readDescriptor(ctx, store)
	if err != nil {
		return f, false, err
	}
	if ok {
		f.Layout = Layout{Geometry{Size: d.Size, BlockSize: d.BlockSize}, Naming{HashPrefix: d.HashPrefix}}
		f.Source = "descriptor"
		f.Block0, f.Block0OK, err = statBlock(ctx, store, f.Naming.Key(0))
		return f, true, err
	}
	// s3backer records the geometry only on block 0, under its plain or
	// its hash-prefixed name.
	for _, nm := range []Naming{{}, {HashPrefix: true}} {
		a, exists, err := statBlock(ctx, store, nm.Key(0))
		if err != nil || !exists {
			if err != nil {
				return f, false, err
			}
			continue
		}
		bs, err1 := strconv.ParseInt(a.Metadata[MetaBlockSize], 10, 64)
		size, err2 := strconv.ParseInt(a.Metadata[MetaFileSize], 10, 64)
		if err1 != nil || err2 != nil {
			return f, false, fmt.Errorf("%w: block 0 (%s) has no s3backer size headers and there is no %s: not a device objbacker or s3backer made",
				ErrInvalidConfig, nm.Key(0), DescriptorKey)
		}
		f.Layout = Layout{Geometry{Size: size, BlockSize: bs}, nm}
		f.Source, f.Block0, f.Block0OK = "s3backer block 0", a, true
		return f, true, nil
	}
	return f, false, nil
}

func readDescriptor(ctx context.Context, store objstore.Store) (d descriptor, ok bool, err error) {
	rc, _, err := store.Get(ctx, DescriptorKey, 0, -1)
	if errors.Is(err, objstore.ErrNotFound) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("reading %s: %w", DescriptorKey, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<16))
	if err != nil {
		return d, false, fmt.Errorf("reading %s: %w", DescriptorKey, err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, false, fmt.Errorf("%w: %s is not valid JSON: %v", ErrInvalidConfig, DescriptorKey, err)
	}
	if d.Format != 1 {
		return d, false, fmt.Errorf("%w: %s has format %d, this objbacker reads format 1", ErrInvalidConfig, DescriptorKey, d.Format)
	}
	return d, true, nil
}

func statBlock(ctx context.Context, store objstore.Store, key string) (objstore.Attrs, bool, error) {
	a, err := store.Stat(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("probing %s: %w", key, err)
	}
	return a, true, nil
}

// want is what the caller asked for; zero fields and a nil HashPrefix mean
// "as recorded".
type want struct {
	Geometry
	HashPrefix  *bool
	DefaultSize int64
}

// resolveLayout decides the device's layout from what the bucket records and
// what the caller asked for, and records it when the bucket had none.
func resolveLayout(ctx context.Context, store objstore.Store, w want) (Found, error) {
	f, ok, err := Recorded(ctx, store)
	if err != nil {
		return Found{}, err
	}
	if ok {
		if err := f.Validate(); err != nil {
			return Found{}, fmt.Errorf("recorded geometry (%s): %w", f.Source, err)
		}
		if w.Size != 0 && w.Size != f.Size {
			return Found{}, fmt.Errorf("%w: size %s (%d bytes) does not match the %s (%d bytes) recorded in the bucket (%s); omit --size to use it",
				ErrInvalidConfig, bytesize.Format(w.Size), w.Size, bytesize.Format(f.Size), f.Size, f.Source)
		}
		if w.BlockSize != 0 && w.BlockSize != f.BlockSize {
			return Found{}, fmt.Errorf("%w: block size %s does not match the %s recorded in the bucket (%s); omit --block-size to use it",
				ErrInvalidConfig, bytesize.Format(w.BlockSize), bytesize.Format(f.BlockSize), f.Source)
		}
		if w.HashPrefix != nil && *w.HashPrefix != f.Naming.HashPrefix {
			return Found{}, fmt.Errorf("%w: hash_prefix=%v does not match the bucket's block names (hash prefix %v, %s); omit it to use them",
				ErrInvalidConfig, *w.HashPrefix, f.Naming.HashPrefix, f.Source)
		}
		if f.Source != "descriptor" {
			if err := writeDescriptor(ctx, store, f.Layout); err != nil && !errors.Is(err, objstore.ErrPreconditionFailed) {
				return Found{}, err
			}
		}
		return f, nil
	}
	l := Layout{Geometry: w.Geometry}
	if w.HashPrefix != nil {
		l.Naming.HashPrefix = *w.HashPrefix
	}
	if l.Size == 0 {
		l.Size = w.DefaultSize
	}
	if l.Size == 0 {
		return Found{}, fmt.Errorf("%w: the bucket records no device size and none was given (--size)", ErrInvalidConfig)
	}
	if l.BlockSize == 0 {
		l.BlockSize = DefaultBlockSize
	}
	if err := l.Validate(); err != nil {
		return Found{}, err
	}
	if err := writeDescriptor(ctx, store, l); err != nil {
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			// Another process created the device at the same moment: use
			// what it recorded, with the same checks.
			w.DefaultSize = 0
			return resolveLayout(ctx, store, w)
		}
		return Found{}, err
	}
	return Found{Layout: l, Source: "new"}, nil
}

func writeDescriptor(ctx context.Context, store objstore.Store, l Layout) error {
	data, err := json.MarshalIndent(descriptor{Format: 1, Size: l.Size, BlockSize: l.BlockSize,
		HashPrefix: l.Naming.HashPrefix, Created: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	_, err = store.Put(ctx, DescriptorKey, append(data, '\n'), objstore.PutOptions{
		ContentType: "application/json",
		IfNoneMatch: true,
	})
	if err != nil && !errors.Is(err, objstore.ErrPreconditionFailed) {
		return fmt.Errorf("recording the device layout in %s: %w", DescriptorKey, err)
	}
	return err
}

// blockMetadata is the user metadata every block object carries.
func blockMetadata(g Geometry) map[string]string {
	return map[string]string{
		MetaBlockSize: strconv.FormatInt(g.BlockSize, 10),
		MetaFileSize:  strconv.FormatInt(g.Size, 10),
	}
}
