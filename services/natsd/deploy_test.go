package natsd_test

// Tests of the production configurations under deploy/: the NATS server
// configurations parse and validate as `nats-server -t` would, a server
// started from ledger-node.conf enforces least privilege with literally the
// embedded server's permissions, no read-only user can make the server
// write into the ledger's account, a regulator's leaf-node mirror works with
// nothing more than its user's permissions, the Vault policy grants exactly
// the transit calls Custos makes, and the YAML files parse.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"custos.dev/ledger"
	"custos.dev/ledger/state"
	"custos.dev/services/natsd"
)

const deployDir = "../../deploy"

// Passwords the configurations read from the environment. Each starts with
// a letter, as accounts.conf requires.
var deployEnv = map[string]string{
	"CUSTOS_NATS_PASSWORD":       "custosPw7f3a",
	"AUDITOR_NATS_PASSWORD":      "auditorPw91c2",
	"REGULATOR_NATS_PASSWORD":    "regulatorPw5d0e",
	"AUDIT_ADMIN_NATS_PASSWORD":  "auditAdminPw8e2a",
	"NATS_SYSTEM_PASSWORD":       "systemPw3b8c",
	"NATS_ROUTE_PASSWORD":        "routePw6a1f",
	"NATS_ROUTES":                "[nats-route://route:routePw6a1f@nats-1:6222, nats-route://route:routePw6a1f@nats-2:6222, nats-route://route:routePw6a1f@nats-3:6222]",
	"CUSTOS_LEAF_URL":            "nats-leaf://regulator:regulatorPw5d0e@127.0.0.1:7422",
	"REGULATOR_ADMIN_PASSWORD":   "adminPw0e4d",
	"REGULATOR_AUDITOR_PASSWORD": "regAuditorPw2c7b",
}

func setDeployEnv(t *testing.T) {
	t.Helper()
	for k, v := range deployEnv {
		t.Setenv(k, v)
	}
}

// natsConfigs lists deploy/nats/*.conf and which of them are fragments
// included by others (they are checked for syntax but are no server).
func natsConfigs(t *testing.T) (files []string, fragment map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "nats", "*.conf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no NATS configurations under %s/nats (err %v)", deployDir, err)
	}
	includeRe := regexp.MustCompile(`(?m)^\s*include\s+"?([^"\s;]+)"?`)
	fragment = map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range includeRe.FindAllStringSubmatch(string(b), -1) {
			fragment[filepath.Join(filepath.Dir(f), m[1])] = true
		}
	}
	return files, fragment
}

func loadConfig(t *testing.T, name string) *server.Options {
	t.Helper()
	opts := &server.Options{}
	if err := opts.ProcessConfigFile(filepath.Join(deployDir, "nats", name)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return opts
}

// TestDeployNATSConfigsValid does what `nats-server -t -c FILE` does for
// every configuration (warnings count as failures, as they do there), and
// also validates the complete server configurations the way starting a
// server would.
func TestDeployNATSConfigsValid(t *testing.T) {
	setDeployEnv(t)
	files, fragment := natsConfigs(t)
	servers := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			opts := &server.Options{}
			if err := opts.ProcessConfigFile(f); err != nil {
				t.Fatalf("nats-server -t would reject it: %v", err)
			}
			if fragment[f] {
				return
			}
			servers++
			opts.NoLog, opts.NoSigs = true, true
			ns, err := server.NewServer(opts)
			if err != nil {
				t.Fatalf("server refuses the configuration: %v", err)
			}
			ns.Shutdown()
		})
	}
	if servers < 5 {
		t.Errorf("checked %d server configurations, want ledger-node, cluster-node-{1,2,3} and regulator-mirror", servers)
	}
}

// TestDeployNATSConfigsFailClosed checks that an unset password variable
// stops the server instead of leaving a user without a password.
func TestDeployNATSConfigsFailClosed(t *testing.T) {
	setDeployEnv(t)
	os.Unsetenv("AUDITOR_NATS_PASSWORD")
	opts := &server.Options{}
	err := opts.ProcessConfigFile(filepath.Join(deployDir, "nats", "ledger-node.conf"))
	if err == nil || !strings.Contains(err.Error(), "AUDITOR_NATS_PASSWORD") {
		t.Fatalf("ledger-node.conf without AUDITOR_NATS_PASSWORD: err = %v, want a missing variable error", err)
	}
}

func userNamed(t *testing.T, opts *server.Options, name string) *server.User {
	t.Helper()
	for _, u := range opts.Users {
		if u.Username == name {
			return u
		}
	}
	t.Fatalf("no user %q", name)
	return nil
}

func samePerms(t *testing.T, what string, got, want *server.Permissions) {
	t.Helper()
	list := func(p *server.SubjectPermission, deny bool) []string {
		if p == nil {
			return nil
		}
		l := p.Allow
		if deny {
			l = p.Deny
		}
		return slices.Sorted(slices.Values(l))
	}
	if got == nil {
		t.Fatalf("%s: no permissions", what)
	}
	for _, c := range []struct {
		name      string
		got, want *server.SubjectPermission
		deny      bool
	}{
		{"publish allow", got.Publish, want.Publish, false},
		{"publish deny", got.Publish, want.Publish, true},
		{"subscribe allow", got.Subscribe, want.Subscribe, false},
		{"subscribe deny", got.Subscribe, want.Subscribe, true},
	} {
		g, w := list(c.got, c.deny), list(c.want, c.deny)
		if !slices.Equal(g, w) {
			t.Errorf("%s %s differ from the embedded server's:\n config:   %q\n embedded: %q", what, c.name, g, w)
		}
	}
}

