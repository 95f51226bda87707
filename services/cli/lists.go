package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func jsonUnmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (e *env) transfersCmd() *cobra.Command {
	var from, to, dest string
	var csvOut bool
	cmd := &cobra.Command{
		Use:         "transfers",
		Annotations: map[string]string{outputsAnnotation: "csv"},
		Short:       "The register of cross-border transfers and blocked attempts (auditor token)",
		Long: `The register of cross-border transfers, sharings and storage abroad that were
recorded, and of the attempts that were blocked (GET /v1/transfers), each at
the time its event claimed. Filter by event time (--from, --to) and
destination. Text: a table; JSON: {"transfers": [...]}; --csv (or --output
csv): the server's CSV with every column (subject pseudonym, transfer id,
purpose, impact-assessment reference, lawful basis, GDPR transfer ground,
policy revision). Exit 0, or 2 on errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"from": from, "to": to, "destination": dest} {
				if v != "" {
					q.Set(k, v)
				}
			}
			c := e.client()
			if csvOut || e.output == "csv" {
				q.Set("format", "csv")
				resp, err := c.Do(cmd.Context(), "GET", "/v1/transfers", q, nil, "")
				if err != nil {
					return withCode(ExitUsage, err)
				}
				defer resp.Body.Close()
				_, err = io.Copy(e.stdout, resp.Body)
				return err
			}
			if e.output == "json" {
				var raw json.RawMessage
				if err := c.GetJSON(cmd.Context(), "/v1/transfers", q, &raw); err != nil {
					return withCode(ExitUsage, err)
				}
				return e.print(raw, nil)
			}
			var out struct {
				Transfers []struct {
					Seq        uint64   `json:"seq"`
					Time       string   `json:"time"`
					Kind       string   `json:"kind"`
					Recipient  string   `json:"recipient"`
					From       string   `json:"from_region"`
					To         string   `json:"to_region"`
					Mechanism  string   `json:"mechanism"`
					Categories []string `json:"categories"`
					Allowed    bool     `json:"allowed"`
					Reasons    []string `json:"reasons"`
				} `json:"transfers"`
			}
			if err := c.GetJSON(cmd.Context(), "/v1/transfers", q, &out); err != nil {
				return withCode(ExitUsage, err)
			}
			return e.print(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tRECIPIENT\tFROM\tTO\tMECHANISM\tCATEGORIES\tALLOWED\tREASONS")
				for _, t := range out.Transfers {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%v\t%v\n", t.Seq, t.Time, t.Kind, t.Recipient, t.From, t.To, t.Mechanism, t.Categories, t.Allowed, t.Reasons)
				}
				tw.Flush()
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "event time at or after (RFC 3339)")
	f.StringVar(&to, "to", "", "event time before (RFC 3339)")
	f.StringVar(&dest, "destination", "", "destination region (ISO 3166-1)")
	f.BoolVar(&csvOut, "csv", false, "print CSV")
	return cmd
}

func (e *env) rightsCmd() *cobra.Command {
	var status string
	cmd := &cobra.Command{
		Use: "rights",
		Long: `Data-subject rights requests with their deadlines (from the policy data, by
right and the subject's jurisdiction), overdue ones flagged (GET /v1/rights).
--status is open (default), overdue, closed or all. Subjects are shown by
pseudonym only. Exit 0, or 2 on errors.`,
		Short: "List data-subject rights requests with their deadlines; overdue ones flagged (auditor token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Requests []struct {
					Subject     string `json:"subject"`
					RequestID   string `json:"request_id"`
					Right       string `json:"right"`
					Status      string `json:"status"`
					RequestedAt string `json:"requested_at"`
					Deadline    string `json:"deadline"`
					Overdue     bool   `json:"overdue"`
				} `json:"requests"`
			}
			if err := e.client().GetJSON(cmd.Context(), "/v1/rights", url.Values{"status": {status}}, &out); err != nil {
				return withCode(ExitUsage, err)
			}
			return e.print(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "REQUEST\tRIGHT\tSTATUS\tREQUESTED\tDEADLINE\tOVERDUE\tSUBJECT")
				for _, r := range out.Requests {
					flag := ""
					if r.Overdue {
						flag = "OVERDUE"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RequestID, r.Right, r.Status, r.RequestedAt, r.Deadline, flag, r.Subject)
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "open", "open, overdue, closed or all")
	return cmd
}
