// Command custos is the Custos privacy ledger; see package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"custos.dev/services/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