// TestDeployPermissionsMatchEmbedded keeps the production users and the
// embedded server's users identical, so what is tested with the embedded
// server is what production enforces.
func TestDeployPermissionsMatchEmbedded(t *testing.T) {
	setDeployEnv(t)
	for _, name := range []string{"ledger-node.conf", "cluster-node-1.conf", "cluster-node-2.conf", "cluster-node-3.conf"} {
		t.Run(name, func(t *testing.T) {
			opts := loadConfig(t, name)
			custos, auditor := userNamed(t, opts, "custos"), userNamed(t, opts, "auditor")
			samePerms(t, "custos", custos.Permissions, natsd.CustosPermissions())
			samePerms(t, "auditor", auditor.Permissions, natsd.AuditorPermissions())
			// Only Custos logs in to the ledger's account: a read-only user
			// there could have the server write for it (see
			// TestNoReadOnlyUserMakesTheServerWriteTheLedger).
			for _, u := range opts.Users {
				want := "AUDIT"
				if u.Username == "custos" {
					want = "CUSTOS"
				} else if u.Username == "system" {
					want = "SYS"
				}
				if u.Account == nil || u.Account.Name != want {
					t.Errorf("user %s is not in account %s", u.Username, want)
				}
				env := strings.ToUpper(strings.ReplaceAll(u.Username, "-", "_")) + "_NATS_PASSWORD"
				if u.Username != "system" && (u.Password == "" || u.Password != deployEnv[env]) {
					t.Errorf("user %s does not take its password from $%s", u.Username, env)
				}
			}
			if reg := userNamed(t, opts, "regulator"); !slices.Equal(connTypes(reg.AllowedConnectionTypes), []string{"LEAFNODE"}) {
				t.Errorf("regulator may connect as %v, want only LEAFNODE", reg.AllowedConnectionTypes)
			}
			for _, name := range []string{"custos", "auditor", "audit-admin"} {
				if u := userNamed(t, opts, name); !slices.Equal(connTypes(u.AllowedConnectionTypes), []string{"STANDARD"}) {
					t.Errorf("%s may connect as %v, want only STANDARD (never as a leaf node bridging the account)", name, u.AllowedConnectionTypes)
				}
			}
		})
	}
	t.Run("regulator-mirror.conf", func(t *testing.T) {
		opts := loadConfig(t, "regulator-mirror.conf")
		samePerms(t, "regulator's auditor", userNamed(t, opts, "auditor").Permissions, natsd.AuditorPermissions())
	})
}

func connTypes(m map[string]struct{}) []string { return slices.Sorted(maps.Keys(m)) }

// TestDeployNATSSettings checks the settings the ledger's promises rest on.
func TestDeployNATSSettings(t *testing.T) {
	setDeployEnv(t)
	for _, name := range []string{"ledger-node.conf", "cluster-node-1.conf", "cluster-node-2.conf", "cluster-node-3.conf", "regulator-mirror.conf"} {
		t.Run(name, func(t *testing.T) {
			o := loadConfig(t, name)
			if !o.JetStream || !o.SyncAlways {
				t.Errorf("jetstream %v, sync_interval always %v: every acknowledged message must be fsynced", o.JetStream, o.SyncAlways)
			}
			if o.StoreDir == "" {
				t.Error("no store_dir")
			}
			if o.MaxPayload != 8<<20 {
				t.Errorf("max_payload %d, want 8MB like the embedded server", o.MaxPayload)
			}
			if o.HTTPHost != "127.0.0.1" || o.HTTPPort != 8222 {
				t.Errorf("monitoring on %s:%d, want 127.0.0.1:8222", o.HTTPHost, o.HTTPPort)
			}
			if o.SystemAccount != "SYS" {
				t.Errorf("system_account %q, want SYS", o.SystemAccount)
			}
			if o.NoAuthUser != "" {
				t.Errorf("no_auth_user %q: every client must authenticate", o.NoAuthUser)
			}
			wantDomain := "custos"
			if name == "regulator-mirror.conf" {
				wantDomain = "regulator"
			}
			if o.JetStreamDomain != wantDomain {
				t.Errorf("jetstream domain %q, want %q", o.JetStreamDomain, wantDomain)
			}
			if name != "regulator-mirror.conf" && !slices.Contains(o.Tags, "region:cn") {
				t.Errorf("server_tags %v lack region:cn (the placement of the streams and of audit/*.json)", o.Tags)
			}
			if !strings.HasPrefix(name, "cluster-node-") {
				return
			}
			if o.Cluster.Name != "custos" || o.Cluster.Port != 6222 || len(o.Routes) != 3 {
				t.Errorf("cluster %q port %d with %d routes, want custos, 6222, 3", o.Cluster.Name, o.Cluster.Port, len(o.Routes))
			}
			if o.Cluster.Username == "" || o.Cluster.Password != deployEnv["NATS_ROUTE_PASSWORD"] {
				t.Error("routes are not authenticated with $NATS_ROUTE_PASSWORD")
			}
		})
	}
	names := map[string]bool{}
	for i := 1; i <= 3; i++ {
		names[loadConfig(t, fmt.Sprintf("cluster-node-%d.conf", i)).ServerName] = true
	}
	if len(names) != 3 {
		t.Errorf("cluster nodes share server names: %v", names)
	}
}

