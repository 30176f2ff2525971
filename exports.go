package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storeurl"
)

// exportSpec is one --export NAME=URL.
type exportSpec struct {
	Name, URL string
}

var exportName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func parseExports(values []string) ([]exportSpec, error) {
	var specs []exportSpec
	seen := map[string]bool{}
	for _, v := range values {
		name, u, ok := strings.Cut(v, "=")
		if !ok || u == "" {
			return nil, usageError{fmt.Errorf("--export %q: want NAME=URL", v)}
		}
		if !exportName.MatchString(name) {
			return nil, usageError{fmt.Errorf("--export %q: name must be 1-64 letters, digits, '.', '_' or '-'", v)}
		}
		if seen[name] {
			return nil, usageError{fmt.Errorf("--export %q: name %q given twice", v, name)}
		}
		seen[name] = true
		specs = append(specs, exportSpec{Name: name, URL: u})
	}
	return specs, nil
}

// openedExport is a device with the store counters behind it.
type openedExport struct {
	spec   exportSpec
	store  objstore.Store
	device *blockmap.Device
	counts *objstore.Counts
	// storeLatency is fed by the store below the retries, as counts.
	storeLatency *storeLatency
	// payloadBudget is the front end's memory for request payloads, taken
	// out of the cache (openExports); zero where the front end keeps its
	// own.
	payloadBudget int64
}

// close flushes the device and releases the store.
func (e *openedExport) close() error {
	err := e.device.Close()
	e.store.Close()
	return err
}

// storeRetryPolicy rides out about half a minute of store trouble
// (throttling, a restarting server) before an I/O error reaches the client.
var storeRetryPolicy = objstore.RetryPolicy{Attempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: 8 * time.Second}

// openExport opens the store and the device of one export. The store is
// counted and timed below the retry layer, so retried requests show in the
// metrics.
func openExport(ctx context.Context, spec exportSpec, cfg blockmap.Config, opts storeurl.Options, log *slog.Logger) (*openedExport, error) {
	storeURL, hashPrefix, err := splitDeviceParams(spec.URL)
	if err != nil {
		return nil, fmt.Errorf("export %s (%s): %w", spec.Name, redact(spec.URL), err)
	}
	cfg.HashPrefix = hashPrefix
	// A mem:// store lives in this process: a second copy of the device's
	// blocks, and a copy per upload, for nothing. Unless it is delayed: then
	// it stands in for a remote store in a benchmark, and must be used as one.
	cfg.Volatile = urlScheme(storeURL) == "mem" && !storeurl.Delayed(storeURL)
	var base objstore.Store
	err = objstore.Retry(ctx, storeRetryPolicy, log, "open", redact(storeURL), func() (err error) {
		base, err = storeurl.Open(ctx, storeURL, opts)
		return err
	})
	if errors.Is(err, objstore.ErrBucketNotFound) && urlScheme(storeURL) == "file" {
		err = fmt.Errorf("%w; --create-dir creates it", err)
	}
	if err != nil {
		return nil, fmt.Errorf("export %s (%s): %w", spec.Name, redact(spec.URL), err)
	}
	counts, latency := new(objstore.Counts), newStoreLatency(spec.Name)
	cfg.Store = objstore.Retrying(objstore.CountingObserved(base, counts, latency.observe), storeRetryPolicy, log)
	cfg.Log = log
	dev, err := blockmap.Open(ctx, cfg)
	if err != nil {
		base.Close()
		return nil, fmt.Errorf("export %s (%s): %w", spec.Name, redact(spec.URL), err)
	}
	return &openedExport{spec: spec, store: base, device: dev, counts: counts, storeLatency: latency}, nil
}

// splitDeviceParams takes the device's own URL parameters (hash_prefix)
// out of an export URL; the rest of the URL is the store's.
func splitDeviceParams(raw string) (storeURL string, hashPrefix *bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, nil, nil // storeurl.Open reports it
	}
	q := u.Query()
	if !q.Has("hash_prefix") {
		return raw, nil, nil
	}
	v, err := strconv.ParseBool(q.Get("hash_prefix"))
	if err != nil {
		return "", nil, fmt.Errorf("%w: hash_prefix=%q, want true or false", objstore.ErrInvalidURL, q.Get("hash_prefix"))
	}
	q.Del("hash_prefix")
	u.RawQuery = q.Encode()
	return u.String(), &v, nil
}

// urlScheme is raw's scheme, or "" if it does not parse.
func urlScheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// redact drops credentials a URL might carry before it reaches a log.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
