package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/objstore"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "show the device a bucket holds: layout, sizes, encodings, mount marker, objects present",
		ArgsUsage: "URL",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "parallel", Value: blockmap.DefaultParallel, Usage: "most LIST requests in flight: the listing is split and doubled while that makes it faster, as serve lists"},
		},
		Action: info,
	}
}

func info(c *cli.Context) error {
	if c.Int("parallel") < 1 {
		return usageError{fmt.Errorf("--parallel %d: want at least 1", c.Int("parallel"))}
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
	f, ok, err := blockmap.Recorded(c.Context, store)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "url:            %s\n", redact(raw))
	if ok {
		fmt.Fprintf(w, "size:           %s (%d bytes)\n", bytesize.Format(f.Size), f.Size)
		fmt.Fprintf(w, "block size:     %s (%d bytes)\n", bytesize.Format(f.BlockSize), f.BlockSize)
		fmt.Fprintf(w, "block names:    %s (block 0: %s)\n", namingName(f.Naming), f.Naming.Key(0))
		fmt.Fprintf(w, "recorded in:    %s\n", f.Source)
		if f.Block0OK && f.Block0.ContentEncoding != "" {
			fmt.Fprintf(w, "block 0 coding: %s\n", f.Block0.ContentEncoding)
		}
	} else {
		fmt.Fprintf(w, "size:           not recorded (a fresh bucket; serve --size creates the device)\n")
	}
	m, mounted, err := blockmap.ReadMountMarker(c.Context, store)
	if err != nil {
		return err
	}
	if mounted {
		fmt.Fprintf(w, "mounted:        yes, %s\n", m)
	} else {
		fmt.Fprintf(w, "mounted:        no\n")
	}
	start := time.Now()
	// Retried as the device's listing is: a range resumes after its last
	// key, where one listing of the whole bucket would start over.
	count, err := blockmap.CountObjects(c.Context, objstore.Retrying(store, storeRetryPolicy, log), f.Layout, c.Int("parallel"), log)
	if err != nil {
		return fmt.Errorf("listing %s: %w", redact(raw), err)
	}
	fmt.Fprintf(w, "blocks present: %d (%d bytes stored)\n", count.Blocks, count.Bytes)
	if ok && f.Blocks() > 0 {
		fmt.Fprintf(w, "allocated:      %.2f%% of %d blocks\n", 100*float64(count.Blocks)/float64(f.Blocks()), f.Blocks())
	}
	fmt.Fprintf(w, "other objects:  %d\n", count.Other)
	fmt.Fprintf(w, "listed in:      %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func namingName(nm blockmap.Naming) string {
	if nm.HashPrefix {
		return "s3backer, hash-prefixed"
	}
	return "s3backer"
}