// startFromConfig starts a real server from a deploy configuration, moved
// to a temporary store and free ports.
func startFromConfig(t *testing.T, name string, adjust func(*server.Options)) *server.Server {
	t.Helper()
	opts := loadConfig(t, name)
	opts.StoreDir = t.TempDir()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPPort = 0
	opts.NoLog, opts.NoSigs = true, true
	if adjust != nil {
		adjust(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("%s: server not ready", name)
	}
	return ns
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// client is a connection whose permission violations can be awaited.
type client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func connect(t *testing.T, url, user, password string) *client {
	t.Helper()
	c := &client{errs: make(chan error, 64)}
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.Name("deploy-test-"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// denied publishes to subject and waits for the server's permission
// violation for exactly that subject.
func (c *client) denied(t *testing.T, subject string) {
	t.Helper()
	if err := c.nc.Publish(subject, []byte("x")); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	c.awaitViolation(t, "Publish to \""+subject+"\"")
}

func (c *client) awaitViolation(t *testing.T, what string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				return
			}
		case <-timeout:
			t.Fatalf("no permissions violation for %s", what)
		}
	}
}

// ledgerNode is a server started from ledger-node.conf with the ledger
// streams, one record, one checkpoint, a KV bucket and the AUDIT mirrors of
// audit/*.json in sync.
type ledgerNode struct {
	ns                *server.Server
	leafPort          int
	custos, auditor   *client
	ledger, checks    jetstream.Stream
	kv                jetstream.KeyValue
	record, checkBody string
}

func startLedgerNode(t *testing.T, ctx context.Context) *ledgerNode {
	t.Helper()
	n := &ledgerNode{leafPort: freePort(t), record: placedRecord(0), checkBody: "note"}
	n.ns = startFromConfig(t, "ledger-node.conf", func(o *server.Options) { o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", n.leafPort })
	n.custos = connect(t, n.ns.ClientURL(), "custos", deployEnv["CUSTOS_NATS_PASSWORD"])

	// Custos creates the real ledger streams and a KV bucket and appends.
	var err error
	if n.ledger, n.checks, err = ledger.EnsureStreams(ctx, n.custos.js, ledger.StreamOptions{}); err != nil {
		t.Fatalf("custos creates the ledger streams: %v", err)
	}
	for _, s := range []jetstream.Stream{n.ledger, n.checks} {
		if c := s.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge {
			t.Fatalf("stream %s: deny_delete %v deny_purge %v", c.Name, c.DenyDelete, c.DenyPurge)
		}
	}
	if ack, err := n.custos.js.Publish(ctx, "ledger.s.p0.t", []byte(n.record), jetstream.WithMsgID(state.IDKey("s", "i0"))); err != nil || ack.Sequence != 1 {
		t.Fatalf("custos appends to the ledger: ack %+v, %v", ack, err)
	}
	if _, err := n.custos.js.Publish(ctx, ledger.CheckpointSubject, []byte(n.checkBody)); err != nil {
		t.Fatalf("custos appends a checkpoint: %v", err)
	}
	if n.kv, err = n.custos.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "custos_pii", Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("custos creates its KV bucket: %v", err)
	}
	if _, err := n.kv.Put(ctx, "p.e", []byte("sealed")); err != nil {
		t.Fatalf("custos writes its KV bucket: %v", err)
	}

	// The operator creates the auditors' mirrors once, as deploy/README.md says.
	admin := connect(t, n.ns.ClientURL(), "audit-admin", deployEnv["AUDIT_ADMIN_NATS_PASSWORD"])
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		if _, err := admin.js.CreateStream(ctx, streamConfigFile(t, "audit", name)); err != nil {
			t.Fatalf("audit-admin creates the AUDIT mirror %s: %v", name, err)
		}
	}
	n.auditor = connect(t, n.ns.ClientURL(), "auditor", deployEnv["AUDITOR_NATS_PASSWORD"])
	waitMirror(t, ctx, n.auditor.js, ledger.StreamName, 1)
	waitMirror(t, ctx, n.auditor.js, ledger.CheckpointStreamName, 1)
	return n
}

func streamConfigFile(t *testing.T, dir, name string) jetstream.StreamConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "nats", dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg jetstream.StreamConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s/%s.json: %v", dir, name, err)
	}
	if cfg.Name != name || cfg.Mirror == nil || cfg.Mirror.Name != name || !cfg.DenyDelete || !cfg.DenyPurge || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("%s/%s.json is not a file-backed, undeletable mirror of %s: %+v", dir, name, name, cfg)
	}
	return cfg
}

func waitMirror(t *testing.T, ctx context.Context, js jetstream.JetStream, name string, msgs uint64) {
	t.Helper()
	var last error
	waitFor(t, ctx, fmt.Sprintf("mirror %s to hold %d messages", name, msgs), func() bool {
		s, err := js.Stream(ctx, name)
		if err != nil {
			last = err
			return false
		}
		if m := s.CachedInfo().Mirror; m != nil && m.Error != nil {
			last = m.Error
		}
		return s.CachedInfo().State.Msgs == msgs
	}, &last)
}

