package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"custos.dev/ledger"
	"custos.dev/ledger/verify"
	"custos.dev/services/client"
	"custos.dev/services/natsd"
)

func (e *env) verifyCmd() *cobra.Command {
	var natsCreds, vkey string
	var maxUnsigned time.Duration
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Replay the whole ledger, recompute its Merkle tree and check every signed checkpoint",
		Long: `Verify the ledger independently of the server's own claims: every stored
body is hashed (RFC 6962) into a tree recomputed here, every checkpoint's
signature is checked with the verifier key, every checkpoint's root must
match the recomputed tree at its size, and no events may be missing.

Through the HTTP API (auditor token) by default, or straight from NATS with
the read-only auditor credentials written by custos serve:
  custos verify --nats-creds custos-data/nats-auditor.json --verifier-key @custos-data/verifier.key

Exit 0: intact. Exit 1: integrity failure, naming the first bad sequence.
Exit 2: usage or connection error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			src, key, err := e.verifySource(ctx, natsCreds, vkey)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			started := time.Now()
			opts := verify.Options{VerifierKey: key, MaxUnsignedAge: maxUnsigned}
			if e.isTerminal() {
				opts.Progress = func(n int64) {
					fmt.Fprintf(e.stderr, "\rverified %d events (%.0f/s)", n, float64(n)/time.Since(started).Seconds())
				}
			}
			rep, err := verify.Run(ctx, src, opts)
			if e.isTerminal() {
				fmt.Fprintln(e.stderr)
			}
			if err != nil {
				return withCode(ExitUsage, err)
			}
			_ = e.print(rep, func(w io.Writer) {
				if rep.OK {
					fmt.Fprintf(w, "ledger intact: %d events, %d checkpoints, latest checkpoint covers %d (%d not yet signed), root %s, %.0f events/s\n",
						rep.Events, rep.Checkpoints, rep.LatestCheckpoint, rep.UnsignedTail, rep.Root, rep.EventsPerSecond)
					return
				}
				fmt.Fprintf(w, "INTEGRITY FAILURE at sequence %d: %s\n", rep.FirstBadSeq, rep.Problem)
			})
			if !rep.OK {
				return withCode(ExitIntegrity, fmt.Errorf("integrity failure at sequence %d", rep.FirstBadSeq))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsCreds, "nats-creds", "", "read straight from NATS with these credentials (DATA/nats-auditor.json) instead of the HTTP API")
	f.StringVar(&vkey, "verifier-key", "", "checkpoint verifier key, or @FILE (default: fetched from --server)")
	f.DurationVar(&maxUnsigned, "max-unsigned-age", time.Minute, "fail when events older than this are not covered by a checkpoint (0: off)")
	return cmd
}

// readKey takes a key or @FILE.
func readKey(v string) (string, error) {
	if path, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(path)
		return strings.TrimSpace(string(b)), err
	}
	return v, nil
}

func (e *env) verifySource(ctx context.Context, natsCreds, vkey string) (verify.Source, string, error) {
	key, err := readKey(vkey)
	if err != nil {
		return nil, "", err
	}
	if natsCreds != "" && key == "" {
		return nil, "", errors.New("--verifier-key is required with --nats-creds (the auditor must not take the key from the system it audits)")
	}
	src, err := e.recordSource(ctx, natsCreds, "custos-verify")
	if err != nil {
		return nil, "", err
	}
	if key == "" {
		if key, err = e.client().VerifierKey(ctx); err != nil {
			return nil, "", err
		}
	}
	return src, key, nil
}

// recordSource reads the ledger's records straight from NATS with the
// credentials in natsCreds, or else through the HTTP API.
func (e *env) recordSource(ctx context.Context, natsCreds, name string) (verify.Source, error) {
	if natsCreds == "" {
		return client.VerifySource{C: e.client()}, nil
	}
	c, err := readCredsFile(natsCreds)
	if err != nil {
		return nil, err
	}
	nc, err := c.Connect(name)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	context.AfterFunc(ctx, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return ledger.NewReader(js).Source(), nil
}
func readCredsFile(path string) (natsd.Credentials, error) {
	var c natsd.Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, jsonUnmarshalStrict(b, &c)
}
