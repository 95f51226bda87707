package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"custos.dev/ledger/policy"
	"custos.dev/ledger/whatif"
	"custos.dev/policies"
)

// policyDir is the set a policy command works on; a directory that cannot
// be read is an error naming it (os.DirFS would name only ".").
func policyDir(args []string) (fs.FS, string, error) {
	if len(args) == 1 {
		info, err := os.Stat(args[0])
		if err != nil {
			return nil, "", withCode(ExitUsage, fmt.Errorf("policy directory %s: %w", args[0], errors.Unwrap(err)))
		}
		if !info.IsDir() {
			return nil, "", withCode(ExitUsage, fmt.Errorf("policy directory %s: not a directory", args[0]))
		}
		return os.DirFS(args[0]), args[0], nil
	}
	return policies.FS(), "(built-in)", nil
}

func (e *env) policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Test and check Rego policy sets"}
	test := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run the Rego unit tests of a policy directory (default: the built-in set), with coverage",
		Long: `Run the Rego unit tests (test_ rules) of DIR, or of the set built into the
binary, against the set's own data, as opa test does, with coverage, under
the same confined capabilities Custos decides with (no network or clock
built-ins). Needs no server. Text: the directory and the report; JSON:
{"revision", "passed", "failed", "coverage"}. Exit 0 when all pass, 1 when
any fails, 2 when the directory cannot be loaded.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fsys, name, err := policyDir(args)
			if err != nil {
				return err
			}
			rep, err := policy.Test(cmd.Context(), fsys)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			_ = e.print(rep, func(w io.Writer) {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintf(w, "%s\n%s\n", name, b)
			})
			if !rep.OK() {
				return withCode(ExitIntegrity, fmt.Errorf("%d Rego tests failed", len(rep.Failed)))
			}
			return nil
		},
	}
	check := &cobra.Command{
		Use:   "check [DIR]",
		Short: "Compile (strict) and format-check a policy directory",
		Long: `Compile DIR (default: the built-in set) in strict mode, as opa check --strict
does, and check every Rego file is formatted as opa fmt would. Needs no
server. Text: one line per problem (file:row: code: message) or "DIR: ok";
JSON: {"dir", "problems": [...], "ok"} (problems is [] when clean). Exit 0
clean, 1 with problems, 2 when the directory cannot be read (naming it).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fsys, name, err := policyDir(args)
			if err != nil {
				return err
			}
			problems, err := policy.Check(cmd.Context(), fsys)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			_ = e.print(map[string]any{"dir": name, "problems": problems, "ok": len(problems) == 0}, func(w io.Writer) {
				for _, p := range problems {
					fmt.Fprintln(w, p.String())
				}
				if len(problems) == 0 {
					fmt.Fprintf(w, "%s: ok\n", name)
				}
			})
			if len(problems) > 0 {
				return withCode(ExitIntegrity, fmt.Errorf("%d problems", len(problems)))
			}
			return nil
		},
	}
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Load the server's policy directory now and activate it (admin token)",
		Long: `Ask a server started with --policies DIR to load DIR at once, instead of
at its next poll, and activate it if its revision is new. The activation on
the ledger (custos.policy.activated) names your token. A refused set (broken
Rego, failing or missing tests, unusable settings) is reported with why, and
the server keeps its active set. Exit 0: active; 2: refused or no access.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.activate(cmd, "POST", "/v1/policy/reload", nil, "activated %s\n", "%s is already active\n")
		},
	}
	var natsCreds, since, until, typ string
	var fromSeq, toSeq uint64
	var cascade bool
	whatIf := &cobra.Command{
		Use:   "whatif DIR|BUNDLE",
		Short: "Re-decide the recorded history under the policy set in DIR and report what would change (auditor token)",
		Long: `Re-decide every recorded decision — appended events and recorded denials
