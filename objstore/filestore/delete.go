package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/objbacker/objbacker/objstore"
)

// Delete removes the data file, then its sidecar, so that a crash in
// between leaves an orphan sidecar that describes nothing rather than an
// object without its metadata. Emptied directories are kept: removing them
// would race with Puts creating files in them.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.locked(ctx, key, func(path string) error {
		// os.Remove would also remove an empty directory, which is no object.
		if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
			return nil
		}
		return s.remove(key, path)
	})
}

// DeleteIfMatch compares and deletes under the key's lock, so it is atomic
// among the goroutines of this process and, like the conditional puts,
// not against another process sharing the directory.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) error {
	return s.locked(ctx, key, func(path string) error {
		cur, err := current(path)
		switch {
		case err != nil:
			return fmt.Errorf("filestore: delete %q: %w", key, err)
		case cur == nil:
			return fmt.Errorf("filestore: delete %q: %w", key, objstore.ErrNotFound)
		case cur.MD5 != etag:
			return fmt.Errorf("filestore: delete %q: %w", key, objstore.ErrPreconditionFailed)
		}
		return s.remove(key, path)
	})
}

// locked runs change on the data file path of key under the key's write
// lock, once ctx and key pass: a delete must not interleave with a Put of
// this process swapping data file and sidecar.
func (s *Store) locked(ctx context.Context, key string, change func(path string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	mu := s.lock(key)
	mu.Lock()
	defer mu.Unlock()
	return change(s.path(key))
}

// remove deletes an object's data file and sidecar; the key's lock is held.
func (s *Store) remove(key, path string) error {
	removed := false
	for _, p := range []string{path, sidecarPath(path)} {
		err := os.Remove(p)
		switch {
		case err == nil:
			removed = true
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("filestore: delete %q: %w", key, err)
		}
	}
	if !removed {
		if err := s.checkRoot(); err != nil {
			return fmt.Errorf("filestore: delete %q: %w", key, err)
		}
		return nil
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("filestore: delete %q: %w", key, err)
	}
	return nil
}
