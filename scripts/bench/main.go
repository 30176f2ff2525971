// Command bench is the helper of scripts/bench.sh, which benchmarks
// objbacker against its peers (see docs/benchmarks.md):
//
//	bench s3 mb|put|get|count|rm ...  the bare SDK client, configured as
//	                                  objstore/s3store configures its own
//	bench run [flags] -- CMD ...      runs one measured phase and appends a
//	                                  record: throughput, latency, CPU of the
//	                                  servers, and the CPU other processes took
//	bench quiet [flags]               waits for, or reports, an idle machine
//	bench report RECORDS              prints the comparison tables (Markdown)
//	bench fill-blocks|list-serial|startup [flags]
//	                                  the start-up section (startup.go)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErr(msg string) error { return usageError{msg} }

// errStolen is a phase that other processes disturbed (exit 3), which the
// script repeats.
var errStolen = errors.New("other processes took CPU during the phase")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, os.Args[1:])
	var usage usageError
	switch {
	case err == nil:
		return
	case errors.Is(err, errStolen):
		os.Exit(3)
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "bench: %v\nusage: bench s3|run|quiet|report|fill-blocks|list-serial|startup ... (see main.go)\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageErr("no command")
	}
	switch args[0] {
	case "s3":
		return s3Main(ctx, args[1:])
	case "run":
		return runMain(ctx, args[1:])
	case "quiet":
		return quietMain(args[1:])
	case "report":
		return reportMain(args[1:])
	case "fill-blocks":
		return fillBlocksMain(ctx, args[1:])
	case "list-serial":
		return listSerialMain(ctx, args[1:])
	case "startup":
		return startupMain(ctx, args[1:])
	default:
		return usageErr("unknown command " + args[0])
	}
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
