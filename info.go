package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storeurl"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "show the device a bucket holds: size, block size, objects present",
		ArgsUsage: "URL",
		Action:    info,
	}
}

func info(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{fmt.Errorf("info takes one URL (got %d arguments)", c.NArg())}
	}
	raw := c.Args().First()
	store, err := storeurl.Open(c.Context, raw, storeurl.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	geo, source, ok, err := blockmap.Recorded(c.Context, store)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "url:            %s\n", redact(raw))
	if ok {
		fmt.Fprintf(w, "size:           %s (%d bytes)\n", blockmap.FormatSize(geo.Size), geo.Size)
		fmt.Fprintf(w, "block size:     %s (%d bytes)\n", blockmap.FormatSize(geo.BlockSize), geo.BlockSize)
		fmt.Fprintf(w, "recorded in:    %s\n", source)
	} else {
		fmt.Fprintf(w, "size:           not recorded (a fresh bucket; serve --size creates the device)\n")
	}
	var blocks, bytes, other int64
	start := time.Now()
	err = store.List(c.Context, "", func(o objstore.ObjectInfo) error {
		if _, isBlock := blockmap.ParseBlockKey(o.Key); isBlock {
			blocks++
			bytes += o.Size
		} else {
			other++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", redact(raw), err)
	}
	fmt.Fprintf(w, "blocks present: %d (%s stored)\n", blocks, blockmap.FormatSize(bytes))
	if ok && geo.Blocks() > 0 {
		fmt.Fprintf(w, "allocated:      %.2f%% of %d blocks\n", 100*float64(blocks)/float64(geo.Blocks()), geo.Blocks())
	}
	fmt.Fprintf(w, "other objects:  %d\n", other)
	fmt.Fprintf(w, "listed in:      %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
