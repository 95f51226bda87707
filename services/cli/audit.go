package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"custos.dev/ledger/bundle"
	"custos.dev/ledger/checkpoint"
	"custos.dev/services/client"
)

func (e *env) auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Export and verify self-contained audit bundles"}
	var out, from, to string
	export := &cobra.Command{
		Use:   "export --out FILE [--from T --to T]",
		Short: "Write an audit bundle (tar.gz) of the events in a time range, with proofs (auditor token)",
		Long: `Write one file holding the events whose time is in [--from, --to) and that
are covered by the latest signed checkpoint (personal values stay encrypted
or erased: the ledger never held them in clear), every signed checkpoint,
an inclusion proof of each event in the latest checkpoint's tree,
consistency proofs between successive checkpoints, the verifier key and a
manifest. docs/audit-bundle.md specifies the format.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.exportBundle(cmd.Context(), from, to)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			f, err := os.Create(out)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			bw := bufio.NewWriter(f)
			if err := bundle.Write(bw, c); err != nil {
				f.Close()
				return withCode(ExitUsage, err)
			}
			if err := bw.Flush(); err != nil {
				f.Close()
				return withCode(ExitUsage, err)
			}
			if err := f.Close(); err != nil {
				return withCode(ExitUsage, err)
			}
			m := c.Manifest
			return e.print(map[string]any{"file": out, "events": len(c.Events), "checkpoints": len(c.Checkpoints), "tree_size": m.TreeSize, "from_seq": m.FromSeq, "to_seq": m.ToSeq},
				func(w io.Writer) {
					fmt.Fprintf(w, "wrote %s: %d events (seq %d..%d), %d checkpoints, tree size %d\n", out, len(c.Events), m.FromSeq, m.ToSeq, len(c.Checkpoints), m.TreeSize)
				})
		},
	}
	export.Flags().StringVar(&out, "out", "", "bundle file to write")
	export.Flags().StringVar(&from, "from", "", "event time at or after (RFC 3339)")
	export.Flags().StringVar(&to, "to", "", "event time before (RFC 3339)")
	_ = export.MarkFlagRequired("out")

	var trusted string
	verifyB := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify an audit bundle offline (no NATS, no Vault, no server)",
		Long: `Verify an audit bundle offline: file digests, every checkpoint's signature,
consistency between successive checkpoints, contiguity of the events and an
inclusion proof of every event in the latest signed tree. Pin the verifier
key you obtained out of band with --verifier-key. Exit 0: intact; 1: an
integrity failure, naming the first bad sequence, or a bundle that is not
a well-formed bundle (a damaged file is a failure, not a usage error);
2: the file cannot be opened or the flags are wrong.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return withCode(ExitUsage, err)
			}
			defer f.Close()
			c, err := bundle.Read(bufio.NewReader(f))
			if err != nil {
				res := bundle.Result{Problem: err.Error()}
				_ = e.print(res, func(w io.Writer) { fmt.Fprintf(w, "INTEGRITY FAILURE: %s\n", res.Problem) })
				return withCode(ExitIntegrity, err)
			}
			key, err := readKey(trusted)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			res := bundle.Verify(c, key)
			_ = e.print(res, func(w io.Writer) {
				if res.OK {
					fmt.Fprintf(w, "bundle intact: %d events (seq %d..%d) included in the signed tree of size %d; %d checkpoints consistent\n", res.Events, res.FromSeq, res.ToSeq, res.TreeSize, res.Checkpoints)
					return
				}
				fmt.Fprintf(w, "INTEGRITY FAILURE: %s\n", res.Problem)
			})
			if !res.OK {
				return withCode(ExitIntegrity, fmt.Errorf("%s", res.Problem))
			}
			return nil
		},
	}
	verifyB.Flags().StringVar(&trusted, "verifier-key", "", "the verifier key to trust, or @FILE (default: the bundle's own)")
	cmd.AddCommand(export, verifyB)
	return cmd
}

func (e *env) exportBundle(ctx context.Context, from, to string) (*bundle.Contents, error) {
	c := e.client()
	key, err := c.VerifierKey(ctx)
	if err != nil {
		return nil, err
	}
	out := &bundle.Contents{Manifest: bundle.Manifest{VerifierKey: key, FromTime: from, ToTime: to, CreatedAt: time.Now().UTC().Format(time.RFC3339)}}
	var sizes []int64
	err = c.Checkpoints(ctx, func(note []byte) error {
		cp, err := checkpoint.Open(note, key)
		if err != nil {
			return err
		}
		out.Checkpoints = append(out.Checkpoints, bundle.Checkpoint{Seq: uint64(len(out.Checkpoints) + 1), Note: string(note)})
		sizes = append(sizes, cp.Size)
		out.Manifest.Origin = cp.Origin
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("no checkpoint has been signed yet")
	}
	size := sizes[len(sizes)-1]
	out.Manifest.TreeSize = size
	q := url.Values{"to_seq": {strconv.FormatInt(size, 10)}}
	if from != "" {
		q.Set("since", from)
	}
	if to != "" {
		q.Set("until", to)
	}
	err = c.Replay(ctx, q, func(l client.ReplayLine) error {
		out.Events = append(out.Events, bundle.Event{Seq: l.Seq, Event: l.Event})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out.Events) > 0 {
		first, last := out.Events[0].Seq, out.Events[len(out.Events)-1].Seq
		out.Manifest.FromSeq, out.Manifest.ToSeq = first, last
		// The time range selects the first and last events; everything
		// between them goes in, so the bundle is one contiguous slice.
		if uint64(len(out.Events)) != last-first+1 {
			out.Events = out.Events[:0]
			err = c.Replay(ctx, url.Values{"from_seq": {strconv.FormatUint(first, 10)}, "to_seq": {strconv.FormatUint(last, 10)}}, func(l client.ReplayLine) error {
				out.Events = append(out.Events, bundle.Event{Seq: l.Seq, Event: l.Event})
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		resp, err := c.Do(ctx, "GET", "/v1/proofs/inclusions", url.Values{
			"from_seq": {strconv.FormatUint(first, 10)}, "to_seq": {strconv.FormatUint(last, 10)}, "tree_size": {strconv.FormatInt(size, 10)},
		}, nil, "")
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(resp.Body)
		for {
			var p bundle.Inclusion
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				resp.Body.Close()
				return nil, err
			}
			out.Inclusion = append(out.Inclusion, p)
		}
		resp.Body.Close()
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] == sizes[i-1] {
			continue
		}
		var p bundle.Consistency
		if err := c.GetJSON(ctx, "/v1/proofs/consistency", url.Values{"from": {strconv.FormatInt(sizes[i-1], 10)}, "to": {strconv.FormatInt(sizes[i], 10)}}, &p); err != nil {
			return nil, err
		}
		out.Consistency = append(out.Consistency, p)
	}
	return out, nil
}
