package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"custos.dev/services/client"
)

func (e *env) emitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "emit [FILE|-]",
		Short: "Send one event (a JSON object) or a batch (a JSON array) to a Custos server",
		Long: `Send CloudEvents to a Custos server (emitter token). FILE holds one
structured-mode CloudEvent (a JSON object) or a batch (a JSON array); "-" or
no argument reads standard input. Exit 0 when every event was appended (or
was already), 1 when any was denied by policy, 2 on bad input or errors.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = e.stdin
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return withCode(ExitUsage, err)
				}
				defer f.Close()
				r = f
			}
			body, err := io.ReadAll(io.LimitReader(r, 8<<20))
			if err != nil {
				return withCode(ExitUsage, err)
			}
			ct := "application/cloudevents+json"
			if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
				ct = "application/cloudevents-batch+json"
			}
			status, resp, err := e.client().Emit(cmd.Context(), body, ct)
			var apiErr *client.APIError
			if errors.As(err, &apiErr) {
				out := map[string]any{"status": apiErr.Status, "error": apiErr, "decision": apiErr.Decision}
				if apiErr.Seq > 0 {
					out["seq"] = apiErr.Seq
				}
				_ = e.print(out, func(w io.Writer) {})
				if apiErr.Code == "policy_denied" {
					return withCode(ExitIntegrity, apiErr)
				}
				return withCode(ExitUsage, apiErr)
			}
			if err != nil {
				return withCode(ExitUsage, err)
			}
			var v any
			_ = json.Unmarshal(resp, &v)
			denied := false
			if m, ok := v.(map[string]any); ok {
				if rs, ok := m["results"].([]any); ok {
					for _, x := range rs {
						if r, ok := x.(map[string]any); ok && r["status"] != float64(201) && r["status"] != float64(200) {
							denied = true
						}
					}
				}
			}
			if err := e.print(v, func(w io.Writer) {
				b, _ := json.MarshalIndent(v, "", "  ")
				fmt.Fprintf(w, "%d %s\n", status, b)
			}); err != nil {
				return err
			}
			if denied {
				return withCode(ExitIntegrity, fmt.Errorf("some events in the batch were not appended"))
			}
			return nil
		},
	}
}
