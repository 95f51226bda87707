package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"custos.dev/ledger/policy"
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
			resp, err := e.client().Do(cmd.Context(), "POST", "/v1/policy/reload", nil, nil, "")
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
					fmt.Fprintf(w, "activated %s\n", out.Revision)
				} else {
					fmt.Fprintf(w, "%s is already active\n", out.Revision)
				}
			})
		},
	}
	cmd.AddCommand(test, check, reload)
	return cmd
}
