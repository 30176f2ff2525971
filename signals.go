package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// stopOnSignal returns a context that the first SIGINT or SIGTERM cancels:
// the daemon stops and flushes. A second one during that stop exits at once
// with status 1: the operator would rather lose what is not yet stored
// than wait for it.
func stopOnSignal(parent context.Context, stderr io.Writer) (context.Context, func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, stop := stopOn(parent, sigs, stderr, os.Exit)
	return ctx, func() {
		signal.Stop(sigs)
		stop()
	}
}

// stopOn is stopOnSignal with the signals and the exit given.
func stopOn(parent context.Context, sigs <-chan os.Signal, stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(stderr, "objbacker: second %v during the stop: exiting now; acknowledged writes not yet flushed may be lost\n", sig)
			exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		cancel()
	}
}

// reloadOnSignal calls reload on every SIGHUP until the returned function
// is called. The daemon then keeps running on SIGHUP, whose default
// action would end it without a flush.
func reloadOnSignal(reload func()) func() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP)
	return reloadOn(sigs, reload, func() { signal.Stop(sigs) })
}

// reloadOn is reloadOnSignal with the signals given; unsubscribe stops
// their delivery.
func reloadOn(sigs <-chan os.Signal, reload func(), unsubscribe func()) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-sigs:
				reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		unsubscribe()
		close(done)
		<-finished
	}
}