func TestLedgerNodeEnforcesLeastPrivilege(t *testing.T) {
	setDeployEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := startLedgerNode(t, ctx)

	// Custos can neither remove, rewrite nor weaken the ledger.
	for _, s := range []string{"LEDGER", "LEDGER_CHECKPOINTS"} {
		for _, op := range []string{"DELETE", "PURGE", "UPDATE", "MSG.DELETE", "RESTORE"} {
			n.custos.denied(t, "$JS.API.STREAM."+op+"."+s)
		}
	}

	// The auditor reads both streams (their AUDIT mirrors) ...
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		s, err := n.auditor.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("auditor stream info %s: %v", name, err)
		}
		m, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatalf("auditor gets %s #1: %v", name, err)
		}
		if want := map[string]string{ledger.StreamName: n.record, ledger.CheckpointStreamName: n.checkBody}[name]; string(m.Data) != want {
			t.Fatalf("auditor got %s #1 = %q, want %q", name, m.Data, want)
		}
	}
	var replayed []string
	if err := ledger.NewReader(n.auditor.js).Replay(ctx, ledger.Filter{}, func(e ledger.Entry) error {
		replayed = append(replayed, string(e.Body))
		return nil
	}); err != nil || !slices.Equal(replayed, []string{n.record}) {
		t.Fatalf("auditor replays the ledger: %q, %v", replayed, err)
	}
	// ... and can neither write, purge nor delete them, nor reach the KV
	// buckets or live traffic.
	for _, s := range []string{"ledger.x", ledger.CheckpointSubject, "$JS.API.STREAM.PURGE.LEDGER", "$JS.API.STREAM.DELETE.LEDGER",
		"$JS.API.STREAM.UPDATE.LEDGER", "$JS.API.STREAM.MSG.DELETE.LEDGER", "$JS.API.STREAM.CREATE.X", "$JS.API.DIRECT.GET.KV_custos_pii",
		"$KV.custos_pii.p.e", "$JS.ledger.API.CONSUMER.CREATE.LEDGER"} {
		n.auditor.denied(t, s)
	}
	if _, err := n.auditor.nc.Subscribe("ledger.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	n.auditor.awaitViolation(t, "Subscription to \"ledger.>\"")
	n.assertUntouched(t, ctx)
}

// assertUntouched checks that the ledger's account holds exactly what
// Custos wrote.
func (n *ledgerNode) assertUntouched(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, c := range []struct {
		s    jetstream.Stream
		body string
	}{{n.ledger, n.record}, {n.checks, n.checkBody}} {
		info, err := c.s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := info.Config; info.State.Msgs != 1 || !cfg.DenyDelete || !cfg.DenyPurge {
			t.Errorf("%s holds %d messages (deny_delete %v, deny_purge %v), want only Custos's one", cfg.Name, info.State.Msgs, cfg.DenyDelete, cfg.DenyPurge)
		}
	}
	if st, err := n.kv.Status(ctx); err != nil || st.Values() != 1 {
		t.Errorf("custos_pii holds %d values (%v), want only Custos's one", st.Values(), err)
	}
}

