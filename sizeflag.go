package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/internal/bytesize"
)

// sizeFlag reads a size flag like "100G"; 0 when unset. A size given
// must be positive: 0 would read as "not given".
func sizeFlag(c *cli.Context, name string) (int64, error) {
	s := c.String(name)
	if s == "" {
		return 0, nil
	}
	n, err := bytesize.Parse(s)
	if err != nil {
		return 0, usageError{fmt.Errorf("--%s: %w", name, err)}
	}
	if n == 0 {
		return 0, usageError{fmt.Errorf("--%s %s: the size must be positive", name, s)}
	}
	return n, nil
}
