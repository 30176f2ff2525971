package filestore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/objbacker/objbacker/objstore"
)

// Put writes data to a temporary file beside the target, then, under the
// key's lock (and for a conditional put the lock of other processes' too),
// checks the conditions and renames the sidecar and the data into place
// (see sidecar.go for why in that order). A create-only put is thus
// check-then-rename, not link(2): the data file and its sidecar are two
// files, and a put that linked its data file first would leave the new
// object without its metadata for a moment (for ever, after a crash), while
// one that placed its sidecar first could only learn that it lost after it
// had replaced the winner's.
func (s *Store) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	if err := checkKey(key); err != nil {
		return objstore.Attrs{}, err
	}
	// Otherwise writeTemp would create the directories again, or write into
	// a mount point whose file system is gone.
	if err := s.checkRoot(); err != nil {
		return objstore.Attrs{}, fmt.Errorf("filestore: put %q: %w", key, err)
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	// The expensive write and fsync happen before taking the lock, so puts
	// of keys sharing a stripe overlap.
	tmp, fi, err := s.writeTemp(dir, data, true)
	if err != nil {
		return objstore.Attrs{}, fmt.Errorf("filestore: put %q: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp)
		}
	}()
	sum := md5.Sum(data)
	rec := record{
		File:        idOf(fi),
		MD5:         hex.EncodeToString(sum[:]),
		ContentType: opts.ContentType,
		Encoding:    opts.ContentEncoding,
		Metadata:    maps.Clone(opts.Metadata),
	}

	if opts.IfNoneMatch || opts.IfMatch != "" {
		// The condition must hold until the commit against other
		// processes' conditional puts too.
		unlock, err := s.lockProcesses(key)
		if err != nil {
			return objstore.Attrs{}, fmt.Errorf("filestore: put %q: %w", key, err)
		}
		defer unlock()
	}
	mu := s.lock(key)
	mu.Lock()
	defer mu.Unlock()
	prev, err := current(path)
	if err != nil {
		return objstore.Attrs{}, fmt.Errorf("filestore: put %q: %w", key, err)
	}
	if opts.IfNoneMatch && prev != nil || opts.IfMatch != "" && (prev == nil || prev.MD5 != opts.IfMatch) {
		return objstore.Attrs{}, fmt.Errorf("filestore: put %q: %w", key, objstore.ErrPreconditionFailed)
	}
	// Last chance to back out: past this point the object changes.
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	committed, err = s.commit(path, tmp, rec, prev)
	if err != nil {
		return objstore.Attrs{}, fmt.Errorf("filestore: put %q: %w", key, err)
	}
	return rec.attrs(fi), nil
}

// current describes the object at path, or returns nil if there is none.
func current(path string) (*record, error) {
	f, fi, err := openData(path)
	if f == nil || err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := describe(f, fi, sidecarPath(path))
	return &r, err
}

// commit renames the sidecar and then the data file into place; renamed
// reports whether the data file was, so that the caller removes it otherwise.
func (s *Store) commit(path, tmp string, rec record, prev *record) (renamed bool, err error) {
	dir := filepath.Dir(path)
	raw, err := json.Marshal(sidecar{Cur: rec, Prev: prev})
	if err != nil {
		return false, err
	}
	// A sidecar holding only MD5s is a cache that describe rebuilds if a
	// crash tears it, so it is worth an fsync only when it carries content
	// types or metadata, of the new object or of the old one it must
	// describe until the data rename.
	metaTmp, _, err := s.writeTemp(dir, raw, rec.hasAttrs() || prev.hasAttrs())
	if err != nil {
		return false, err
	}
	if err := os.Rename(metaTmp, sidecarPath(path)); err != nil {
		os.Remove(metaTmp)
		return false, err
	}
	if rec.hasAttrs() {
		// Without this the file system may persist the data rename alone,
		// leaving the new content without its metadata after a crash.
		if err := syncDir(dir); err != nil {
			return false, err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, err
	}
	return true, syncDir(dir)
}