// TestNoReadOnlyUserMakesTheServerWriteTheLedger tries what permissions on
// subjects cannot stop: the server publishes a JetStream API answer to the
// reply subject the requester names, and a push consumer's messages to the
// deliver subject its creator names. Were the auditor in the ledger's
// account, each of these would append to LEDGER, LEDGER_CHECKPOINTS or a KV
// bucket. In the AUDIT account they land nowhere.
func TestNoReadOnlyUserMakesTheServerWriteTheLedger(t *testing.T) {
	setDeployEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := startLedgerNode(t, ctx)
	targets := []string{"ledger.s.p0.t", "ledger.x", ledger.CheckpointSubject, "$KV.custos_pii.p.e", "$KV.custos_pii.q.e",
		"$JS.ledger.API.CONSUMER.CREATE.LEDGER", "$JS.ledger.API.CONSUMER.CREATE.LEDGER_CHECKPOINTS", "$JS.FC.LEDGER.x.y"}
	for _, target := range targets {
		for _, req := range []struct{ subject, body string }{
			{"$JS.API.INFO", ""},
			{"$JS.API.STREAM.INFO.LEDGER", ""},
			{"$JS.API.DIRECT.GET.LEDGER", `{"seq":1}`},
			{"$JS.API.STREAM.MSG.GET.LEDGER_CHECKPOINTS", `{"seq":1}`},
			// Answered with a consumer info whose config names a deliver
			// subject in the ledger's account.
			{"$JS.API.CONSUMER.CREATE.LEDGER", `{"stream_name":"LEDGER","config":{"deliver_subject":"checkpoints.ledger","ack_policy":"none"}}`},
			{"$JS.API.CONSUMER.CREATE.LEDGER_CHECKPOINTS", `{"stream_name":"LEDGER_CHECKPOINTS","config":{"deliver_subject":"ledger.x","ack_policy":"none"}}`},
		} {
			if err := n.auditor.nc.PublishRequest(req.subject, target, []byte(req.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Push consumers delivering the mirrors' messages to those subjects. A
	// push consumer delivers only where someone listens; in AUDIT that is the
	// imports alone. Wait until those have delivered everything, so the
	// requests above (sent earlier on the same connection) have been
	// answered too.
	var pushed []jetstream.PushConsumer
	for i, target := range targets {
		stream := []string{ledger.StreamName, ledger.CheckpointStreamName}[i%2]
		c, err := n.auditor.js.CreateOrUpdatePushConsumer(ctx, stream, jetstream.ConsumerConfig{
			Name: fmt.Sprintf("push%d", i), DeliverSubject: target, AckPolicy: jetstream.AckNonePolicy,
		})
		if err != nil {
			// Refusing is fine (the server refuses delivering into the
			// consumer's own stream); what counts is what got written.
			t.Logf("push consumer on %s to %s: %v", stream, target, err)
		}
		pushed = append(pushed, c)
	}
	var crossing []string
	for i, c := range pushed {
		if c == nil {
			continue
		}
		var info *jetstream.ConsumerInfo
		waitFor(t, ctx, "push consumer to "+targets[i]+" to deliver", func() bool {
			var err error
			info, err = c.Info(ctx)
			return err == nil && (!info.PushBound || (info.Delivered.Stream >= 1 && info.NumPending == 0))
		})
		if info.PushBound {
			crossing = append(crossing, targets[i])
		}
	}
	for _, imported := range targets[5:7] {
		if !slices.Contains(crossing, imported) {
			t.Errorf("nothing was delivered to the import %s (deliveries reached %q): the test misses the cross-account path", imported, crossing)
		}
	}
	n.assertUntouched(t, ctx)
	if _, err := n.custos.js.Consumer(ctx, ledger.StreamName, "push0"); err == nil {
		t.Error("an auditor's consumer exists on the ledger's own stream")
	}
}

// TestRegulatorMirror connects a server started from regulator-mirror.conf
// to one started from ledger-node.conf, creates the regulator's mirrors from
// deploy/nats/regulator/*.json and reads the copy as the regulator's
// auditor, exactly as docs/deploy.md describes.
func TestRegulatorMirror(t *testing.T) {
	setDeployEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub := startLedgerNode(t, ctx)
	reg := startFromConfig(t, "regulator-mirror.conf", func(o *server.Options) {
		u, err := url.Parse(fmt.Sprintf("nats-leaf://regulator:%s@127.0.0.1:%d", deployEnv["REGULATOR_NATS_PASSWORD"], hub.leafPort))
		if err != nil {
			t.Fatal(err)
		}
		o.LeafNode.Remotes[0].URLs = []*url.URL{u}
		o.LeafNode.ReconnectInterval = 50 * time.Millisecond
	})
	bodies := []string{hub.record}
	for i := 1; i < 3; i++ {
		b := placedRecord(i)
		if _, err := hub.custos.js.Publish(ctx, fmt.Sprintf("ledger.s.p%d.t", i), []byte(b), jetstream.WithMsgID(state.IDKey("s", fmt.Sprintf("i%d", i)))); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}

	// A mirror asks once, then waits half a minute before asking again: let
	// the leaf connection come up first.
	waitFor(t, ctx, "the leaf connection", func() bool { return hub.ns.NumLeafNodes() == 1 && reg.NumLeafNodes() == 1 })
	admin := connect(t, reg.ClientURL(), "admin", deployEnv["REGULATOR_ADMIN_PASSWORD"])
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		if _, err := admin.js.CreateStream(ctx, streamConfigFile(t, "regulator", name)); err != nil {
			t.Fatalf("create the regulator's mirror %s: %v", name, err)
		}
	}
	waitMirror(t, ctx, admin.js, ledger.StreamName, 3)
	waitMirror(t, ctx, admin.js, ledger.CheckpointStreamName, 1)

	auditor := connect(t, reg.ClientURL(), "auditor", deployEnv["REGULATOR_AUDITOR_PASSWORD"])
	var got []string
	if err := ledger.NewReader(auditor.js).Replay(ctx, ledger.Filter{}, func(e ledger.Entry) error {
		got = append(got, string(e.Body))
		return nil
	}); err != nil {
		t.Fatalf("regulator's auditor replays the mirror: %v", err)
	}
	if !slices.Equal(got, bodies) {
		t.Fatalf("mirror holds %q, want %q", got, bodies)
	}
	auditor.denied(t, "ledger.x")
	auditor.denied(t, "$JS.API.STREAM.PURGE.LEDGER")
}

// waitFor polls cond until it holds; last (optional) names what was seen.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool, last ...*error) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			var seen error
			if len(last) > 0 && last[0] != nil {
				seen = *last[0]
			}
			t.Fatalf("waiting for %s: %v (last: %v)", what, ctx.Err(), seen)
		case <-tick.C:
		}
	}
}

// TestNATSServerBinaryAcceptsConfigs builds the real nats-server of the
// module graph and runs `nats-server -t -c FILE` on every configuration.
func TestNATSServerBinaryAcceptsConfigs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build nats-server here (no module cache or network?): %v\n%s", err, out)
	}
	env := os.Environ()
	for k, v := range deployEnv {
		env = append(env, k+"="+v)
	}
	files, _ := natsConfigs(t)
	for _, f := range files {
		cmd := exec.Command(bin, "-t", "-c", f)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "is valid") {
			t.Errorf("nats-server -t -c %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
}

// TestDeployYAMLParses parses every YAML file under deploy/ (all documents
// of multi-document files).
func TestDeployYAMLParses(t *testing.T) {
	var files []string
	err := filepath.WalkDir(deployDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(fh)
		docs := 0
		for {
			var v map[string]any
			err := dec.Decode(&v)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s document %d: %v", f, docs+1, err)
				break
			}
			if v != nil {
				docs++
			}
		}
		fh.Close()
		if docs == 0 {
			t.Errorf("%s: no YAML documents", f)
		}
	}
}

// vaultPolicy is a Vault ACL policy: path pattern -> capabilities.
type vaultPolicy map[string][]string

