package filestore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// tempPattern names writes in progress. The leading '.' keeps them out of
// listings and out of the key space, so one left by a crash is never seen as
// an object.
const tempPattern = ".tmp-*"

// writeTemp writes data to a new temporary file in dir, creating dir and its
// parents under the root if needed, and returns its path and attributes.
func (s *Store) writeTemp(dir string, data []byte, durable bool) (string, fs.FileInfo, error) {
	f, err := os.CreateTemp(dir, tempPattern)
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.mkdirs(dir); err == nil {
			f, err = os.CreateTemp(dir, tempPattern)
		}
	}
	if err != nil {
		return "", nil, err
	}
	fi, err := fill(f, data, durable)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, err
	}
	return f.Name(), fi, nil
}

func fill(f *os.File, data []byte, durable bool) (fs.FileInfo, error) {
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	if durable {
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	return f.Stat()
}

// mkdirs creates dir and any missing parents below the root, syncing each
// parent so that a later synced rename into dir is not lost with dir itself.
func (s *Store) mkdirs(dir string) error {
	if dir == s.root {
		return nil
	}
	parent := filepath.Dir(dir)
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.mkdirs(parent); err == nil {
			err = os.Mkdir(dir, 0o700)
		}
	}
	// A concurrent Put may have just created dir without having synced its
	// parent yet; syncing again is cheap and keeps this Put's promise.
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// syncDir makes the renames, creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
