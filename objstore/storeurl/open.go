// Package storeurl opens an objstore.Store from a URL:
//
//	mem://[name]                         in-process, gone at exit
//	file:///abs/dir  file://./rel/dir    one file per object under a directory
//	s3://bucket[/prefix]?endpoint=URL&region=R&path_style=true|false
//	gs://bucket[/prefix]?endpoint=URL
//	azblob://container[/prefix]?account=NAME&endpoint=URL
//
// A path after the bucket or container is a prefix: "s3://b/vol" stores
// block 0 as "vol/00000000".
//
// For benchmarks and experiments, every URL also takes parameters that slow
// its store down as a network would (objstore.Latency):
//
//	latency=DURATION   wait before each answer, as Go writes durations: 30ms, 1.5s
//	bandwidth=SIZE     bytes per second for each request's payload: 100M (MiB/s), 1.5G, 4096
//	jitter=FRACTION    spread each wait uniformly over latency × (1 ± FRACTION), 0 to 1
//
// "mem://?latency=30ms" stands in for a remote bucket without the CPU cost
// of a server on the same machine.
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/azblobstore"
	"github.com/objbacker/objbacker/objstore/filestore"
	"github.com/objbacker/objbacker/objstore/gcsstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/s3store"
)

// params are the query parameters each scheme accepts.
var params = map[string][]string{
	"s3":     {"endpoint", "region", "path_style"},
	"gs":     {"endpoint"},
	"azblob": {"account", "endpoint"},
}

// Options tune the stores a URL opens.
type Options struct {
	// Parallel is how many requests the caller keeps in flight; network
	// stores keep at least that many idle connections per host.
	Parallel int
	// CreateDir creates the directory of a file:// URL if it does not
	// exist; otherwise that is ErrBucketNotFound, as a missing bucket is.
	CreateDir bool
}

// Open parses raw and opens the store it names, checking that the bucket or
// directory is reachable. Errors wrap objstore.ErrInvalidURL,
// ErrBucketNotFound or ErrAccessDenied where those apply.
func Open(ctx context.Context, raw string, opts Options) (objstore.Store, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", objstore.ErrInvalidURL, raw, err)
	}
	q := u.Query()
	// Check parameters before connecting: a typo must not cost a timeout.
	delay, err := takeLatency(q)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", objstore.ErrInvalidURL, raw, err)
	}
	for name := range q {
		if !slices.Contains(params[u.Scheme], name) {
			return nil, fmt.Errorf("%w: %q: unknown parameter %q", objstore.ErrInvalidURL, raw, name)
		}
	}
	param := q.Get

	var store objstore.Store
	var prefix string
	switch u.Scheme {
	case "mem":
		store = memstore.New()
	case "file":
		dir, err := fileDir(u)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", objstore.ErrInvalidURL, raw, err)
		}
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) && !opts.CreateDir {
			return nil, fmt.Errorf("%w: directory %s does not exist", objstore.ErrBucketNotFound, dir)
		}
		if store, err = filestore.Open(dir); err != nil {
			return nil, err
		}
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: %q: no bucket (want s3://bucket/prefix)", objstore.ErrInvalidURL, raw)
		}
		cfg := s3store.Config{
			Bucket:   u.Host,
			Endpoint: param("endpoint"),
			Region:   param("region"),
			Parallel: opts.Parallel,
		}
		switch ps := param("path_style"); ps {
		case "":
			// Custom endpoints (MinIO and most S3-compatible stores) want
			// path-style URLs; AWS itself wants virtual-hosted ones.
			cfg.PathStyle = cfg.Endpoint != ""
		case "true", "false":
			cfg.PathStyle = ps == "true"
		default:
			return nil, fmt.Errorf("%w: %q: path_style=%q, want true or false", objstore.ErrInvalidURL, raw, ps)
		}
		if store, err = s3store.Open(ctx, cfg); err != nil {
			return nil, err
		}
		prefix = strings.Trim(u.Path, "/")
	case "gs":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: %q: no bucket (want gs://bucket/prefix)", objstore.ErrInvalidURL, raw)
		}
		cfg := gcsstore.Config{Bucket: u.Host, Endpoint: param("endpoint"), Parallel: opts.Parallel}
		if store, err = gcsstore.Open(ctx, cfg); err != nil {
			return nil, err
		}
		prefix = strings.Trim(u.Path, "/")
	case "azblob":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: %q: no container (want azblob://container/prefix)", objstore.ErrInvalidURL, raw)
		}
		cfg := azblobstore.Config{Container: u.Host, Account: param("account"), Endpoint: param("endpoint"), Parallel: opts.Parallel}
		if store, err = azblobstore.Open(ctx, cfg); err != nil {
			return nil, err
		}
		prefix = strings.Trim(u.Path, "/")
	case "":
		return nil, fmt.Errorf("%w: %q: no scheme (want mem://, file://, s3://, gs://, azblob://)", objstore.ErrInvalidURL, raw)
	default:
		return nil, fmt.Errorf("%w: %q: unknown scheme %q (want mem://, file://, s3://, gs://, azblob://)", objstore.ErrInvalidURL, raw, u.Scheme)
	}
	if prefix != "" {
		prefix += "/"
	}
	return objstore.Latency(objstore.Prefixed(store, prefix), delay), nil
}

// latencyParams are the parameters every scheme takes, for objstore.Latency.
var latencyParams = []string{"latency", "bandwidth", "jitter"}

// Delayed reports whether raw carries a latency parameter, even a zero
// one: its store then stands in for a remote one, so a mem:// store is the
// backing of a benchmark, not a RAM disk.
func Delayed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	q := u.Query()
	return slices.ContainsFunc(latencyParams, q.Has)
}

// takeLatency reads the latency parameters and deletes them from q, so
// that the driver's own are left.
func takeLatency(q url.Values) (objstore.LatencyConfig, error) {
	var cfg objstore.LatencyConfig
	if v := q.Get("latency"); q.Has("latency") {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("latency=%q, want a duration such as 30ms", v)
		}
		cfg.Latency = d
	}
	if v := q.Get("bandwidth"); q.Has("bandwidth") {
		n, err := bytesize.Parse(v)
		if err != nil || n == 0 {
			return cfg, fmt.Errorf("bandwidth=%q, want bytes per second such as 100M", v)
		}
		cfg.Bandwidth = n
	}
	if v := q.Get("jitter"); q.Has("jitter") {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0 && f <= 1) {
			return cfg, fmt.Errorf("jitter=%q, want a fraction from 0 to 1", v)
		}
		cfg.Jitter = f
	}
	for _, name := range latencyParams {
		q.Del(name)
	}
	return cfg, nil
}

// fileDir turns file:///abs and file://./rel into a directory path.
func fileDir(u *url.URL) (string, error) {
	switch u.Host {
	case "":
		if u.Path == "" {
			return "", fmt.Errorf("no directory")
		}
		return filepath.Clean(u.Path), nil
	case ".", "..":
		return filepath.Clean(u.Host + u.Path), nil
	default:
		return "", fmt.Errorf("host %q not allowed (want file:///abs/dir or file://./rel/dir)", u.Host)
	}
}