func loadVaultPolicy(t *testing.T, name string) vaultPolicy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "vault", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Path map[string]struct {
			Capabilities []string `hcl:"capabilities"`
		} `hcl:"path"`
	}
	if err := hcl.Decode(&doc, string(b)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p := vaultPolicy{}
	for path, rule := range doc.Path {
		p[path] = rule.Capabilities
	}
	return p
}

// allows reports whether the policy grants capability on path, with
// Vault's matching: exact paths, a trailing * as prefix, + as one segment.
// The deploy policies keep their patterns disjoint, so the first match is
// the only one (and is checked to be).
func (p vaultPolicy) allows(t *testing.T, path, capability string) bool {
	t.Helper()
	var matched []string
	for pattern := range p {
		if vaultMatch(pattern, path) {
			matched = append(matched, pattern)
		}
	}
	if len(matched) > 1 {
		t.Fatalf("%s matches several policy paths %v; keep them disjoint so precedence never matters", path, matched)
	}
	return len(matched) == 1 && slices.Contains(p[matched[0]], capability)
}

func vaultMatch(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(path, prefix) && !strings.Contains(prefix, "+")
	}
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if ps[i] != "+" && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// TestVaultPolicies checks the policies against the transit calls of
// ledger/keys (keys.go, pii/keyring.go): each is granted, and nothing
// dangerous is.
func TestVaultPolicies(t *testing.T) {
	custos := loadVaultPolicy(t, "custos-policy.hcl")
	subject := "transit/keys/custos-subject-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for _, c := range []struct{ path, capability, why string }{
		{"transit/keys/custos-checkpoint", "create", "EnsureKey of the signing key"},
		{"transit/keys/custos-checkpoint", "update", "EnsureKey when it exists"},
		{"transit/keys/custos-checkpoint", "read", "PublicKey"},
		{"transit/sign/custos-checkpoint", "update", "Sign"},
		{"transit/keys/custos-meta", "create", "EnsureKey of the meta key"},
		{"transit/keys/custos-meta", "update", "EnsureKey when it exists"},
		{"transit/datakey/plaintext/custos-meta", "update", "DataKey for K_pseud"},
		{"transit/decrypt/custos-meta", "update", "Unwrap of K_pseud"},
		{subject, "create", "EnsureKey of a subject key"},
		{subject, "update", "EnsureKey when it exists"},
		{subject, "read", "KeyExists"},
		{subject, "delete", "DestroyKey"},
		{subject + "/config", "update", "DestroyKey: deletion_allowed"},
		{"transit/datakey/plaintext/custos-subject-ABC", "update", "DataKey for a subject"},
		{"transit/decrypt/custos-subject-ABC", "update", "Unwrap of a subject's data key"},
	} {
		if !custos.allows(t, c.path, c.capability) {
			t.Errorf("custos-policy.hcl does not grant %s on %s (%s)", c.capability, c.path, c.why)
		}
	}
	for _, c := range []struct{ path, capability string }{
		{"transit/keys/custos-checkpoint", "delete"},
		{"transit/keys/custos-checkpoint/config", "update"},
		{"transit/keys/custos-checkpoint/rotate", "update"},
		{"transit/keys/custos-meta", "delete"},
		{"transit/keys/custos-meta/config", "update"},
		{"transit/export/encryption-key/custos-subject-ABC", "read"},
		{"transit/backup/custos-subject-ABC", "read"},
		{"transit/backup/custos-checkpoint", "read"},
		{"transit/restore/custos-subject-ABC", "update"},
		{"transit/encrypt/custos-subject-ABC", "update"},
		{"transit/sign/custos-subject-ABC", "update"},
		{"transit/keys/other", "create"},
		{"transit/keys", "list"},
		{"sys/mounts/transit", "update"},
		{"sys/policies/acl/custos", "update"},
		{"auth/approle/role/custos/secret-id", "update"},
	} {
		if custos.allows(t, c.path, c.capability) {
			t.Errorf("custos-policy.hcl grants %s on %s, which Custos never needs", c.capability, c.path)
		}
	}
	for p := range custos {
		if !strings.HasPrefix(p, "transit/") {
			t.Errorf("custos-policy.hcl reaches beyond transit/: %s", p)
		}
	}

	auditor := loadVaultPolicy(t, "auditor-policy.hcl")
	if len(auditor) != 1 || !slices.Equal(auditor["transit/keys/custos-checkpoint"], []string{"read"}) {
		t.Errorf("auditor-policy.hcl = %v, want read on transit/keys/custos-checkpoint only", auditor)
	}
}

