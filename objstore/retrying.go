package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds how often and how patiently Retrying retries.
type RetryPolicy struct {
	// Attempts is the most calls made for one operation, the first
	// included; values below 1 mean 1.
	Attempts int
	// BaseDelay bounds the wait before the first retry, and doubles for
	// each further one up to MaxDelay. The wait itself is drawn uniformly
	// below that bound ("full jitter"), so that clients throttled together
	// do not come back together.
	BaseDelay, MaxDelay time.Duration
}

// DefaultRetryPolicy rides out a few seconds of throttling or network
// trouble: five retries wait at most 0.1+0.2+0.4+0.8+1.6 s, about half that
// on average, before the error reaches the block layer.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 6, BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}
}

// backoff draws the wait after the retry-th failed call (1 for the first).
func (p RetryPolicy) backoff(retry int) time.Duration {
	limit := p.MaxDelay
	// Compare before shifting so that large retry counts cannot overflow.
	if shift := retry - 1; shift < 63 && p.BaseDelay <= p.MaxDelay>>shift {
		limit = p.BaseDelay << shift
	}
	if limit <= 0 {
		return 0
	}
	return rand.N(limit + 1)
}

// Retrying wraps store so that calls failing with a transient error (see
// IsTransient) are retried with exponential backoff, each retry logged at
// Warn on log (nil: no logging). Other errors, ErrNotFound and
// ErrPreconditionFailed among them, return at once, and so does a done
// context, with its error wrapping the last failure's message.
//
// Conditional puts are never retried: if the first attempt succeeded but its
// answer was lost, the retry would fail its condition against its own write
// and report a conflict that did not happen. Only the caller, knowing what it
// wrote, can settle that by reading the object back.
func Retrying(store Store, policy RetryPolicy, log *slog.Logger) Store {
	policy.Attempts = max(policy.Attempts, 1)
	policy.MaxDelay = max(policy.MaxDelay, policy.BaseDelay)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &retrying{next: store, policy: policy, log: log}
}

type retrying struct {
	next   Store
	policy RetryPolicy
	log    *slog.Logger
}

// do calls call until it succeeds, fails for good or runs out of attempts.
// key names the object (the prefix, for a listing) in logs and errors.
func (r *retrying) do(ctx context.Context, op, key string, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		switch {
		case err == nil || !IsTransient(err):
			return err
		case attempt == r.policy.Attempts && attempt > 1:
			return fmt.Errorf("%s %q: giving up after %d attempts: %w", op, key, attempt, err)
		case attempt == r.policy.Attempts:
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("%s %q: %w (after %d attempts, last error: %v)", op, key, ctx.Err(), attempt, err)
		}
		delay := r.policy.backoff(attempt)
		r.log.LogAttrs(ctx, slog.LevelWarn, "object store call failed, retrying",
			slog.String("op", op), slog.String("key", key), slog.Int("attempt", attempt),
			slog.Int("attempts", r.policy.Attempts), slog.Duration("delay", delay), slog.Any("err", err))
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s %q: %w (after %d attempts, last error: %v)", op, key, ctx.Err(), attempt, err)
		case <-timer.C:
		}
	}
}

// Get retries only obtaining the reader: a failure while reading the body
// is the caller's, who knows how much it has consumed.
func (r *retrying) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error) {
	var rc io.ReadCloser
	var a Attrs
	err := r.do(ctx, "get", key, func() (err error) {
		rc, a, err = r.next.Get(ctx, key, off, n)
		return err
	})
	return rc, a, err
}

func (r *retrying) Put(ctx context.Context, key string, data []byte, opts PutOptions) (Attrs, error) {
	if opts.IfNoneMatch || opts.IfMatch != "" {
		return r.next.Put(ctx, key, data, opts)
	}
	var a Attrs
	err := r.do(ctx, "put", key, func() (err error) {
		a, err = r.next.Put(ctx, key, data, opts)
		return err
	})
	return a, err
}

func (r *retrying) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func() error { return r.next.Delete(ctx, key) })
}

// DeleteIfMatch is retried, unlike a conditional put: if a delete went
// through but its answer was lost, the retry finds the object missing and
// fails with ErrNotFound, which tells the caller the truth, that it is
// gone; it cannot remove an object replaced since, whose ETag differs.
func (r *retrying) DeleteIfMatch(ctx context.Context, key, etag string) error {
	return r.do(ctx, "delete", key, func() error { return r.next.DeleteIfMatch(ctx, key, etag) })
}

func (r *retrying) Stat(ctx context.Context, key string) (Attrs, error) {
	var a Attrs
	err := r.do(ctx, "stat", key, func() (err error) {
		a, err = r.next.Stat(ctx, key)
		return err
	})
	return a, err
}

// errCallback stands in for fn's error inside do, so that an error from the
// caller's callback is never mistaken for the store's and retried.
var errCallback = errors.New("list callback failed")

// List restarts a listing that failed part-way, skipping the keys fn has
// already seen: listings are in key order, so those are the keys up to the
// last one delivered.
func (r *retrying) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var last string
	var delivered bool
	var fnErr error
	err := r.do(ctx, "list", prefix, func() error {
		return r.next.List(ctx, prefix, func(info ObjectInfo) error {
			if delivered && info.Key <= last {
				return nil
			}
			if fnErr = fn(info); fnErr != nil {
				return errCallback
			}
			last, delivered = info.Key, true
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

func (r *retrying) Close() error { return r.next.Close() }
