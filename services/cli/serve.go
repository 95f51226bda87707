package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"custos.dev/ledger"
	"custos.dev/ledger/policy"
	"custos.dev/services/app"
	"custos.dev/services/server"
)

func (e *env) serveCmd() *cobra.Command {
	var cfg app.Config
	var logFormat, logLevel, placement string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run Custos on this machine (embedded NATS, built-in policies, dev key server by default)",
		Long: `Run the Custos server.

By default everything runs in this process: an embedded NATS server with
JetStream (state under DATA/nats, fsync on every message, auth always on,
listening on 127.0.0.1:4222), the policy set built into the binary, and an
embedded DEV key server that speaks the Vault transit API (state under
DATA/keys). Point --nats-url at a real NATS cluster and --vault-addr (or
VAULT_ADDR) at a real Vault or OpenBao for production.

On first start it writes an admin token to DATA/admin.token (mode 0600) and
read-only NATS credentials for auditors to DATA/nats-auditor.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(e.stderr, logFormat, logLevel)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			cfg.Logger = log
			if cfg.VaultAddr == "" {
				cfg.VaultAddr = e.getenv("VAULT_ADDR")
			}
			if cfg.VaultToken == "" {
				cfg.VaultToken = e.getenv("VAULT_TOKEN")
			}
			if cfg.VaultRoleID == "" {
				cfg.VaultRoleID, cfg.VaultSecretID = e.getenv("VAULT_ROLE_ID"), e.getenv("VAULT_SECRET_ID")
			}
			if placement != "" {
				cfg.PlacementTags = strings.Split(placement, ",")
			}
			ctx := cmd.Context()
			a, err := app.Start(ctx, cfg)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			fmt.Fprintf(e.stderr, "custos: serving on %s; admin token in %s/admin.token\n", a.URL, cfg.DataDir)
			<-ctx.Done()
			log.Info("shutting down: finishing in-flight appends, then draining NATS")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return a.Close(sctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", app.DefaultDataDir, "data directory")
	f.StringVar(&cfg.Listen, "listen", app.DefaultListen, "HTTP API address")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS URL (default: embedded server)")
	f.StringVar(&cfg.NATSCreds, "nats-creds", "", "JSON file {\"user\",\"password\"} for --nats-url")
	f.StringVar(&cfg.NATSListen, "nats-listen", app.DefaultNATSListen, "embedded NATS listen address")
	f.BoolVar(&cfg.NoSync, "no-sync", false, "DANGEROUS: do not fsync every message (acknowledged events can be lost on power failure)")
	f.StringVar(&cfg.PoliciesDir, "policies", "", "policy directory, watched and hot-reloaded, or an OPA bundle file (reloaded with custos policy reload) (default: the built-in set)")
	f.StringVar(&cfg.PolicyVerificationKey, "policy-verification-key", "", "PEM public key: --policies must be an OPA bundle signed with it")
	f.StringVar(&cfg.PolicyKeyID, "policy-key-id", app.DefaultPolicyKeyID, "the key id the policy bundle is signed under")
	f.StringVar(&cfg.PolicyBundleURL, "policy-bundle-url", "", "poll this bundle server URL for the policy bundle (ETag, as OPA's bundle service), instead of --policies")
	f.DurationVar(&cfg.PolicyPoll, "policy-poll", app.DefaultPolicyPoll, "how often the policy directory, or the bundle server, is checked for a new set")
	f.DurationVar(&cfg.PolicyDeadline, "policy-deadline", policy.DefaultDeadline, "how long one policy evaluation may take; a slower one is a POLICY_ERROR deny")
	f.BoolVar(&cfg.AllowUntestedPolicy, "allow-untested-policy", false, "accept a policy set that has no Rego tests (refused by default)")
	f.StringVar(&cfg.VaultAddr, "vault-addr", "", "Vault address (default $VAULT_ADDR; none: embedded dev key server)")
	f.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", ledger.DefaultCheckpointInterval, "how often a grown tree is signed")
	f.DurationVar(&cfg.RetentionInterval, "retention-check-interval", app.DefaultRetentionInterval, "how often retention periods are checked")
	f.DurationVar(&cfg.KeyCacheTTL, "key-cache-ttl", ledger.DefaultKeyCacheTTL, "how long subject keys are used without Vault (bounds appends during a Vault outage)")
	f.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas (3 on a cluster)")
	f.StringVar(&placement, "placement-tags", "", "comma-separated server tags the ledger streams must be placed on, e.g. region:cn")
	f.StringVar(&cfg.Origin, "origin", ledger.DefaultOrigin, "checkpoint origin (the log's name in its signed notes)")
	f.Float64Var(&cfg.RatePerToken, "rate-limit", server.DefaultRatePerToken, "requests per second per token")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json")
}
