package filestore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/objbacker/objbacker/objstore"
)

func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// An empty listing of a removed or unmounted directory would say that
	// every block is zeros.
	if err := s.checkRoot(); err != nil {
		return err
	}
	dir, name, ok := splitPrefix(prefix)
	if !ok {
		return nil
	}
	return s.walk(ctx, dir, name, fn)
}

// walk lists, in key order, the objects under the key directory dir ("" for
// the root) whose next path element starts with name.
//
// Directory order is not key order: the keys under directory "d" all start
// with "d/", which sorts after a sibling file "d-x" ('-' < '/'). So each
// directory's entries are sorted by the key prefix they stand for, "d/" for a
// directory and "d-x" for a file, and directories are walked in that place.
func (s *Store) walk(ctx context.Context, dir, name string, fn func(objstore.ObjectInfo) error) error {
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	type item struct {
		key   string // with a trailing '/' for a directory
		isDir bool
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		n := e.Name()
		// checkElem skips internal files along with any name no key can have.
		if !strings.HasPrefix(n, name) || checkElem(n) != nil {
			continue
		}
		key := path.Join(dir, n)
		switch {
		case e.IsDir():
			items = append(items, item{key + "/", true})
		case e.Type().IsRegular():
			items = append(items, item{key, false})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })

	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if it.isDir {
			if err := s.walk(ctx, strings.TrimSuffix(it.key, "/"), "", fn); err != nil {
				return err
			}
			continue
		}
		f, a, err := s.open(it.key)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return err
		}
		f.Close()
		if err := fn(objstore.ObjectInfo{Key: it.key, Size: a.Size, ETag: a.ETag}); err != nil {
			return err
		}
	}
	return nil
}
