package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storeurl"
)

// openURLArg opens the store named by a command's single URL argument.
func openURLArg(c *cli.Context) (objstore.Store, string, error) {
	if c.NArg() != 1 {
		return nil, "", usageError{fmt.Errorf("%s takes one URL (got %d arguments)", c.Command.Name, c.NArg())}
	}
	raw := c.Args().First()
	storeURL, _, err := splitDeviceParams(raw)
	if err != nil {
		return nil, raw, err
	}
	var store objstore.Store
	err = objstore.Retry(c.Context, storeRetryPolicy, nil, "open", redact(storeURL), func() (err error) {
		store, err = storeurl.Open(c.Context, storeURL, storeurl.Options{Parallel: c.Int("parallel")})
		return err
	})
	return store, raw, err
}
