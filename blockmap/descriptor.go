package blockmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// The device's geometry is recorded in the bucket so that a restart needs no
// flags and can never silently reinterpret the blocks:
//   - DescriptorKey holds it as JSON, written once when the device is created;
//   - every block object carries s3backer's size headers, so s3backer (which
//     probes block 0 with a HEAD) finds them too, and so do we in a bucket
//     that s3backer created.
const (
	DescriptorKey = "objbacker-device"

	MetaBlockSize    = "s3backer-blocksize"
	MetaFileSize     = "s3backer-filesize"
	BlockContentType = "application/x-s3backer-block"
)

type descriptor struct {
	Format    int       `json:"format"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"blockSize"`
	Created   time.Time `json:"created"`
}

// Recorded returns the geometry recorded in store and where it was found
// ("descriptor" or "s3backer block 0"), or ok=false for a fresh bucket.
func Recorded(ctx context.Context, store objstore.Store) (g Geometry, source string, ok bool, err error) {
	rc, _, err := store.Get(ctx, DescriptorKey, 0, -1)
	switch {
	case err == nil:
		defer rc.Close()
		var d descriptor
		data, err := io.ReadAll(io.LimitReader(rc, 1<<16))
		if err != nil {
			return g, "", false, fmt.Errorf("reading %s: %w", DescriptorKey, err)
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return g, "", false, fmt.Errorf("%w: %s is not valid JSON: %v", ErrInvalidConfig, DescriptorKey, err)
		}
		if d.Format != 1 {
			return g, "", false, fmt.Errorf("%w: %s has format %d, this objbacker reads format 1", ErrInvalidConfig, DescriptorKey, d.Format)
		}
		return Geometry{Size: d.Size, BlockSize: d.BlockSize}, "descriptor", true, nil
	case !errors.Is(err, objstore.ErrNotFound):
		return g, "", false, fmt.Errorf("reading %s: %w", DescriptorKey, err)
	}

	attrs, err := store.Stat(ctx, BlockKey(0))
	if errors.Is(err, objstore.ErrNotFound) {
		return g, "", false, nil
	}
	if err != nil {
		return g, "", false, fmt.Errorf("probing block 0: %w", err)
	}
	bs, err1 := strconv.ParseInt(attrs.Metadata[MetaBlockSize], 10, 64)
	size, err2 := strconv.ParseInt(attrs.Metadata[MetaFileSize], 10, 64)
	if err1 != nil || err2 != nil {
		return g, "", false, nil
	}
	return Geometry{Size: size, BlockSize: bs}, "s3backer block 0", true, nil
}

// resolveGeometry decides the device's geometry from what the bucket records
// and what the caller asked for (zero fields: not asked), and records it when
// the bucket had none.
func resolveGeometry(ctx context.Context, store objstore.Store, want Geometry, defaultSize int64) (Geometry, error) {
	rec, source, ok, err := Recorded(ctx, store)
	if err != nil {
		return Geometry{}, err
	}
	if ok {
		if err := rec.Validate(); err != nil {
			return Geometry{}, fmt.Errorf("recorded geometry (%s): %w", source, err)
		}
		if want.Size != 0 && want.Size != rec.Size {
			return Geometry{}, fmt.Errorf("%w: size %s (%d bytes) does not match the %s (%d bytes) recorded in the bucket (%s); omit --size to use it",
				ErrInvalidConfig, FormatSize(want.Size), want.Size, FormatSize(rec.Size), rec.Size, source)
		}
		if want.BlockSize != 0 && want.BlockSize != rec.BlockSize {
			return Geometry{}, fmt.Errorf("%w: block size %s does not match the %s recorded in the bucket (%s); omit --block-size to use it",
				ErrInvalidConfig, FormatSize(want.BlockSize), FormatSize(rec.BlockSize), source)
		}
		if source != "descriptor" {
			if err := writeDescriptor(ctx, store, rec); err != nil && !errors.Is(err, objstore.ErrPreconditionFailed) {
				return Geometry{}, err
			}
		}
		return rec, nil
	}
	if want.Size == 0 {
		want.Size = defaultSize
	}
	if want.Size == 0 {
		return Geometry{}, fmt.Errorf("%w: the bucket records no device size and none was given (--size)", ErrInvalidConfig)
	}
	if want.BlockSize == 0 {
		want.BlockSize = DefaultBlockSize
	}
	if err := want.Validate(); err != nil {
		return Geometry{}, err
	}
	if err := writeDescriptor(ctx, store, want); err != nil {
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			// Another process created the device at the same moment: use
			// what it recorded, with the same checks.
			return resolveGeometry(ctx, store, want, 0)
		}
		return Geometry{}, err
	}
	return want, nil
}

func writeDescriptor(ctx context.Context, store objstore.Store, g Geometry) error {
	data, err := json.MarshalIndent(descriptor{Format: 1, Size: g.Size, BlockSize: g.BlockSize, Created: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	_, err = store.Put(ctx, DescriptorKey, append(data, '\n'), objstore.PutOptions{
		ContentType: "application/json",
		IfNoneMatch: true,
	})
	if err != nil && !errors.Is(err, objstore.ErrPreconditionFailed) {
		return fmt.Errorf("recording the device geometry in %s: %w", DescriptorKey, err)
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