// TestVaultSetupScript runs setup.sh against a stand-in CLI that records
// its calls, both on a fresh server and on one already set up.
func TestVaultSetupScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	script, err := filepath.Abs(filepath.Join(deployDir, "vault", "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, setUp := range []bool{false, true} {
		dir := t.TempDir()
		log := filepath.Join(dir, "calls")
		// The stand-in answers like Vault: lists mounts, says a secret id
		// lookup found nothing, returns a role id.
		fake := `#!/bin/sh
echo "$*" >> "` + log + `"
case "$1 $2" in
"secrets list") [ -n "$SET_UP" ] && echo '{"transit/": {}}' || echo '{}' ;;
"auth list") [ -n "$SET_UP" ] && echo '{"approle/": {}}' || echo '{}' ;;
"read -field=role_id") echo role-123 ;;
"write -format=json") [ -n "$SET_UP" ] && echo '{"data":{"secret_id_accessor":"a"}}' ;;
esac
exit 0
`
		if err := os.WriteFile(filepath.Join(dir, "bao"), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", script)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "VAULT_CLI=", "VAULT_ADDR=http://bao:8200", "VAULT_TOKEN=root",
			"CUSTOS_ROLE_ID=role-123", "CUSTOS_SECRET_ID=secret-456")
		if setUp {
			cmd.Env = append(cmd.Env, "SET_UP=1")
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("setup.sh (set up before: %v): %v\n%s", setUp, err, out)
		}
		b, _ := os.ReadFile(log)
		calls := string(b)
		want := []string{
			"policy write custos " + filepath.Join(filepath.Dir(script), "custos-policy.hcl"),
			"policy write custos-auditor " + filepath.Join(filepath.Dir(script), "auditor-policy.hcl"),
			"write auth/approle/role/custos token_policies=custos",
			"secret_id_num_uses=0",
			"write auth/approle/role/custos/role-id role_id=role-123",
		}
		if setUp {
			want = append(want, "auth/approle/role/custos/secret-id/lookup secret_id=secret-456")
		} else {
			want = append(want, "secrets enable -path=transit transit", "auth enable approle",
				"write auth/approle/role/custos/custom-secret-id secret_id=secret-456")
		}
		for _, w := range want {
			if !strings.Contains(calls, w) {
				t.Errorf("set up before %v: setup.sh never ran %q; calls:\n%s", setUp, w, calls)
			}
		}
		if setUp && (strings.Contains(calls, "secrets enable") || strings.Contains(calls, "auth enable") || strings.Contains(calls, "custom-secret-id")) {
			t.Errorf("setup.sh is not idempotent; calls:\n%s", calls)
		}
		if !strings.Contains(string(out), "role_id: role-123") {
			t.Errorf("setup.sh does not print the role id:\n%s", out)
		}
	}
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, path))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// get walks a decoded YAML document; a missing step fails the test.
func get[T any](t *testing.T, v any, path ...string) T {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not a mapping at %q", path, p)
		}
		if v, ok = m[p]; !ok {
			t.Fatalf("%v: no %q", path, p)
		}
	}
	out, ok := v.(T)
	if !ok {
		t.Fatalf("%v: %T, want %T", path, v, out)
	}
	return out
}

func strs(l []any) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = fmt.Sprint(x)
	}
	return out
}

