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
		Args:  cobra.MaximumNArgs(1),
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
		Args:  cobra.MaximumNArgs(1),
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
	cmd.AddCommand(test, check)
	return cmd
}
