package blockmap

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"strings"

	"github.com/objbacker/objbacker/objstore"
)

// s3backer can store blocks compressed (--compress, zlib "deflate"; 2.x
// also "zstd") and encrypted (--encrypt, "encrypt-CIPHER" plus an HMAC
// header), and says so in Content-Encoding, outermost layer last. We read
// deflate blocks; anything else is refused by name, never served as data.

// unsupportedEncoding names the s3backer option behind attributes this
// reader cannot decode, or returns "" when it can.
func unsupportedEncoding(a objstore.Attrs) string {
	if a.Metadata[MetaHMAC] != "" {
		return "--encrypt"
	}
	for _, layer := range encodingLayers(a.ContentEncoding) {
		switch {
		case layer == "deflate":
		case strings.HasPrefix(layer, "encrypt-"):
			return "--encrypt (" + layer + ")"
		case layer == "zstd":
			return "--compress=zstd"
		default:
			return "Content-Encoding " + layer
		}
	}
	return ""
}

func encodingLayers(ce string) []string {
	var layers []string
	for _, l := range strings.Split(ce, ",") {
		if l = strings.ToLower(strings.TrimSpace(l)); l != "" && l != "identity" {
			layers = append(layers, l)
		}
	}
	return layers
}

// checkEncoding refuses, at start-up, a bucket whose blocks we cannot read.
func checkEncoding(key string, a objstore.Attrs) error {
	if opt := unsupportedEncoding(a); opt != "" {
		return fmt.Errorf("%w: block %s was written by s3backer with %s, which objbacker cannot read; serve this bucket with s3backer",
			ErrInvalidConfig, key, opt)
	}
	return nil
}

// decodeBlock reads an encoded object body into buf, which must end up
// holding exactly one block.
func decodeBlock(body io.Reader, a objstore.Attrs, buf []byte) error {
	if opt := unsupportedEncoding(a); opt != "" {
		return fmt.Errorf("written by s3backer with %s, which objbacker cannot read", opt)
	}
	raw, err := io.ReadAll(io.LimitReader(body, int64(len(buf))+1<<20))
	if err != nil {
		return err
	}
	// Layers were applied in order, so they come off in reverse; only
	// deflate gets past unsupportedEncoding.
	data := raw
	for range encodingLayers(a.ContentEncoding) {
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("deflate block: %w", err)
		}
		var out bytes.Buffer
		if _, err := io.Copy(&out, io.LimitReader(zr, int64(len(buf))+1)); err != nil {
			return fmt.Errorf("deflate block: %w", err)
		}
		data = out.Bytes()
	}
	if len(data) != len(buf) {
		return fmt.Errorf("block decodes to %d bytes, want the block size %d", len(data), len(buf))
	}
	copy(buf, data)
	return nil
}
