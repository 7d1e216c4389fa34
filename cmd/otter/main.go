// Command otter is the otter server and its operator command line. See
// `otter --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/otter-ota/otter/internal/cli"
)

func main() {
	// The first Ctrl-C cancels the running command (a server shuts down in
	// order); after that, the default handling applies and a second one
	// stops the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Execute(ctx, os.Args[1:], cli.OSEnv())
	stop()
	os.Exit(code)
}
