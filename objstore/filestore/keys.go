package filestore

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey: a key that does not map to a file under the store's
// directory, or that would collide with the store's internal files.
var ErrInvalidKey = errors.New("invalid key")

// maxElemLen leaves room in the file system's 255-byte name limit for the
// sidecar's "." and ".meta" around the element.
const maxElemLen = 255 - len(".") - len(metaSuffix)

// checkKey accepts slash-separated relative keys whose elements are all
// usable file names outside the store's reserved '.' namespace; that rules
// out "", "/abs", "a//b", "a/", ".", ".." and ".hidden" alike.
func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("filestore: %w: empty", ErrInvalidKey)
	}
	for elem := range strings.SplitSeq(key, "/") {
		if err := checkElem(elem); err != nil {
			return fmt.Errorf("filestore: %w %q: %v", ErrInvalidKey, key, err)
		}
	}
	return nil
}

func checkElem(elem string) error {
	switch {
	case elem == "":
		return errors.New("empty path element (leading, trailing or doubled '/')")
	case elem[0] == '.':
		return fmt.Errorf("path element %q starts with '.', which is reserved for internal files", elem)
	case strings.IndexByte(elem, 0) >= 0:
		return errors.New("NUL byte")
	case len(elem) > maxElemLen:
		return fmt.Errorf("path element longer than %d bytes", maxElemLen)
	}
	return nil
}

// splitPrefix splits a listing prefix into the key directory holding every
// match and the start of the matches' next element. ok is false when no
// valid key can start with prefix, which also keeps a prefix such as "../"
// from walking outside the store.
func splitPrefix(prefix string) (dir, name string, ok bool) {
	name = prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir, name = prefix[:i], prefix[i+1:]
		if checkKey(dir) != nil {
			return "", "", false
		}
	}
	if strings.HasPrefix(name, ".") || strings.IndexByte(name, 0) >= 0 {
		return "", "", false
	}
	return dir, name, true
}
