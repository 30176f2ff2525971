package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
)

func eraseCommand() *cli.Command {
	return &cli.Command{
		Name:      "erase",
		Usage:     "delete every block of a bucket's device, and its recorded layout (s3backer --erase)",
		ArgsUsage: "URL",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Usage: "confirm: the device's data is destroyed"},
			&cli.BoolFlag{Name: "force", Usage: "erase even if the bucket is marked as mounted"},
			&cli.IntFlag{Name: "parallel", Value: blockmap.DefaultParallel, Usage: "DELETE requests in flight, and most LIST requests (as info lists)"},
		},
		Action: erase,
	}
}

func resetMountedCommand() *cli.Command {
	return &cli.Command{
		Name:      "reset-mounted",
		Usage:     "remove the mark a crashed objbacker or s3backer left on a bucket (s3backer --reset-mounted-flag)",
		ArgsUsage: "URL",
		Action: func(c *cli.Context) error {
			store, raw, err := openURLArg(c)
			if err != nil {
				return err
			}
			defer store.Close()
			m, ok, err := blockmap.ReadMountMarker(c.Context, store)
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(c.App.Writer, "%s is not marked as mounted\n", redact(raw))
				return nil
			}
			if err := blockmap.ResetMountMarker(c.Context, store); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "removed the mount marker (mounted %s) from %s\n", m, redact(raw))
			return nil
		},
	}
}

func erase(c *cli.Context) (err error) {
	if !c.Bool("yes") {
		return usageError{errors.New("erase destroys the device's data; confirm with --yes")}
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	store, raw, err := openURLArg(c)
	if err != nil {
		return err
	}
	defer store.Close()
	// Claim the bucket as serve does, so that a daemon starting mid-erase
	// is refused, and give it back however the erase ends.
	mount, err := blockmap.ClaimMount(c.Context, store, c.Bool("force"))
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context), blockmap.ReleaseTimeout)
		defer cancel()
		if rerr := mount.Release(ctx); rerr != nil && err == nil {
			err = rerr
		}
	}()

	// Both namings are erased: a bucket may hold either, and a key of one
	// form never parses as the other. The bucket is listed as serve lists
	// it, in parts side by side, and each block is deleted as soon as it is
	// listed: memory stays bounded however many blocks the bucket holds.
	// The recorded layout only splits the listing: a bucket whose layout
	// cannot be read is erased all the same, listed in one piece.
	f, _, err := blockmap.Recorded(c.Context, store)
	if err != nil {
		log.Warn("no layout to split the listing by; listing the bucket in one piece", "err", err)
		f = blockmap.Found{}
	}
	p := startProgress(c.App.ErrWriter, "erasing blocks")
	erased, err := eraseBlocks(c.Context, objstore.Retrying(store, storeRetryPolicy, log), f.Layout, max(1, c.Int("parallel")), log, p)
	p.finish()
	if err != nil {
		return fmt.Errorf("erasing %s: %w", redact(raw), err)
	}
	// The record of the last clean stop goes first: a device created on
	// the bucket later continues none, so a client still attached to the
	// erased one is never reconnected to it.
	if err := store.Delete(c.Context, blockmap.CleanStopKey); err != nil {
		return err
	}
	if err := store.Delete(c.Context, blockmap.DescriptorKey); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "erased %d blocks and the recorded layout from %s\n", erased, redact(raw))
	return nil
}

// eraseBlocks deletes every block object of store (either naming) as the
// listing finds them, n DELETEs in flight, and stops at the first error.
// It returns how many it deleted: a block listed twice (a part listed
// again) is deleted, and counted, twice.
func eraseBlocks(ctx context.Context, store objstore.Store, l blockmap.Layout, n int, log *slog.Logger, p *progress) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan string, 4*n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for key := range work {
				if err := store.Delete(ctx, key); err != nil {
					cancel(fmt.Errorf("deleting %s: %w", key, err))
					return
				}
				p.add(1)
			}
		})
	}
	err := blockmap.ForEachKey(ctx, store, l, n, log, func(batch []objstore.ObjectInfo) error {
		for _, o := range batch {
			_, plain := blockmap.Naming{}.Parse(o.Key)
			_, hashed := blockmap.Naming{HashPrefix: true}.Parse(o.Key)
			if !plain && !hashed {
				continue
			}
			select {
			case work <- o.Key:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	})
	close(work)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return p.done.Load(), cause
	}
	return p.done.Load(), err
}