alike — under the candidate policy set in DIR (or the OPA bundle file BUNDLE), each
with exactly the subject
state and the notices it was first decided with (the state as of the
sequence before it), and report what would have been decided differently:
totals (evaluated, unchanged, allow→deny, deny→allow, reasons changed only),
every change with its sequence, type, time, subject pseudonym and old and
new decision, and counts by reason code, type and destination. With
--cascade the state is rebuilt as the candidate would have made it (events
it denies change nothing, attempts it allows count), so later decisions see
the candidate's own history; the report names the mode.

Reads through the HTTP API (auditor token) or straight from NATS with
--nats-creds, like verify. It never appends and never changes the active
set. Exit 0: nothing would change; 1: something would (like diff, so CI can
gate a policy change on it); 2: error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			candidate, err := loadCandidate(ctx, args[0])
			if err != nil {
				return err
			}
			rng := whatif.Range{FromSeq: fromSeq, ToSeq: toSeq, Type: typ}
			for _, t := range []struct {
				flag, v string
				into    *time.Time
			}{{"--since", since, &rng.Since}, {"--until", until, &rng.Until}} {
				if t.v == "" {
					continue
				}
				if *t.into, err = time.Parse(time.RFC3339Nano, t.v); err != nil {
					return withCode(ExitUsage, fmt.Errorf("%s: not an RFC 3339 time", t.flag))
				}
			}
			src, err := e.recordSource(ctx, natsCreds, "custos-whatif")
			if err != nil {
				return withCode(ExitUsage, err)
			}
			opts := whatif.Options{Range: rng, Cascade: cascade}
			if e.isTerminal() {
				opts.Progress = func(n int) { fmt.Fprintf(e.stderr, "\r%d records", n) }
			}
			rep, err := whatif.Run(ctx, src, candidate, opts)
			if e.isTerminal() {
				fmt.Fprintln(e.stderr)
			}
			if err != nil {
				return withCode(ExitUsage, err)
			}
			_ = e.print(rep, func(w io.Writer) {
				fmt.Fprintf(w, "%s under %s (%s): %d decisions re-decided, %d unchanged, %d allow→deny, %d deny→allow, %d reasons changed\n",
					args[0], rep.CandidateRev, rep.Mode, rep.Evaluated, rep.Unchanged, rep.AllowToDeny, rep.DenyToAllow, rep.ReasonsOnly)
				for _, c := range rep.Changes {
					fmt.Fprintf(w, "%8d  %-26s  %-20s  %v %v -> %v %v\n", c.Seq, c.Type, c.Destination, c.Old.Allow, c.Old.Reasons, c.New.Allow, c.New.Reasons)
				}
			})
			if rep.Changed() {
				return withCode(ExitIntegrity, fmt.Errorf("%d decisions would change", len(rep.Changes)))
			}
			return nil
		},
	}
	wf := whatIf.Flags()
	wf.StringVar(&natsCreds, "nats-creds", "", "read straight from NATS with these credentials (DATA/nats-auditor.json) instead of the HTTP API")
	wf.Uint64Var(&fromSeq, "from-seq", 0, "first sequence re-decided")
	wf.Uint64Var(&toSeq, "to-seq", 0, "last sequence re-decided")
	wf.StringVar(&since, "since", "", "re-decide events whose time is at or after (RFC 3339)")
	wf.StringVar(&until, "until", "", "re-decide events whose time is before (RFC 3339)")
	wf.StringVar(&typ, "type", "", "re-decide events of this type only")
	wf.BoolVar(&cascade, "cascade", false, "rebuild the state as the candidate would have (events it denies change nothing) instead of the state as recorded")
	var out, signingKey, keyID, revision string
	build := &cobra.Command{
		Use:   "build DIR --out FILE",
		Short: "Write a policy directory as an OPA bundle, signed with --signing-key",
		Long: `Write the set in DIR (or the built-in one with "-") as an OPA bundle (.tar.gz,
the format opa build writes) with the manifest revision --revision, signed
with the PEM private key in --signing-key (RS256 for RSA, ES256 for EC)
under --key-id when given. The set's data/custos/config/data.json becomes
data.custos.config in the bundle, where OPA itself places it, so the bundle
decides the same under custos serve --policies FILE and under plain OPA.
The set is checked first: a set that would be refused at load is not built.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fsys fs.FS = policies.FS()
			if args[0] != "-" {
				var err error
				if fsys, _, err = policyDir(args); err != nil {
					return err
				}
			}
			if _, err := policy.Load(cmd.Context(), fsys); err != nil {
				return withCode(ExitUsage, err)
			}
			var key []byte
			if signingKey != "" {
				var err error
				if key, err = os.ReadFile(signingKey); err != nil {
					return withCode(ExitUsage, err)
				}
			}
			f, err := os.Create(out)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			if err := policy.BuildBundle(f, fsys, revision, key, keyID); err != nil {
				f.Close()
				return withCode(ExitUsage, err)
			}
			if err := f.Close(); err != nil {
				return withCode(ExitUsage, err)
			}
			return e.print(map[string]any{"bundle": out, "revision": revision, "signed": len(key) > 0, "key_id": keyID}, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s (revision %q, signed: %v)\n", out, revision, len(key) > 0)
			})
		},
	}
	bf := build.Flags()
	bf.StringVar(&out, "out", "", "bundle file to write")
	bf.StringVar(&signingKey, "signing-key", "", "PEM private key to sign the bundle with")
	bf.StringVar(&keyID, "key-id", "custos-policy", "the key id the signature names")
	bf.StringVar(&revision, "revision", "", "the bundle manifest's revision")
	_ = build.MarkFlagRequired("out")
	install := &cobra.Command{
		Use:   "install FILE",
		Short: "Upload an OPA bundle to the server and activate it (policy or admin token)",
		Long: `Upload the OPA bundle in FILE (custos policy build, opa build) to a server
started with --policies BUNDLE.tar.gz: the server verifies it (with
--policy-verification-key, when it has one), loads it and its tests,
replaces its bundle file with it (so a restart keeps it) and activates it.
The activation on the ledger names your token, the bundle's revision and its
signer. A refused bundle is reported with why, and the active set stays.
Exit 0: active; 2: refused or no access.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return withCode(ExitUsage, err)
			}
			return e.activate(cmd, "PUT", "/v1/policy", b, "installed and activated %s\n", "installed; %s was already active\n")
		},
	}
	cmd.AddCommand(test, check, reload, whatIf, build, install)
	return cmd
}

