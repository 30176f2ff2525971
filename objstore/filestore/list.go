package filestore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/objbacker/objbacker/objstore"
)

// readDirBatch is how many directory entries one read asks for: os.ReadDir
// would hold a whole directory's os.DirEntry values at once, several times
// the size of the names walk keeps.
const readDirBatch = 1024

// List walks the directory tree in key order, one directory at a time, and
// holds no more than the names of the directories on the current path, up
// to sortBound of each (a larger directory is sorted on disk,
// sortednames.go): a listing's memory is bounded, whatever the number of
// objects. Files and directories whose keys all come at or before
// startAfter are left unread: their names are compared, no more.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
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
	return s.walk(ctx, dir, name, startAfter, fn)
}

// walk lists, in key order, the objects under the key directory dir ("" for
// the root) whose next path element starts with name and whose key comes
// after startAfter.
func (s *Store) walk(ctx context.Context, dir, name, startAfter string, fn func(objstore.ObjectInfo) error) error {
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	names, err := s.readDir(dir, base, name, startAfter)
	if err != nil {
		return err
	}
	defer names.close()
	for {
		n, ok, err := names.next()
		if !ok {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if sub, isDir := strings.CutSuffix(n, "/"); isDir {
			if err := s.walk(ctx, base+sub, "", startAfter, fn); err != nil {
				return err
			}
			continue
		}
		key := base + n
		f, a, err := s.open(key)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted since it was read
		}
		if err != nil {
			return err
		}
		f.Close()
		if err := fn(objstore.ObjectInfo{Key: key, Size: a.Size, ETag: a.ETag}); err != nil {
			return err
		}
	}
}

// readDir returns the entries of the key directory dir, whose keys start
// with base, that start with name and may hold keys after startAfter, sorted
// in the order of the keys they stand for: a file's name, and a
// subdirectory's with a trailing '/'. It holds at most sortBound of them;
// the caller closes what it returns.
//
// Directory order is not key order: the keys under directory "d" all start
// with "d/", which sorts after a sibling file "d-x" ('-' < '/'). Sorting
// "d/" among the file names puts the directory's keys in their place, since
// every key under it starts with "d/" and no file name holds a '/'.
func (s *Store) readDir(dir, base, name, startAfter string) (*sortedNames, error) {
	f, err := os.Open(filepath.Join(s.root, filepath.FromSlash(dir)))
	if err == nil {
		defer f.Close()
	}
	names := newNameSorter(s.root, sortBound)
	defer names.close()
	for err == nil {
		var entries []os.DirEntry
		entries, err = f.ReadDir(readDirBatch)
		for _, e := range entries {
			n := e.Name()
			// checkElem skips internal files along with any name no key
			// can have.
			if !strings.HasPrefix(n, name) || checkElem(n) != nil {
				continue
			}
			switch {
			case e.IsDir():
				n += "/"
				if !dirMayFollow(base+n, startAfter) {
					continue
				}
			case e.Type().IsRegular():
				if base+n <= startAfter {
					continue
				}
			default:
				continue
			}
			if err := names.add(n); err != nil {
				return nil, err
			}
		}
	}
	switch {
	case err == io.EOF:
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		// Nothing there, or a file where the prefix wants a directory.
		return &sortedNames{}, nil
	default:
		return nil, err
	}
	return names.sorted()
}

// dirMayFollow reports whether a directory whose keys all start with dir
// (ending in '/') may hold a key after startAfter: unless startAfter sorts
// after dir without starting with it, since then it sorts after every key
// that starts with dir.
func dirMayFollow(dir, startAfter string) bool {
	return startAfter <= dir || strings.HasPrefix(startAfter, dir)
}

// ListScansAll is true: a listing reads the whole directory its prefix
// names, however few of the names match (a directory has no order to
// seek in).
func (s *Store) ListScansAll() bool { return true }
