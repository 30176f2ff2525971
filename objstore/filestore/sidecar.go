package filestore

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"syscall"

	"github.com/objbacker/objbacker/objstore"
)

// The ETag is the hex MD5 of the content, as S3 and memstore report for
// single-part objects, so a volume copied between backends keeps its ETags
// and s3backer-style checksums hold. Hashing 1 MiB on every Stat would be
// too slow, so each data file NAME has a sidecar ".NAME.meta" caching the
// MD5 with the content type and metadata.
//
// Data and sidecar are two files, and no rename replaces both at once. So a
// sidecar names the exact data file it describes (inode, size and mtime,
// which rename preserves and every Put changes by writing a new file), and a
// Put's sidecar also carries the record of the data it is about to replace,
// as the sidecar is renamed into place before the data. Whichever of the two
// renames a crash keeps, one record matches the data file on disk. A data
// file no record matches (a crash with a torn sidecar, a file copied or
// edited by hand) has its MD5 computed from its content and no metadata.
const metaSuffix = ".meta"

type sidecar struct {
	Cur  record  `json:"cur"`
	Prev *record `json:"prev,omitempty"`
}

// record describes one version of a data file.
type record struct {
	File        fileID            `json:"file"`
	MD5         string            `json:"md5"`
	ContentType string            `json:"type,omitempty"`
	Encoding    string            `json:"encoding,omitempty"`
	Metadata    map[string]string `json:"meta,omitempty"`
}

type fileID struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime"` // nanoseconds since the epoch
}

func idOf(fi fs.FileInfo) fileID {
	id := fileID{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Ino = st.Ino
	}
	return id
}

// hasAttrs reports whether r holds anything that cannot be recomputed from
// the data file, and so must survive a crash.
func (r *record) hasAttrs() bool {
	return r != nil && (r.ContentType != "" || r.Encoding != "" || len(r.Metadata) > 0)
}

func (r record) attrs(fi fs.FileInfo) objstore.Attrs {
	return objstore.Attrs{
		Size:            fi.Size(),
		ETag:            r.MD5,
		ModTime:         fi.ModTime(),
		ContentType:     r.ContentType,
		ContentEncoding: r.Encoding,
		Metadata:        maps.Clone(r.Metadata),
	}
}

func sidecarPath(dataPath string) string {
	dir, name := filepath.Split(dataPath)
	return filepath.Join(dir, "."+name+metaSuffix)
}

// describe returns the record of the open data file f, trusting the sidecar
// only where it names exactly this file.
func describe(f *os.File, fi fs.FileInfo, metaPath string) (record, error) {
	id := idOf(fi)
	raw, err := os.ReadFile(metaPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return record{}, err
	}
	var sc sidecar
	// A sidecar that does not parse was torn by a crash; it describes
	// nothing, like a missing one.
	if err == nil && json.Unmarshal(raw, &sc) == nil {
		for _, r := range []*record{&sc.Cur, sc.Prev} {
			if r != nil && r.File == id {
				return *r, nil
			}
		}
	}
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		return record{}, err
	}
	return record{File: id, MD5: hex.EncodeToString(h.Sum(nil))}, nil
}
