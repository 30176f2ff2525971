package objstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
// Warn on log (nil: no logging); so are reads of a Get's body that break
// off part-way, which resume where they broke off. Other errors,
// ErrNotFound and ErrPreconditionFailed among them, return at once, and so
// does a done context, with its error wrapping the last failure's message.
//
// A listing retried part-way resumes after the last key it delivered,
// except after the store listed keys out of order: then it starts over, and
// its callback may see a key twice, so it must be idempotent. Its attempts
// are counted per failure streak: a listing that delivers keys between
// failures never runs out of them (see List).
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

// Retry calls call until it succeeds, fails with an error that is not
// transient, runs out of policy's attempts or ctx ends, as Retrying retries
// a store's calls; op and what name the call in the log and the error. It
// is for what happens before there is a store to wrap: opening one, whose
// check of the bucket is a request like any other.
func Retry(ctx context.Context, policy RetryPolicy, log *slog.Logger, op, what string, call func() error) error {
	return Retrying(nil, policy, log).(*retrying).do(ctx, op, what, call)
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
		}
		if err := r.pause(ctx, op, key, attempt, err); err != nil {
			return err
		}
	}
}

// pause logs the attempt-th failure, err, and waits before the next
// attempt; it returns an error wrapping the context's, and naming err, if
// the context ends first.
func (r *retrying) pause(ctx context.Context, op, key string, attempt int, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %q: %w (after %d attempts, last error: %v)", op, key, ctx.Err(), attempt, err)
	}
	delay := r.policy.backoff(attempt)
	r.log.LogAttrs(ctx, slog.LevelWarn, "object store call failed, retrying",
		slog.String("op", op), slog.String("key", key), slog.Int("attempt", attempt),
		slog.Int("attempts", r.policy.Attempts), slog.Duration("delay", delay), slog.Any("err", err))
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s %q: %w (after %d attempts, last error: %v)", op, key, ctx.Err(), attempt, err)
	case <-timer.C:
		return nil
	}
}

// Get retries obtaining the reader, and the reader it returns resumes a
// body cut short by a transient error (see resumingBody).
func (r *retrying) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error) {
	var rc io.ReadCloser
	var a Attrs
	err := r.do(ctx, "get", key, func() (err error) {
		rc, a, err = r.next.Get(ctx, key, off, n)
		return err
	})
	if err != nil {
		return rc, a, err
	}
	return &resumingBody{r: r, ctx: ctx, key: key, off: off, n: n, etag: a.ETag, body: rc}, a, nil
}

// resumingBody reads a Get's body and, when the body breaks off with a
// transient error, gets it again with backoff and carries on where it
// broke off, within the retry policy: Attempts bounds the calls made
// without delivering a byte.
//
// It asks again for the same range, not for the rest: a driver checks a
// whole-object body against the checksum the store keeps for it and fails
// the end of the body with ErrCorrupt, and that check must keep covering
// every byte delivered. So the bytes already delivered are read again and
// discarded, and must hash the same as what was delivered: the new body's
// check then vouches for them too. A new ETag means the object was replaced
// between the two reads, an error rather than a splice of two versions;
// the same ETag with other bytes means one of the reads was damaged in
// flight: a transient ErrCorrupt, as the drivers report damage, which a
// caller answers by reading the whole object again (the bytes it already
// has may be the damaged ones). ErrCorrupt is never resumed: from the body
// itself it comes at the end, when every byte is delivered.
type resumingBody struct {
	r      *retrying
	ctx    context.Context
	key    string
	off, n int64
	etag   string

	body      io.ReadCloser // nil once closed
	delivered int64         // bytes returned by Read
	sum       maphash.Hash  // of those bytes
	failures  int           // calls failed since a byte was last delivered
	err       error         // the failure that ended the read, if any
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for b.err == nil {
		n, err := b.body.Read(p)
		if n > 0 {
			b.sum.Write(p[:n])
			b.delivered += int64(n)
			b.failures = 0
		}
		if err == nil || err == io.EOF || !IsTransient(err) || errors.Is(err, ErrCorrupt) {
			return n, err
		}
		b.err = b.resume(err)
		if n > 0 || b.err != nil {
			return n, b.err
		}
	}
	return 0, b.err
}

// resume replaces the body that failed with cause by a new one positioned
// after the bytes delivered.
func (b *resumingBody) resume(cause error) error {
	b.body.Close()
	b.body = nil
	for {
		b.failures++
		if b.failures >= b.r.policy.Attempts {
			return fmt.Errorf("get %q: giving up after %d attempts at byte %d of the body: %w", b.key, b.failures, b.delivered, cause)
		}
		if err := b.r.pause(b.ctx, "get", b.key, b.failures, cause); err != nil {
			return err
		}
		var err error
		if b.body, err = b.reopen(); err == nil {
			return nil
		}
		if !IsTransient(err) || errors.Is(err, ErrCorrupt) {
			return err
		}
		cause = err
	}
}

