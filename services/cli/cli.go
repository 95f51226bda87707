// Package cli is the `custos` command line (docs/cli.md). Main is the whole
// program; cmd/custos only calls it, so tests run the real commands
// in-process.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"custos.dev/services/client"
)

// Exit codes shared by every command (the CLI contract (docs/cli.md): verify's 0/1/2).
const (
	ExitOK        = 0
	ExitIntegrity = 1
	ExitUsage     = 2
)

// Build information, set by the linker (-X) in release builds.
var (
	Version = "dev"
	Commit  = "unknown"
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// env is what every command shares: streams and global flags.
type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	output         string
	server         string
	token          string
	getenv         func(string) string
}

// Main runs the custos command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdout: stdout, stderr: stderr, stdin: stdin, getenv: getenv}
	root := e.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	code := ExitUsage
	if errors.As(err, &xe) {
		code = xe.code
	}
	if e.output == "json" {
		_ = json.NewEncoder(stderr).Encode(map[string]any{"error": err.Error(), "exit_code": code})
	} else {
		fmt.Fprintln(stderr, "custos:", err)
	}
	return code
}

func (e *env) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "custos",
		Short:         "Custos: an event-sourced privacy ledger with cross-border transfer controls",
		Long:          "Custos records every collection, consent, use, sharing, transfer, rights request and erasure of personal data as a provable fact on an append-only ledger (NATS JetStream), decided beforehand by Rego policies, with keys in Vault.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return checkOutput(cmd, e.output)
		},
	}
	root.PersistentFlags().StringVarP(&e.output, "output", "o", "text", "output format: text or json (replay also takes ndjson, csv and iso27560; transfers also csv)")
	root.PersistentFlags().StringVar(&e.server, "server", "http://127.0.0.1:8080", "Custos server URL (client commands)")
	root.PersistentFlags().StringVar(&e.token, "token", "", "API token (default $CUSTOS_TOKEN)")
	root.AddCommand(e.serveCmd(), e.tokenCmd(), e.emitCmd(), e.replayCmd(), e.verifyCmd(), e.auditCmd(),
		e.policyCmd(), e.transfersCmd(), e.rightsCmd(), e.versionCmd(), e.benchCmd())
	return root
}

// outputsAnnotation lists, on a command, the --output values it takes
// beyond text and json.
const outputsAnnotation = "custos/outputs"

// checkOutput refuses an --output value the command does not produce: a
// typo must not silently give the default format.
func checkOutput(cmd *cobra.Command, output string) error {
	allowed := []string{"text", "json"}
	if extra := cmd.Annotations[outputsAnnotation]; extra != "" {
		allowed = append(allowed, strings.Split(extra, ",")...)
	}
	if !slices.Contains(allowed, output) {
		return withCode(ExitUsage, fmt.Errorf("--output %q: %s takes %s", output, cmd.CommandPath(), strings.Join(allowed, ", ")))
	}
	return nil
}

func (e *env) client() *client.Client {
	tok := e.token
	if tok == "" {
		tok = e.getenv("CUSTOS_TOKEN")
	}
	return client.New(e.server, tok)
}

// print writes v as JSON with --output json, else calls text.
func (e *env) print(v any, text func(w io.Writer)) error {
	if e.output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(e.stdout)
	return nil
}

func (e *env) isTerminal() bool {
	f, ok := e.stderr.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
