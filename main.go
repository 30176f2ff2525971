// Command objbacker serves object-storage buckets (S3 and S3-compatible
// stores, or a local directory) as NBD block devices, one object per block,
// laid out as s3backer lays them out.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
)

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run is the whole program: it returns the exit code instead of exiting,
// and serve stops when ctx is cancelled as it does on SIGINT/SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:  "objbacker",
		Usage: "serve object-storage buckets as NBD block devices",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"OBJBACKER_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"OBJBACKER_LOG_FORMAT"}},
		},
		Commands:     []*cli.Command{serveCommand(), vdevCommand(), infoCommand(), eraseCommand(), resetMountedCommand(), attachCommand(), detachCommand()},
		OnUsageError: onUsageError,
		// Errors are printed and turned into exit codes below, in one place.
		ExitErrHandler: func(*cli.Context, error) {},
		Writer:         stdout,
		ErrWriter:      stderr,
	}
	app.HideHelp, app.HideHelpCommand = true, true
	app.Flags = append(app.Flags, newHelpFlag())
	app.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usageError{fmt.Errorf("unknown command %q", c.Args().First())}
		}
		return cli.ShowAppHelp(c)
	}
	for _, c := range app.Commands {
		c.OnUsageError = onUsageError
		c.HideHelp = true
		c.Flags = append(c.Flags, newHelpFlag())
		action := c.Action
		c.Action = func(c *cli.Context) error {
			if c.Bool("help") {
				return cli.ShowSubcommandHelp(c)
			}
			return action(c)
		}
	}
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintln(stderr, "objbacker: "+oneLine(err))
		return exitCode(err)
	}
	return 0
}

// newHelpFlag makes a --help flag for one app instance. urfave/cli's own
// is a package variable that every run mutates while parsing, which races
// when several runs share a process (the tests run the CLI in-process).
func newHelpFlag() cli.Flag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"}
}

func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

// usageError marks bad input: flags, URLs, sizes, geometry.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode is 2 for bad input (what the user must fix: flags, URLs, a
// missing bucket, missing or refused credentials, geometry that does not fit the
// bucket) and 1 for everything else, a failed stop among them whatever
// its cause.
func exitCode(err error) int {
	var ue usageError
	var se stopError
	switch {
	case errors.As(err, &se):
		return 1
	case errors.As(err, &ue),
		errors.Is(err, blockmap.ErrInvalidConfig),
		errors.Is(err, objstore.ErrInvalidURL),
		errors.Is(err, objstore.ErrBucketNotFound),
		errors.Is(err, objstore.ErrAccessDenied),
		errors.Is(err, objstore.ErrNoCredentials),
		errors.Is(err, blockmap.ErrMounted):
		return 2
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))}
	}
}
