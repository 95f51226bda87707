package cli

import (
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (e *env) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens (admin token required)"}
	var role, source string
	create := &cobra.Command{
		Use: "create --role emitter|auditor|policy|admin [--source URI]",
		Long: `Create an API token (admin token via --token or $CUSTOS_TOKEN). An emitter
token may send events only for its --source (a CloudEvents source URI); an
auditor token reads the ledger, proofs, state and registers; a policy token
(a security team's) may re-decide history under a candidate set and
activate the server's policy set; an admin token may do everything. The secret is printed once, here: text gives token, id,
role and source lines; JSON {"id", "token", "role", "source"}.`,
		Short: "Create a token; an emitter token is bound to one CloudEvents source",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := e.client().CreateToken(cmd.Context(), role, source)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			return e.print(t, func(w io.Writer) {
				fmt.Fprintf(w, "token:  %s\nid:     %s\nrole:   %s\n", t.Token, t.ID, t.Role)
				if t.Source != "" {
					fmt.Fprintf(w, "source: %s\n", t.Source)
				}
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "emitter, auditor, policy or admin")
	create.Flags().StringVar(&source, "source", "", "the CloudEvents source an emitter token may send for")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use: "list",
		Long: `List every token (admin token), revoked ones included, newest first, never a
secret: a table ID ROLE SOURCE CREATED REVOKED, or JSON {"tokens": [{"id",
"role", "source", "created_at", "revoked_at"}]}; revoked_at is null while a
token is valid.`,
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Tokens []struct {
					ID        string  `json:"id"`
					Role      string  `json:"role"`
					Source    string  `json:"source"`
					CreatedAt string  `json:"created_at"`
					RevokedAt *string `json:"revoked_at"`
				} `json:"tokens"`
			}
			if err := e.client().GetJSON(cmd.Context(), "/v1/tokens", nil, &out); err != nil {
				return withCode(ExitUsage, err)
			}
			return e.print(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tROLE\tSOURCE\tCREATED\tREVOKED")
				for _, t := range out.Tokens {
					rev := ""
					if t.RevokedAt != nil {
						rev = *t.RevokedAt
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Source, t.CreatedAt, rev)
				}
				tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID",
		Long: `Revoke the token with that id at once (admin token): every request it makes
from then on is 401. A revocation lasts across restarts, the bootstrap admin
token's included. Text: "revoked ID"; JSON {"id", "revoked": true}. An
unknown id exits 2.`,
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := e.client().Do(cmd.Context(), http.MethodDelete, "/v1/tokens/"+args[0], nil, nil, "")
			if err != nil {
				return withCode(ExitUsage, err)
			}
			resp.Body.Close()
			return e.print(map[string]any{"id": args[0], "revoked": true}, func(w io.Writer) { fmt.Fprintf(w, "revoked %s\n", args[0]) })
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
