package storetest

import (
	"maps"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// testAttrs checks that content type and metadata survive exactly, because
// the block core keeps a volume's geometry in them (s3backer's convention).
func testAttrs(t *testing.T, s objstore.Store) {
	const key = "attrs/obj"
	const contentType = "application/x-objbacker-test"
	// s3backer marks compressed blocks this way; a store must keep the
	// header as is, never decode the body.
	const encoding = "deflate"
	meta := map[string]string{
		"s3backer-blocksize": "1048576",
		"s3backer-filesize":  "1073741824",
		"objbacker-version":  "1",
	}
	want := maps.Clone(meta)
	data := RandomBytes(4096)
	put := MustPut(t, s, key, data, objstore.PutOptions{ContentType: contentType, ContentEncoding: encoding, Metadata: meta})
	// The store must have copied the map, not kept the caller's.
	meta["s3backer-blocksize"] = "changed after Put"

	st, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	checkAttrs(t, "Stat", st, int64(len(data)), put.ETag, contentType, want)
	if st.ContentEncoding != encoding {
		t.Errorf("Stat ContentEncoding %q, want %q", st.ContentEncoding, encoding)
	}
	if st.ModTime.IsZero() || time.Since(st.ModTime).Abs() > 24*time.Hour {
		t.Errorf("Stat ModTime %v; want about now", st.ModTime)
	}
	if st.Metadata != nil {
		// Nor may it share its own map with callers.
		st.Metadata["objbacker-version"] = "changed in a returned map"
	}

	body, got := MustGet(t, s, key, 0, -1)
	checkAttrs(t, "Get", got, int64(len(data)), put.ETag, contentType, want)
	if got.ContentEncoding != encoding || string(body) != string(data) {
		t.Errorf("Get: ContentEncoding %q and a body of %d bytes; want %q and the bytes as put", got.ContentEncoding, len(body), encoding)
	}
	_, got = MustGet(t, s, key, 100, 10)
	checkAttrs(t, "ranged Get", got, int64(len(data)), put.ETag, contentType, want)

	// An overwrite without metadata must not inherit the old object's.
	bare := MustPut(t, s, key, RandomBytes(100), objstore.PutOptions{})
	if bare.ETag == put.ETag {
		t.Errorf("ETag %q unchanged by new content", put.ETag)
	}
	st, err = s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat after bare overwrite: %v", err)
	}
	if len(st.Metadata) != 0 || st.ContentType == contentType || st.ContentEncoding != "" || st.ETag != bare.ETag || st.Size != 100 {
		t.Errorf("Stat after bare overwrite = %+v; want size 100, ETag %q, no metadata and not the old content type", st, bare.ETag)
	}

	// New metadata replaces the old set; it is not merged into it.
	meta2 := map[string]string{"objbacker-version": "2"}
	again := MustPut(t, s, key, data, objstore.PutOptions{ContentType: contentType, Metadata: meta2})
	st, err = s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat after second overwrite: %v", err)
	}
	checkAttrs(t, "Stat after second overwrite", st, int64(len(data)), again.ETag, contentType, meta2)
}

func checkAttrs(t *testing.T, op string, a objstore.Attrs, size int64, etag, contentType string, meta map[string]string) {
	t.Helper()
	if a.Size != size || a.ETag != etag || a.ContentType != contentType {
		t.Errorf("%s: Size %d, ETag %q, ContentType %q; want %d, %q, %q", op, a.Size, a.ETag, a.ContentType, size, etag, contentType)
	}
	if !maps.Equal(a.Metadata, meta) {
		t.Errorf("%s: Metadata %v; want exactly %v", op, a.Metadata, meta)
	}
}
