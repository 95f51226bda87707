// Package natsd runs the embedded NATS server of a single-machine Custos:
// JetStream on disk with every message fsynced before it is acknowledged,
// listening on loopback, always with authentication (docs/architecture.md).
//
// It has the account layout of deploy/nats/accounts.conf. Custos's own user
// lives in the account CUSTOS with the ledger streams and KV buckets; it may
// append and read but never delete, purge or weaken the ledger streams.
// The read-only auditor lives in the account AUDIT, which holds mirrors
// named LEDGER and LEDGER_CHECKPOINTS: a JetStream API request is answered
// on whatever reply subject the requester names, and the server publishes
// that answer past every user permission, so a "read-only" user in the
// ledger's own account could make the server append to the ledger. In AUDIT
// nothing captures such messages, and mirrors take no published messages.
package natsd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/atomicfile"
)

// Config of the embedded server.
type Config struct {
	// Dir is the Custos data directory; JetStream lives in Dir/nats.
	Dir string
	// Listen is host:port; port 0 picks a free one.
	Listen string
	// NoSync turns off fsync per message (dangerous: acknowledged events
	// can be lost on power failure).
	NoSync bool
	// ServerName names the server (JetStream needs a stable name).
	ServerName string
}

// Credentials are a NATS user's connection details, as written to
// DATA/nats-auditor.json.
type Credentials struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// Connect opens a connection with these credentials.
func (c Credentials) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.UserInfo(c.User, c.Password), nats.Name(name), nats.MaxReconnects(-1)}, opts...)
	return nats.Connect(c.URL, opts...)
}

// Server is a running embedded server.
type Server struct {
	ns      *server.Server
	Custos  Credentials
	Auditor Credentials
	admin   Credentials
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	custos, err := loadOrCreate(filepath.Join(cfg.Dir, "nats-custos.json"), "custos")
	if err != nil {
		return nil, err
	}
	auditor, err := loadOrCreate(filepath.Join(cfg.Dir, "nats-auditor.json"), "auditor")
	if err != nil {
		return nil, err
	}
	admin, err := loadOrCreate(filepath.Join(cfg.Dir, "nats-audit-admin.json"), "audit-admin")
	if err != nil {
		return nil, err
	}
	host, portS, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("nats listen port %q: %w", portS, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server reports a port in use only in its log, and then never
		// becomes ready; say so at once instead.
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %s: %w", cfg.Listen, err)
		}
		ln.Close()
	}
	name := cfg.ServerName
	if name == "" {
		name = "custos-embedded"
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(accountsConfig(custos, auditor, admin)); err != nil {
		return nil, fmt.Errorf("nats accounts: %w", err)
	}
	opts.ServerName, opts.Host, opts.Port = name, host, port
	opts.JetStream, opts.StoreDir, opts.SyncAlways = true, filepath.Join(cfg.Dir, "nats"), !cfg.NoSync
	opts.NoSigs, opts.NoLog = true, true
	opts.MaxPayload, opts.JetStreamMaxMemory = 8<<20, 256<<20
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server did not become ready in 30s")
	}
	url := ns.ClientURL()
	custos.URL, auditor.URL = url, url
	// Rewrite so the files always carry the address actually in use.
	if err := writeCreds(filepath.Join(cfg.Dir, "nats-custos.json"), custos); err != nil {
		ns.Shutdown()
		return nil, err
	}
	if err := writeCreds(filepath.Join(cfg.Dir, "nats-auditor.json"), auditor); err != nil {
		ns.Shutdown()
		return nil, err
	}
	admin.URL = url
	if err := writeCreds(filepath.Join(cfg.Dir, "nats-audit-admin.json"), admin); err != nil {
		ns.Shutdown()
		return nil, err
	}
	return &Server{ns: ns, Custos: custos, Auditor: auditor, admin: admin}, nil
}

// Limits on the consumers auditors create on their mirrors.
const (
	AuditMaxConsumers = 64
	AuditConsumerIdle = 10 * time.Minute
)

// EnsureAuditMirrors creates the auditors' mirrors of the ledger streams in
// the AUDIT account; Custos calls it once the ledger streams exist.
func (s *Server) EnsureAuditMirrors(ctx context.Context) error {
	nc, err := s.admin.Connect("custos-audit-admin")
	if err != nil {
		return fmt.Errorf("audit account: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, name := range []string{"LEDGER", "LEDGER_CHECKPOINTS"} {
		if _, err := js.Stream(ctx, name); err == nil {
			continue
		}
		// A mirror is a copy the server can always fetch again from the
		// ledger: after a crash it resumes from its last stored message. So
		// it is not fsynced per message (AsyncPersistMode), which would
		// double the disk's syncs for every append.
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Description: "Auditors' read-only mirror of the ledger's " + name,
			Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew,
			MaxMsgs: -1, MaxBytes: -1, MaxMsgsPerSubject: -1, MaxMsgSize: -1,
			DenyDelete: true, DenyPurge: true, AllowDirect: true, PersistMode: jetstream.AsyncPersistMode,
			Mirror: &jetstream.StreamSource{Name: name, External: &jetstream.ExternalStream{APIPrefix: "$JS.ledger.API", DeliverPrefix: "audit.deliver"}},
			// Auditors may create consumers; these bound how many, and how
			// long an idle one (a durable one included) is kept.
			MaxConsumers:   AuditMaxConsumers,
			ConsumerLimits: jetstream.StreamConsumerLimits{InactiveThreshold: AuditConsumerIdle},
		})
		if err != nil {
			return fmt.Errorf("audit mirror %s: %w", name, err)
		}
	}
	return nil
}

