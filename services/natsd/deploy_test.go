package natsd_test

// Tests of the production configurations under deploy/: the NATS server
// configurations parse and validate as `nats-server -t` would, a server
// started from ledger-node.conf enforces the same least privilege as the
// embedded server (and the permissions are literally the same), a
// regulator's leaf-node mirror works with nothing more than its user's
// permissions, the Vault policy grants exactly the transit calls Custos
// makes, and the YAML files parse.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"custos.dev/ledger"
	"custos.dev/services/natsd"
)

const deployDir = "../../deploy"

// Passwords the configurations read from the environment. Each starts with
// a letter, as accounts.conf requires.
var deployEnv = map[string]string{
	"CUSTOS_NATS_PASSWORD":       "custosPw7f3a",
	"AUDITOR_NATS_PASSWORD":      "auditorPw91c2",
	"REGULATOR_NATS_PASSWORD":    "regulatorPw5d0e",
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
			for _, u := range []*server.User{custos, auditor, userNamed(t, opts, "regulator")} {
				if u.Account == nil || u.Account.Name != "CUSTOS" {
					t.Errorf("user %s is not in account CUSTOS", u.Username)
				}
				if u.Password == "" || u.Password != deployEnv[strings.ToUpper(u.Username)+"_NATS_PASSWORD"] {
					t.Errorf("user %s does not take its password from $%s_NATS_PASSWORD", u.Username, strings.ToUpper(u.Username))
				}
			}
			if reg := userNamed(t, opts, "regulator"); !slices.Equal(slices.Collect(mapKeys(reg.AllowedConnectionTypes)), []string{"LEAFNODE"}) {
				t.Errorf("regulator may connect as %v, want only LEAFNODE", reg.AllowedConnectionTypes)
			}
			for _, name := range []string{"custos", "auditor"} {
				if u := userNamed(t, opts, name); !slices.Equal(slices.Collect(mapKeys(u.AllowedConnectionTypes)), []string{"STANDARD"}) {
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

func mapKeys(m map[string]struct{}) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, k := range slices.Sorted(func(y func(string) bool) {
			for k := range m {
				if !y(k) {
					return
				}
			}
		}) {
			if !yield(k) {
				return
			}
		}
	}
}

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
			if !strings.HasPrefix(name, "cluster-node-") {
				return
			}
			if !slices.Contains(o.Tags, "region:cn") {
				t.Errorf("server_tags %v lack region:cn", o.Tags)
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

func TestLedgerNodeEnforcesLeastPrivilege(t *testing.T) {
	setDeployEnv(t)
	ns := startFromConfig(t, "ledger-node.conf", func(o *server.Options) { o.LeafNode.Port = freePort(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	custos := connect(t, ns.ClientURL(), "custos", deployEnv["CUSTOS_NATS_PASSWORD"])
	auditor := connect(t, ns.ClientURL(), "auditor", deployEnv["AUDITOR_NATS_PASSWORD"])

	// Custos creates the real ledger streams and its KV buckets and appends.
	led, cps, err := ledger.EnsureStreams(ctx, custos.js, ledger.StreamOptions{})
	if err != nil {
		t.Fatalf("custos creates the ledger streams: %v", err)
	}
	for _, s := range []jetstream.Stream{led, cps} {
		if c := s.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge {
			t.Fatalf("stream %s: deny_delete %v deny_purge %v", c.Name, c.DenyDelete, c.DenyPurge)
		}
	}
	ack, err := custos.js.Publish(ctx, "ledger.x", []byte(`{"n":1}`))
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("custos appends to ledger.x: ack %+v, %v", ack, err)
	}
	if _, err := custos.js.Publish(ctx, ledger.CheckpointSubject, []byte("note")); err != nil {
		t.Fatalf("custos appends a checkpoint: %v", err)
	}
	kv, err := custos.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "custos_pii", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("custos creates its KV bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "p.e", []byte("sealed")); err != nil {
		t.Fatalf("custos writes its KV bucket: %v", err)
	}

	// Custos can neither remove, rewrite nor weaken the ledger.
	for _, s := range []string{"LEDGER", "LEDGER_CHECKPOINTS"} {
		for _, op := range []string{"DELETE", "PURGE", "UPDATE", "MSG.DELETE", "RESTORE"} {
			custos.denied(t, "$JS.API.STREAM."+op+"."+s)
		}
	}

	// The auditor reads both streams ...
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		s, err := auditor.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("auditor stream info %s: %v", name, err)
		}
		m, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatalf("auditor gets %s #1: %v", name, err)
		}
		if name == ledger.StreamName && (m.Subject != "ledger.x" || string(m.Data) != `{"n":1}`) {
			t.Fatalf("auditor got %s %q", m.Subject, m.Data)
		}
	}
	var replayed int
	if err := ledger.NewReader(auditor.js).Replay(ctx, ledger.Filter{}, func(ledger.Entry) error { replayed++; return nil }); err != nil || replayed != 1 {
		t.Fatalf("auditor replays the ledger: %d records, %v", replayed, err)
	}
	// ... and can neither write, purge nor delete them, nor read the KV
	// buckets or live traffic.
	for _, s := range []string{"ledger.x", ledger.CheckpointSubject, "$JS.API.STREAM.PURGE.LEDGER", "$JS.API.STREAM.DELETE.LEDGER",
		"$JS.API.STREAM.UPDATE.LEDGER", "$JS.API.STREAM.MSG.DELETE.LEDGER", "$JS.API.DIRECT.GET.KV_custos_pii", "$KV.custos_pii.p.e"} {
		auditor.denied(t, s)
	}
	if _, err := auditor.nc.Subscribe("ledger.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	auditor.awaitViolation(t, "Subscription to \"ledger.>\"")

	// Nothing the denied requests asked for happened.
	info, err := led.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; info.State.Msgs != 1 || !c.DenyDelete || !c.DenyPurge {
		t.Fatalf("after the refused requests LEDGER holds %d messages, deny_delete %v, deny_purge %v", info.State.Msgs, c.DenyDelete, c.DenyPurge)
	}
}

// TestRegulatorMirror connects a server started from regulator-mirror.conf
// to one started from ledger-node.conf, creates the mirror streams from
// deploy/nats/regulator/*.json and reads the copy as the regulator's
// auditor, exactly as docs/deploy.md describes.
func TestRegulatorMirror(t *testing.T) {
	setDeployEnv(t)
	leafPort := freePort(t)
	hub := startFromConfig(t, "ledger-node.conf", func(o *server.Options) { o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", leafPort })
	reg := startFromConfig(t, "regulator-mirror.conf", func(o *server.Options) {
		u, err := url.Parse(fmt.Sprintf("nats-leaf://regulator:%s@127.0.0.1:%d", deployEnv["REGULATOR_NATS_PASSWORD"], leafPort))
		if err != nil {
			t.Fatal(err)
		}
		o.LeafNode.Remotes[0].URLs = []*url.URL{u}
		o.LeafNode.ReconnectInterval = 50 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	custos := connect(t, hub.ClientURL(), "custos", deployEnv["CUSTOS_NATS_PASSWORD"])
	if _, _, err := ledger.EnsureStreams(ctx, custos.js, ledger.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for i := range 3 {
		b := fmt.Sprintf(`{"n":%d}`, i)
		if _, err := custos.js.Publish(ctx, fmt.Sprintf("ledger.s.p%d.t", i), []byte(b)); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	if _, err := custos.js.Publish(ctx, ledger.CheckpointSubject, []byte("note")); err != nil {
		t.Fatal(err)
	}

	waitFor(t, ctx, "the leaf connection", func() bool { return hub.NumLeafNodes() == 1 && reg.NumLeafNodes() == 1 })
	admin := connect(t, reg.ClientURL(), "admin", deployEnv["REGULATOR_ADMIN_PASSWORD"])
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		b, err := os.ReadFile(filepath.Join(deployDir, "nats", "regulator", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg jetstream.StreamConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("regulator/%s.json: %v", name, err)
		}
		if _, err := admin.js.CreateStream(ctx, cfg); err != nil {
			t.Fatalf("create mirror %s: %v", name, err)
		}
	}
	for name, want := range map[string]uint64{ledger.StreamName: 3, ledger.CheckpointStreamName: 1} {
		var last error
		waitFor(t, ctx, "mirror "+name+" to catch up", func() bool {
			s, err := admin.js.Stream(ctx, name)
			if err != nil {
				last = err
				return false
			}
			if s.CachedInfo().Mirror != nil && s.CachedInfo().Mirror.Error != nil {
				last = s.CachedInfo().Mirror.Error
			}
			return s.CachedInfo().State.Msgs == want
		}, &last)
	}

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
