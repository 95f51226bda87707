package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"custos.dev/ledger/policy"
	"custos.dev/policies"
)

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and built-in policy revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rev := "unavailable"
			if set, err := policy.Load(context.Background(), policies.FS()); err == nil {
				rev = set.Revision()
			}
			v := map[string]string{"version": Version, "commit": Commit, "policy_revision": rev, "go": runtime.Version()}
			return e.print(v, func(w io.Writer) {
				fmt.Fprintf(w, "custos %s (commit %s, %s)\nbuilt-in policy %s\n", Version, Commit, runtime.Version(), rev)
			})
		},
	}
}