// TestComposeStack checks the compose file wires what docs/deploy.md says:
// three NATS nodes on the cluster configurations, OpenBao on its
// configuration file, the init jobs, and two custos replicas in cluster mode.
func TestComposeStack(t *testing.T) {
	c := readYAML(t, "compose/docker-compose.yaml")
	for i := 1; i <= 3; i++ {
		svc := fmt.Sprintf("nats-%d", i)
		if cmd := strs(get[[]any](t, c, "services", svc, "command")); !slices.Equal(cmd, []string{"--config", fmt.Sprintf("/etc/nats/cluster-node-%d.conf", i)}) {
			t.Errorf("%s runs %v", svc, cmd)
		}
		env := get[map[string]any](t, c, "services", svc, "environment")
		for k := range deployEnv {
			if _, ok := env[k]; !ok && !strings.HasPrefix(k, "REGULATOR_ADMIN") && !strings.HasPrefix(k, "REGULATOR_AUDITOR") && k != "CUSTOS_LEAF_URL" {
				t.Errorf("%s lacks $%s, which its configuration reads", svc, k)
			}
		}
	}
	if ep := strs(get[[]any](t, c, "services", "openbao", "entrypoint")); !slices.Contains(ep, "-config=/etc/openbao/openbao.hcl") {
		t.Errorf("openbao runs %v", ep)
	}
	for _, svc := range []string{"custos-1", "custos-2"} {
		cmd := strings.Join(strs(get[[]any](t, c, "services", svc, "command")), " ")
		for _, flag := range []string{"serve", "--nats-url=nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",
			"--nats-creds=/run/secrets/nats-custos.json", "--replicas=3", "--placement-tags=region:cn", "--vault-addr=http://openbao:8200", "--origin="} {
			if !strings.Contains(cmd, flag) {
				t.Errorf("%s: command %q lacks %s", svc, cmd, flag)
			}
		}
		env := get[map[string]any](t, c, "services", svc, "environment")
		if env["VAULT_ROLE_ID"] == nil || env["VAULT_SECRET_ID"] == nil {
			t.Errorf("%s: no VAULT_ROLE_ID/VAULT_SECRET_ID", svc)
		}
		deps := get[map[string]any](t, c, "services", svc, "depends_on")
		for _, d := range []string{"openbao-init", "nats-audit-init"} {
			if get[string](t, deps, d, "condition") != "service_completed_successfully" {
				t.Errorf("%s does not wait for %s", svc, d)
			}
		}
	}
	df, err := os.ReadFile(filepath.Join(deployDir, "compose", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM golang:1.26 AS build", "./services/cmd/custos", "FROM gcr.io/distroless/"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestComposeGenSecrets runs gen-secrets.sh on a copy and checks that what
// it makes is what NATS, OpenBao and custos accept.
func TestComposeGenSecrets(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(deployDir, "compose", "gen-secrets.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gen-secrets.sh"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", filepath.Join(dir, "gen-secrets.sh")).CombinedOutput(); err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	if out, err := exec.Command("sh", filepath.Join(dir, "gen-secrets.sh")).CombinedOutput(); err == nil {
		t.Fatalf("gen-secrets.sh overwrote existing secrets:\n%s", out)
	}
	env, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		vars[k] = v
		if !regexp.MustCompile(`^[a-z][0-9a-f]{48}$`).MatchString(v) {
			t.Errorf("%s=%q is not a single token starting with a letter", k, v)
		}
	}
	compose := readYAML(t, "compose/docker-compose.yaml")
	for _, svc := range []string{"nats-1", "custos-1", "openbao-init"} {
		for _, v := range get[map[string]any](t, compose, "services", svc, "environment") {
			for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)`).FindAllStringSubmatch(fmt.Sprint(v), -1) {
				if _, ok := vars[m[1]]; !ok {
					t.Errorf("%s reads $%s, which gen-secrets.sh does not write", svc, m[1])
				}
			}
		}
	}
	var creds natsd.Credentials
	if b, err := os.ReadFile(filepath.Join(dir, "secrets", "nats-custos.json")); err != nil || json.Unmarshal(b, &creds) != nil ||
		creds.User != "custos" || creds.Password != vars["CUSTOS_NATS_PASSWORD"] {
		t.Errorf("secrets/nats-custos.json = %+v (%v), want custos with $CUSTOS_NATS_PASSWORD", creds, err)
	}
	if tok, _ := os.ReadFile(filepath.Join(dir, "secrets", "admin.token")); !regexp.MustCompile(`^cst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n$`).Match(tok) {
		t.Errorf("admin.token %q is not a custos token", tok)
	}
	if key, _ := os.ReadFile(filepath.Join(dir, "secrets", "openbao-unseal.key")); len(key) != 32 {
		t.Errorf("openbao-unseal.key has %d bytes, want 32", len(key))
	}
}

// TestKubernetesManifests checks deploy/k8s against what docs/deploy.md
// promises: the NATS chart values (three replicas, file storage on PVCs,
// fsync always, region tag, accounts.conf with every variable it reads) and
// the custos Deployment, Service, PodDisruptionBudget and NetworkPolicy.
func TestKubernetesManifests(t *testing.T) {
	v := readYAML(t, "k8s/nats-values.yaml")
	if get[int](t, v, "config", "cluster", "replicas") != 3 || !get[bool](t, v, "config", "jetstream", "fileStore", "pvc", "enabled") {
		t.Error("nats-values.yaml: want 3 replicas with JetStream file storage on PVCs")
	}
	if get[string](t, v, "config", "jetstream", "merge", "sync_interval") != "always" {
		t.Error("nats-values.yaml: JetStream does not fsync always")
	}
	if !slices.Contains(strs(get[[]any](t, v, "config", "merge", "server_tags")), "region:cn") {
		t.Error("nats-values.yaml: servers not tagged region:cn")
	}
	if get[string](t, v, "config", "merge", "00$include") != "accounts.conf" {
		t.Error("nats-values.yaml does not include accounts.conf")
	}
	acc, err := os.ReadFile(filepath.Join(deployDir, "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	env := get[map[string]any](t, v, "container", "env")
	vars := regexp.MustCompile(`password:\s*\$([A-Z][A-Z_]*)`).FindAllStringSubmatch(string(acc), -1)
	if len(vars) < 5 {
		t.Fatalf("found only %d password variables in accounts.conf", len(vars))
	}
	for _, m := range vars {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("nats-values.yaml: accounts.conf reads $%s, which the container does not get", m[1])
		}
	}

	f, err := os.Open(filepath.Join(deployDir, "k8s", "custos.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kinds := map[string]map[string]any{}
	for dec := yaml.NewDecoder(f); ; {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kinds[get[string](t, doc, "kind")] = doc
	}
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
		if kinds[k] == nil {
			t.Errorf("custos.yaml has no %s", k)
		}
	}
	d := kinds["Deployment"]
	if get[int](t, d, "spec", "replicas") != 2 {
		t.Error("custos Deployment: want 2 replicas")
	}
	c := get[[]any](t, d, "spec", "template", "spec", "containers")[0]
	if get[string](t, c, "readinessProbe", "httpGet", "path") != "/readyz" || get[string](t, c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Error("custos: readiness must be /readyz and liveness /healthz")
	}
	args := strings.Join(strs(get[[]any](t, c, "args")), " ")
	for _, flag := range []string{"serve", "--nats-url=", "--nats-creds=", "--replicas=3", "--placement-tags=region:cn", "--vault-addr=", "--origin="} {
		if !strings.Contains(args, flag) {
			t.Errorf("custos args %q lack %s", args, flag)
		}
	}
	var secrets []string
	for _, e := range get[[]any](t, c, "env") {
		secrets = append(secrets, get[string](t, e, "valueFrom", "secretKeyRef", "name")+"/"+get[string](t, e, "name"))
	}
	if !slices.Equal(secrets, []string{"custos-vault-approle/VAULT_ROLE_ID", "custos-vault-approle/VAULT_SECRET_ID"}) {
		t.Errorf("custos env from secrets %v", secrets)
	}
}

// placedRecord is the body of a record the ledger reader accepts under
// ledger.s.p<i>.t with the deduplication id IDKey("s", "i<i>"): what a
// record's body says about where it is stored must match where it is.
func placedRecord(i int) string {
	return fmt.Sprintf(`{"v":1,"type":"t","id":"i%d","source":"s","subject":"p%d"}`, i, i)
}