// activate asks the server to activate a policy set and prints the answer,
// {"policy_revision", "activated"}, with the text for each case.
func (e *env) activate(cmd *cobra.Command, method, path string, body []byte, activated, already string) error {
	ctype := ""
	if body != nil {
		ctype = "application/gzip"
	}
	resp, err := e.client().Do(cmd.Context(), method, path, nil, body, ctype)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	defer resp.Body.Close()
	var out struct {
		Revision  string `json:"policy_revision"`
		Activated bool   `json:"activated"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return withCode(ExitUsage, err)
	}
	return e.print(out, func(w io.Writer) {
		if out.Activated {
			fmt.Fprintf(w, activated, out.Revision)
		} else {
			fmt.Fprintf(w, already, out.Revision)
		}
	})
}

// loadCandidate loads a candidate set from a policy directory or an OPA
// bundle file.
func loadCandidate(ctx context.Context, path string) (*policy.Set, error) {
	if info, err := os.Stat(path); err == nil && !info.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, withCode(ExitUsage, err)
		}
		defer f.Close()
		s, _, err := policy.LoadBundle(ctx, f, nil)
		if err != nil {
			return nil, withCode(ExitUsage, err)
		}
		return s, nil
	}
	fsys, _, err := policyDir([]string{path})
	if err != nil {
		return nil, err
	}
	s, err := policy.Load(ctx, fsys)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	return s, nil
}
