package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Delete removes the data file, then its sidecar, so that a crash in
// between leaves an orphan sidecar that describes nothing rather than an
// object without its metadata. Emptied directories are kept: removing them
// would race with Puts creating files in them.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	path := s.path(key)
	mu := s.lock(key)
	mu.Lock()
	defer mu.Unlock()
	// os.Remove would also remove an empty directory, which is no object.
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil
	}
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