// MirrorCaughtUp reports whether the auditors' mirrors hold every message
// of the ledger streams as of now.
func (s *Server) MirrorCaughtUp(ctx context.Context, ledgerSeq, checkpointSeq uint64) bool {
	nc, err := s.Auditor.Connect("custos-mirror-check")
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	for name, want := range map[string]uint64{"LEDGER": ledgerSeq, "LEDGER_CHECKPOINTS": checkpointSeq} {
		st, err := js.Stream(ctx, name)
		if err != nil || st.CachedInfo().State.LastSeq < want {
			return false
		}
	}
	return true
}

// accountsConfig renders the two accounts of deploy/nats/accounts.conf with
// this server's generated passwords and the permissions below.
func accountsConfig(custos, auditor, admin Credentials) string {
	list := func(v []string) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // NATS config knows no \u escapes
		_ = enc.Encode(v)
		return strings.TrimSpace(b.String())
	}
	cp, ap := CustosPermissions(), AuditorPermissions()
	return fmt.Sprintf(`accounts {
  CUSTOS {
    jetstream: enabled
    users: [
      { user: %q, password: %q, permissions: { publish: { allow: %s, deny: %s }, subscribe: { allow: %s } } }
    ]
    exports: [
      { service: "$JS.API.CONSUMER.CREATE.LEDGER", accounts: [AUDIT] }
      { service: "$JS.API.CONSUMER.CREATE.LEDGER_CHECKPOINTS", accounts: [AUDIT] }
      { stream: "audit.deliver.>", accounts: [AUDIT] }
      { service: "$JS.FC.>", accounts: [AUDIT] }
    ]
  }
  AUDIT {
    jetstream: enabled
    users: [
      { user: %q, password: %q, permissions: { publish: { allow: %s }, subscribe: { allow: %s } } }
      { user: %q, password: %q, permissions: { publish: { allow: ["$JS.API.STREAM.CREATE.LEDGER", "$JS.API.STREAM.CREATE.LEDGER_CHECKPOINTS", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.INFO"] }, subscribe: { allow: ["_INBOX.>"] } } }
    ]
    imports: [
      { service: { account: CUSTOS, subject: "$JS.API.CONSUMER.CREATE.LEDGER" }, to: "$JS.ledger.API.CONSUMER.CREATE.LEDGER" }
      { service: { account: CUSTOS, subject: "$JS.API.CONSUMER.CREATE.LEDGER_CHECKPOINTS" }, to: "$JS.ledger.API.CONSUMER.CREATE.LEDGER_CHECKPOINTS" }
      { stream: { account: CUSTOS, subject: "audit.deliver.>" } }
      { service: { account: CUSTOS, subject: "$JS.FC.>" } }
    ]
  }
  SYS {}
}
system_account: SYS
`, custos.User, custos.Password, list(cp.Publish.Allow), list(cp.Publish.Deny), list(cp.Subscribe.Allow),
		auditor.User, auditor.Password, list(ap.Publish.Allow), list(ap.Subscribe.Allow),
		admin.User, admin.Password)
}

// URL is the client URL.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// CustosPermissions lets Custos append to the ledger and use the stream API
// and its KV buckets, but never delete, purge or reconfigure the ledger
// streams (DenyDelete/DenyPurge guard the same from the server side).
func CustosPermissions() *server.Permissions {
	var deny []string
	for _, s := range []string{"LEDGER", "LEDGER_CHECKPOINTS"} {
		deny = append(deny,
			"$JS.API.STREAM.DELETE."+s, "$JS.API.STREAM.PURGE."+s, "$JS.API.STREAM.UPDATE."+s,
			"$JS.API.STREAM.MSG.DELETE."+s, "$JS.API.STREAM.RESTORE."+s)
	}
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{"ledger.>", "checkpoints.ledger", "$JS.API.>", "$KV.custos_subject_keys.>", "$KV.custos_pii.>", "$KV.custos_meta.>", "$KV.custos_tokens.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>", "custos.>"},
			Deny:  deny,
		},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", "$KV.custos_tokens.>", "custos.>"}},
	}
}

// AuditorPermissions let an auditor read LEDGER and LEDGER_CHECKPOINTS
// (stream info, direct and message get, ephemeral ordered consumers) and
// publish nothing to them.
func AuditorPermissions() *server.Permissions {
	var allow []string
	for _, s := range []string{"LEDGER", "LEDGER_CHECKPOINTS"} {
		allow = append(allow,
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".>",
			"$JS.API.CONSUMER.DELETE."+s+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".>",
		)
	}
	// STREAM.NAMES and STREAM.LIST list the AUDIT account's streams, which
	// are the two mirrors: `nats stream ls` works for an auditor.
	allow = append(allow, "$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.ACK.LEDGER.>", "$JS.ACK.LEDGER_CHECKPOINTS.>", "$JS.FC.>")
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: allow},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

func loadOrCreate(path, user string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		var c Credentials
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("%s: %w", path, err)
		}
		return c, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Credentials{}, err
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return Credentials{}, err
	}
	return Credentials{User: user, Password: hex.EncodeToString(secret)}, nil
}

func writeCreds(path string, c Credentials) error {
	b, _ := json.MarshalIndent(c, "", "  ")
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}
