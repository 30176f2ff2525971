package rangeread

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// stubBody returns its bytes together with its error, as a body cut
// short mid-read does.
type stubBody struct {
	data   string
	err    error
	closed bool
}

func (r *stubBody) Read(p []byte) (int, error) { return copy(p, r.data), r.err }
func (r *stubBody) Close() error               { r.closed = true; return nil }

var (
	errReset    = errors.New("connection reset by peer")
	errMismatch = errors.New("sdk: checksum did not match")
	// errClassified stands for the driver's verdict on any other error.
	errClassified = errors.New("classified by the driver")
)

func newBody(r io.ReadCloser, isChecksumMismatch func(error) bool) *Body {
	return &Body{
		ReadCloser:         r,
		Object:             "s3://bucket/key",
		IsChecksumMismatch: isChecksumMismatch,
		Classify:           func(err error) error { return fmt.Errorf("%w: %w", errClassified, err) },
	}
}

func isMismatch(err error) bool { return errors.Is(err, errMismatch) }

func TestBodyClassifiesReadErrors(t *testing.T) {
	ownVerifier := fmt.Errorf("%w: MD5 00, ETag 11", objstore.ErrCorrupt)
	for _, tc := range []struct {
		name               string
		err                error
		isChecksumMismatch func(error) bool
		// corrupt: a transient ErrCorrupt with this text; classified: left
		// to the driver's Classify; neither: err unchanged.
		corrupt    string
		classified bool
	}{
		{name: "no error", err: nil},
		{name: "end of body", err: io.EOF},
		// The verifier's own ErrCorrupt comes first, whatever the SDK's
		// recogniser says: its text already says what failed.
		{name: "own verifier", err: ownVerifier, isChecksumMismatch: func(error) bool { return true },
			corrupt: "transient: s3://bucket/key: object data does not match its checksum: MD5 00, ETag 11"},
		{name: "own verifier, SDK checks none", err: ownVerifier,
			corrupt: "transient: s3://bucket/key: object data does not match its checksum: MD5 00, ETag 11"},
		{name: "SDK checksum", err: errMismatch, isChecksumMismatch: isMismatch,
			corrupt: "transient: s3://bucket/key: object data does not match its checksum: sdk: checksum did not match"},
		{name: "other error", err: errReset, isChecksumMismatch: isMismatch, classified: true},
		{name: "mismatch text, SDK checks none", err: errMismatch, classified: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBody(&stubBody{data: "abc", err: tc.err}, tc.isChecksumMismatch)
			p := make([]byte, 8)
			n, err := b.Read(p)
			if n != 3 || string(p[:n]) != "abc" {
				t.Errorf("Read = %d bytes %q; want the 3 bytes read before the error", n, p[:n])
			}
			switch {
			case tc.corrupt != "":
				if !objstore.IsTransient(err) || !errors.Is(err, objstore.ErrCorrupt) || err.Error() != tc.corrupt {
					t.Errorf("Read error = %q; want a transient ErrCorrupt %q", err, tc.corrupt)
				}
			case tc.classified:
				if !errors.Is(err, errClassified) || !errors.Is(err, tc.err) {
					t.Errorf("Read error = %v; want Classify's verdict on %v", err, tc.err)
				}
			default:
				if err != tc.err {
					t.Errorf("Read error = %v; want %v unchanged", err, tc.err)
				}
			}
		})
	}
}

func TestBodyClosesTheWrappedBody(t *testing.T) {
	r := &stubBody{err: io.EOF}
	if err := newBody(r, nil).Close(); err != nil || !r.closed {
		t.Errorf("Close = %v, wrapped body closed %v; want nil, true", err, r.closed)
	}
}