// reopen gets the body again and reads past the bytes already delivered,
// checking that they are the same.
func (b *resumingBody) reopen() (io.ReadCloser, error) {
	rc, a, err := b.r.next.Get(b.ctx, b.key, b.off, b.n)
	if errors.Is(err, ErrNotFound) {
		// Not wrapped: to a caller that takes a missing object for a block
		// of zeros, a body it has begun to read must not say "not found".
		return nil, fmt.Errorf("get %q: the object was deleted while being read, after %d bytes (%v)", b.key, b.delivered, err)
	}
	if err != nil {
		return nil, err
	}
	if a.ETag != b.etag {
		rc.Close()
		return nil, fmt.Errorf("get %q: the object was replaced while being read (ETag %q, then %q after %d bytes)", b.key, b.etag, a.ETag, b.delivered)
	}
	var again maphash.Hash
	again.SetSeed(b.sum.Seed())
	if _, err := io.CopyN(&again, rc, b.delivered); err != nil {
		rc.Close()
		if err == io.EOF {
			return nil, Transient(fmt.Errorf("get %q: the object ends before the %d bytes already read, under the same ETag %q: %w", b.key, b.delivered, b.etag, ErrCorrupt))
		}
		return nil, err
	}
	if again.Sum64() != b.sum.Sum64() {
		rc.Close()
		return nil, Transient(fmt.Errorf("get %q: the %d bytes read before the body broke off differ from the same object's read again (ETag %q): %w", b.key, b.delivered, b.etag, ErrCorrupt))
	}
	return rc, nil
}

func (b *resumingBody) Close() error {
	if b.err == nil {
		b.err = errBodyClosed
	}
	if b.body == nil {
		return nil
	}
	err := b.body.Close()
	b.body = nil
	return err
}

var errBodyClosed = errors.New("read of a closed body")

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

// errCallback stands in for fn's error inside the store's List, so that an
// error from the caller's callback is never mistaken for the store's and
// retried.
var errCallback = errors.New("list callback failed")

// List delivers every key the store lists, in the store's order. After a
// transient failure part-way it lists again from where it broke off,
// starting after the last key delivered, so that a failed page costs that
// page again and not the whole listing. It can tell where it broke off only
// while every key delivered was strictly ascending, as stores promise. A
// listing seen out of order (a misbehaving S3-compatible server or proxy, a
// key damaged on plain HTTP) is logged, and a retry after it starts over
// from the caller's startAfter, so fn may see a key twice and must be
// idempotent: starting after the highest key seen could skip keys never
// delivered, and starting after the last one could too.
//
// The policy's Attempts bounds the calls of one failure streak, not of the
// whole listing: a call that delivered a key before it failed starts a new
// streak, as its first call, so that a long listing that keeps moving is
// not given up for failures spread over its length, while one that fails
// again and again at the same point is, after Attempts calls in a row.
func (r *retrying) List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	var (
		last      string // the last key delivered
		delivered bool   // whether any key has been
		ascending = true // whether every delivered key came after the one before
		fnErr     error
	)
	for failures := 0; ; {
		from := startAfter
		if delivered && ascending {
			from = last
		}
		progress := false
		err := r.next.List(ctx, prefix, from, func(info ObjectInfo) error {
			if ascending && delivered && info.Key <= last {
				ascending = false // and logged once
				r.log.LogAttrs(ctx, slog.LevelWarn, "object store listed keys out of order; a retried listing will start over",
					slog.String("prefix", prefix), slog.String("key", info.Key), slog.String("after", last))
			}
			if fnErr = fn(info); fnErr != nil {
				return errCallback
			}
			last, delivered, progress = info.Key, true, true
			return nil
		})
		switch {
		case fnErr != nil:
			return fnErr
		case err == nil || !IsTransient(err):
			return err
		}
		if progress {
			failures = 0
		}
		failures++
		if failures == r.policy.Attempts {
			if failures > 1 {
				return fmt.Errorf("list %q: giving up after %d attempts in a row (resuming after %q): %w", prefix, failures, from, err)
			}
			return err
		}
		if err := r.pause(ctx, "list", prefix, failures, err); err != nil {
			return err
		}
	}
}

func (r *retrying) Close() error { return r.next.Close() }

func (r *retrying) ListScansAll() bool { return ListScansAll(r.next) }
