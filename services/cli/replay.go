package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"custos.dev/services/client"
)

// storedEvent is the part of a stored record the CLI shows.
type storedEvent struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Source   string          `json:"source"`
	Time     string          `json:"time"`
	Subject  string          `json:"subject"`
	Data     json.RawMessage `json:"data"`
	Decision *decisionView   `json:"decision"`
}

type decisionView struct {
	Allow   bool `json:"allow"`
	Reasons []struct {
		Code string `json:"code"`
	} `json:"reasons"`
}

func (e *env) replayCmd() *cobra.Command {
	var subject, typ, since, until, at string
	var fromSeq, toSeq uint64
	var stateOnly bool
	cmd := &cobra.Command{
		Use:         "replay",
		Annotations: map[string]string{outputsAnnotation: "ndjson,csv,iso27560"},
		Short:       "Stream ledger events (auditor token), or a subject's state at an instant",
		Long: `Stream stored events in sequence order, filtered by data subject, type,
event time and sequence range. --output ndjson prints each stored record
byte for byte (one per line, with its sequence and leaf hash); csv and json
are for spreadsheets and scripts; text is a table.

With --state, prints the subject's point-in-time state (consents in force,
data held by category and region, transfers, open rights requests, erasure)
as of --at (default now).

With --subject and --output iso27560, prints the subject's consent records
as ISO/IEC TS 27560 JSON-LD (W3C DPV's 27560 profile): one record per
consent, with every event in its life and the ledger sequence of each
(docs/vocabulary.md, "Consent records").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := e.client()
			if e.output == "iso27560" {
				if subject == "" {
					return withCode(ExitUsage, fmt.Errorf("--output iso27560 needs --subject"))
				}
				var doc map[string]any
				q := url.Values{"format": {"iso27560"}}
				if err := c.GetJSON(cmd.Context(), "/v1/subjects/"+url.PathEscape(subject)+"/consents", q, &doc); err != nil {
					return err
				}
				b, _ := json.MarshalIndent(doc, "", "  ")
				_, err := fmt.Fprintln(e.stdout, string(b))
				return err
			}
			if stateOnly {
				if subject == "" {
					return withCode(ExitUsage, fmt.Errorf("--state needs --subject"))
				}
				q := url.Values{}
				if at != "" {
					q.Set("at", at)
				}
				var st map[string]any
				if err := c.GetJSON(cmd.Context(), "/v1/subjects/"+url.PathEscape(subject)+"/state", q, &st); err != nil {
					return withCode(ExitUsage, err)
				}
				return e.print(st, func(w io.Writer) {
					b, _ := json.MarshalIndent(st, "", "  ")
					fmt.Fprintln(w, string(b))
				})
			}
			q := url.Values{}
			for k, v := range map[string]string{"subject": subject, "type": typ, "since": since, "until": until} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if fromSeq > 0 {
				q.Set("from_seq", strconv.FormatUint(fromSeq, 10))
			}
			if toSeq > 0 {
				q.Set("to_seq", strconv.FormatUint(toSeq, 10))
			}
			return e.replay(cmd, c, q)
		},
	}
	f := cmd.Flags()
	f.StringVar(&subject, "subject", "", "data subject identifier")
	f.StringVar(&typ, "type", "", "event type")
	f.StringVar(&since, "since", "", "event time at or after (RFC 3339)")
	f.StringVar(&until, "until", "", "event time before (RFC 3339)")
	f.Uint64Var(&fromSeq, "from-seq", 0, "first sequence")
	f.Uint64Var(&toSeq, "to-seq", 0, "last sequence")
	f.BoolVar(&stateOnly, "state", false, "print the subject's point-in-time state instead of events")
	f.StringVar(&at, "at", "", "with --state: the instant (RFC 3339; default now)")
	return cmd
}

func (e *env) replay(cmd *cobra.Command, c *client.Client, q url.Values) error {
	w := e.stdout
	var cw *csv.Writer
	first := true
	n := 0
	started := time.Now()
	switch e.output {
	case "csv":
		cw = csv.NewWriter(w)
		_ = cw.Write([]string{"seq", "time", "type", "source", "id", "subject", "allow", "reasons", "leaf_hash"})
	case "json":
		fmt.Fprint(w, "[")
	}
	err := c.Replay(cmd.Context(), q, func(l client.ReplayLine) error {
		n++
		if e.isTerminal() && n%1000 == 0 {
			fmt.Fprintf(e.stderr, "\r%d events (%.0f/s)", n, float64(n)/time.Since(started).Seconds())
		}
		switch e.output {
		case "ndjson":
			b, _ := json.Marshal(l)
			_, err := fmt.Fprintln(w, string(b))
			return err
		case "json":
			b, _ := json.Marshal(l)
			if !first {
				fmt.Fprint(w, ",")
			}
			first = false
			_, err := fmt.Fprintf(w, "\n%s", b)
			return err
		}
		var ev storedEvent
		_ = json.Unmarshal(l.Event, &ev)
		allow, reasons := "", ""
		if ev.Decision == nil && ev.Type == "custos.decision.denied" {
			// A denial's decision is in its data, beside the attempt.
			var d struct {
				Decision *decisionView `json:"decision"`
			}
			if json.Unmarshal(ev.Data, &d) == nil {
				ev.Decision = d.Decision
			}
		}
		if ev.Decision != nil {
			allow = strconv.FormatBool(ev.Decision.Allow)
			var codes []string
			for _, r := range ev.Decision.Reasons {
				codes = append(codes, r.Code)
			}
			reasons = strings.Join(codes, ";")
		}
		if cw != nil {
			return cw.Write([]string{strconv.FormatUint(l.Seq, 10), ev.Time, ev.Type, ev.Source, ev.ID, ev.Subject, allow, reasons, l.LeafHash})
		}
		_, err := fmt.Fprintf(w, "%8d  %-30s  %-32s  %s  %s\n", l.Seq, ev.Time, ev.Type, ev.Source, ev.ID)
		return err
	})
	if e.isTerminal() && n >= 1000 {
		fmt.Fprintln(e.stderr)
	}
	if cw != nil {
		cw.Flush()
	}
	if e.output == "json" {
		fmt.Fprintln(w, "\n]")
	}
	if err != nil {
		return withCode(ExitUsage, err)
	}
	return nil
}
