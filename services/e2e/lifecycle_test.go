package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
	"custos.dev/services/app"
	"custos.dev/services/client"
)

// rawPost posts one event with a raw Authorization header and returns the
// status.
func rawPost(t *testing.T, url, authz string, e map[string]any) int {
	t.Helper()
	b, _ := json.Marshal(e)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/events", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// Revoking the bootstrap admin token lasts across restarts; a bare token
// without the Bearer scheme is refused, the scheme name in any case is not.
func TestRevokedBootstrapTokenStaysRevoked(t *testing.T) {
	h := start(t)
	boot := h.app.AdminToken
	second, err := h.admin.CreateToken(context.Background(), "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	em := h.emitter()
	e := h.ev("privacy.subject.registered", "reg-bearer", "user-bearer", map[string]any{"residence": "CN", "age": 30})
	if got := rawPost(t, h.app.URL, em.Token, e); got != http.StatusUnauthorized {
		t.Errorf("a bare token: %d, want 401", got)
	}
	if got := rawPost(t, h.app.URL, "bearer "+em.Token, e); got != http.StatusCreated {
		t.Errorf("the scheme in lower case: %d, want 201", got)
	}

	adm := client.New(h.app.URL, second.Token)
	id := strings.SplitN(strings.TrimPrefix(boot, "cst_"), "_", 2)[0]
	resp, err := adm.Do(context.Background(), http.MethodDelete, "/v1/tokens/"+id, nil, nil, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke the bootstrap token: %v %v", resp, err)
	}
	resp.Body.Close()
	h.restart()
	for i := 0; i < 2; i++ {
		var out any
		err := client.New(h.app.URL, boot).GetJSON(context.Background(), "/v1/tokens", nil, &out)
		if !client.IsAPIError(err, "unauthorized") {
			t.Fatalf("restart %d: the revoked bootstrap token: %v, want 401", i+1, err)
		}
		if h.app.AdminToken != "" {
			t.Errorf("restart %d: the app still offers the revoked token as its admin token", i+1)
		}
		h.restart()
	}
	adm = client.New(h.app.URL, second.Token)
	var out any
	if err := adm.GetJSON(context.Background(), "/v1/tokens", nil, &out); err != nil {
		t.Errorf("the other admin token after restarts: %v", err)
	}
}

// Five re-sends of one blocked transfer are one denial on the ledger, each
// answered with its sequence; a change of the subject's state makes the
// next attempt a new denial.
func TestResentDenialIsAnsweredFromTheLedger(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-resend"
	h.register(em, s, "reg-resend", 30)
	before := h.streamLen()
	blocked := h.transfer(s, "tr-resend", "US", "standard_contract")
	claimed := h.clock.Now().Add(-30 * time.Minute).Format(time.RFC3339)
	blocked["time"] = claimed
	var seqs []uint64
	for i := 0; i < 5; i++ {
		r := h.mustDeny(em, blocked, "DESTINATION_NOT_ALLOWED")
		seqs = append(seqs, r.seq())
	}
	if got := h.streamLen(); got != before+1 {
		t.Errorf("five re-sends appended %d records, want one denial", got-before)
	}
	for _, q := range seqs[1:] {
		if q != seqs[0] || q == 0 {
			t.Errorf("re-sent denials answered with sequences %v, want the first one each time", seqs)
			break
		}
	}
	// The blocked attempt is registered at the time it claimed.
	var reg struct {
		Transfers []struct {
			TransferID string    `json:"transfer_id"`
			Time       time.Time `json:"time"`
		} `json:"transfers"`
	}
	if err := h.auditor().GetJSON(context.Background(), "/v1/transfers", nil, &reg); err != nil {
		t.Fatal(err)
	}
	if len(reg.Transfers) != 1 || reg.Transfers[0].Time.Format(time.RFC3339) != claimed {
		t.Errorf("register: %+v, want the one blocked attempt at %s", reg.Transfers, claimed)
	}
	h.consent(em, s, "c-resend", map[string]any{"destinations": []string{"US"}})
	if r := h.mustDeny(em, blocked, "DESTINATION_NOT_ALLOWED"); r.seq() == seqs[0] {
		t.Error("after the subject's state changed, the attempt was answered with the old denial")
	}
}

// slowSet decides privacy.data.used slowly (about a second of evaluation)
// and everything else at once; spinSet never finishes privacy.data.used.
func policySet(t *testing.T, loop string) string {
	t.Helper()
	dir := t.TempDir()
	rules := `package custos.decision

decision := {"allow": true, "reasons": [], "obligations": []} if {
	input.event.type == "privacy.data.used"
	count({1 | ` + loop + `}) > 0
} else := {"allow": true, "reasons": [], "obligations": []}
`
	tests := `package custos.decision_test

import data.custos.decision

test_quick if decision.decision.allow with input as {"event": {"type": "privacy.subject.registered"}}
`
	for name, src := range map[string]string{"decision.rego": rules, "decision_test.rego": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A policy that never finishes is stopped at the deadline: POLICY_ERROR,
// recorded; repeated timeouts show on /readyz and in the metrics; the
// subject's appends are not hung, and a fixed set takes over.
func TestPolicyDeadline(t *testing.T) {
	dir := policySet(t, `some i in numbers.range(1, 1000000); some j in numbers.range(1, 1000000)`)
	h := start(t, func(c *app.Config) {
		c.PoliciesDir, c.PolicyPoll, c.PolicyDeadline = dir, 20*time.Millisecond, 50*time.Millisecond
	})
	em := h.emitter()
	s := "user-spin"
	h.register(em, s, "reg-spin", 30)
	for i := 0; i < 3; i++ {
		started := time.Now()
		r := h.mustDeny(em, h.ev("privacy.data.used", fmt.Sprintf("use-spin-%d", i), s, map[string]any{
			"categories": []string{"identity.contact"}, "purpose": "security"}), "POLICY_ERROR")
		if !strings.Contains(string(r.Raw), "exceeded its deadline of 50ms") {
			t.Errorf("denial: %s", r.Raw)
		}
		if took := time.Since(started); took > 10*time.Second {
			t.Fatalf("a decision took %s with a 50ms deadline", took)
		}
	}
	res, err := h.readyz(true)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "deadline") {
		t.Errorf("/readyz after repeated timeouts: %d %s", res.StatusCode, body)
	}
	res, err = http.Get(h.app.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "custos_policy_timeouts_total 3") {
		t.Errorf("metrics lack custos_policy_timeouts_total 3")
	}
	// The subject is not hung: its other events go through meanwhile, and a
	// fixed set decides at once.
	h.mustAppend(em, h.ev("privacy.rights.requested", "rq-spin", s, map[string]any{"request_id": "rq-spin", "right": "access"}))
	rev := h.app.Engine.Active().Revision()
	fixed := policySet(t, `some i in numbers.range(1, 2)`)
	for _, name := range []string{"decision.rego", "decision_test.rego"} {
		b, _ := os.ReadFile(filepath.Join(fixed, name))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the fixed set", func() bool { return h.app.Engine.Active().Revision() != rev })
	h.mustAppend(em, h.ev("privacy.data.used", "use-fixed", s, map[string]any{"categories": []string{"identity.contact"}, "purpose": "security"}))
}

// A client that leaves while its event waits behind another of the same
// subject (whose decision is slow) does not cancel it: the event is still
// decided and appended — never a spurious POLICY_ERROR denial made on the
// cancelled request — and its re-send is answered as a duplicate.
func TestClientDisconnectRecordsNoSpuriousDenial(t *testing.T) {
	dir := policySet(t, `some i in numbers.range(1, 1000); some j in numbers.range(1, 1000)`)
	h := start(t, func(c *app.Config) { c.PoliciesDir, c.PolicyDeadline = dir, 60*time.Second })
	em := h.emitter()
	s := "user-leaves"
	h.register(em, s, "reg-leaves", 30)
	// The leaving request must queue behind the slow one; should it overtake
	// it (it is sent right after), the attempt proves nothing and is made
	// again with new events.
	var leaving map[string]any
	var leavingID string
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			t.Fatal("the waiting client got its answer before leaving five times; the slow policy is too fast here")
		}
		slow := h.ev("privacy.data.used", fmt.Sprintf("use-slow-%d", attempt), s, map[string]any{"categories": []string{"identity.contact"}, "purpose": "security"})
		leavingID = fmt.Sprintf("rq-leaves-%d", attempt)
		leaving = h.ev("privacy.rights.requested", leavingID, s, map[string]any{"request_id": leavingID, "right": "access"})
		sent := make(chan struct{})
		done := make(chan int, 1)
		go func() {
			b, _ := json.Marshal(slow)
			req, _ := http.NewRequest(http.MethodPost, h.app.URL+"/v1/events", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			req.Header.Set("Authorization", "Bearer "+em.Token)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) },
			}))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- 0
				return
			}
			res.Body.Close()
			done <- res.StatusCode
		}()
		<-sent
		b, _ := json.Marshal(leaving)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, _, err := em.Emit(ctx, b, "application/cloudevents+json")
		cancel()
		if code := <-done; code != http.StatusCreated {
			t.Fatalf("the slow event: %d", code)
		}
		if err != nil {
			break
		}
	}
	key := state.IDKey(shopSource, leavingID)
	waitFor(t, "the event of the client that left", func() bool {
		_, ok, _ := h.app.Ledger.View().Lookup(key)
		return ok
	})
	if r := h.post(em, leaving); r.Status != http.StatusOK {
		t.Fatalf("re-send after leaving: %d %s, want 200 (a duplicate)", r.Status, r.Raw)
	}
	denials := 0
	_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(context.Background(), ledger.Filter{Type: record.TypeDenied}, func(e ledger.Entry) error {
		denials++
		return nil
	})
	if denials != 0 {
		t.Errorf("%d denials recorded for a client that left; want none", denials)
	}
}

// /readyz shows each check's details (addresses, refusals) only with a
// token; /metrics speaks OpenMetrics when asked; every request is logged at
// info with its route pattern, status and latency, never its path.
func TestOperatorSurfaces(t *testing.T) {
	h := start(t)
	res, err := h.readyz(false)
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res, err = h.readyz(true)
	if err != nil {
		t.Fatal(err)
	}
	authed, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(anon), "detail") || strings.Contains(string(anon), "127.0.0.1") {
		t.Errorf("/readyz without a token shows details: %s", anon)
	}
	if !strings.Contains(string(authed), "detail") || !strings.Contains(string(anon), `"nats":{"ok":true}`) {
		t.Errorf("/readyz: with a token %s; without %s", authed, anon)
	}

	req, _ := http.NewRequest(http.MethodGet, h.app.URL+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(strings.TrimSpace(string(body)), "# EOF") {
		t.Errorf("/metrics asked for OpenMetrics: Content-Type %q", ct)
	}

	em := h.emitter()
	subject := "user-logged-li.wei"
	h.register(em, subject, "reg-logged", 30)
	var st map[string]any
	_ = h.auditor().GetJSON(context.Background(), "/v1/subjects/"+subject+"/state", nil, &st)
	logs := h.logs.String()
	for _, want := range []string{`"msg":"request"`, `"route":"POST /v1/events"`, `"route":"GET /v1/subjects/{subject}/state"`, `"status":201`, `"level":"INFO"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the request log lacks %s", want)
		}
	}
	if strings.Contains(logs, subject) {
		t.Error("the request log names the subject")
	}
}

// An admin can have the policy directory loaded at once; the activation on
// the ledger names the token. A refused set keeps the active one, and a
// server on the built-in set says it has nothing to reload.
func TestPolicyReloadNamesTheToken(t *testing.T) {
	dir := policySet(t, `some i in numbers.range(1, 2)`)
	h := start(t, func(c *app.Config) { c.PoliciesDir, c.PolicyPoll = dir, time.Hour })
	adm, err := h.admin.CreateToken(context.Background(), "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	rev := h.app.Engine.Active().Revision()
	if err := os.WriteFile(filepath.Join(dir, "extra.rego"), []byte("package custos.extra\n\nx := 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, map[string]string{"CUSTOS_TOKEN": adm.Token}, "policy", "reload", "--server", h.app.URL, "--output", "json")
	if code != 0 || !strings.Contains(out, `"activated": true`) || h.app.Engine.Active().Revision() == rev {
		t.Fatalf("policy reload: exit %d %s %s", code, out, errOut)
	}
	id := strings.SplitN(strings.TrimPrefix(adm.Token, "cst_"), "_", 2)[0]
	var by []string
	_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(context.Background(), ledger.Filter{Type: record.TypePolicyActivated}, func(e ledger.Entry) error {
		r, err := e.Parse()
		if err != nil {
			return err
		}
		var d record.PolicyActivated
		if err := r.DecodeData(&d); err != nil {
			return err
		}
		by = append(by, d.By)
		return nil
	})
	if len(by) != 2 || by[1] != "token:"+id {
		t.Errorf("activations by %v, want startup then token:%s", by, id)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package custos.decision\nnot rego"), 0o644); err != nil {
		t.Fatal(err)
	}
	active := h.app.Engine.Active().Revision()
	if code, _, errOut := run(t, map[string]string{"CUSTOS_TOKEN": adm.Token}, "policy", "reload", "--server", h.app.URL); code != 2 || !strings.Contains(errOut, "invalid policy set") || h.app.Engine.Active().Revision() != active {
		t.Errorf("reload of a broken set: exit %d %s", code, errOut)
	}

	b := start(t)
	if code, _, errOut := run(t, map[string]string{"CUSTOS_TOKEN": b.app.AdminToken}, "policy", "reload", "--server", b.app.URL); code != 2 || !strings.Contains(errOut, "built-in policy set") {
		t.Errorf("reload on the built-in set: exit %d %s", code, errOut)
	}
}

// A refused event counts once in custos_http_errors_total; a replay's
// consumer is gone soon after the replay, not minutes later; every command
// says what it does in its --help.
func TestSmallerPromises(t *testing.T) {
	h := start(t)
	em := h.emitter()
	count := func() string {
		res, err := http.Get(h.app.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, `custos_http_errors_total{code="invalid_event"}`) {
				return strings.Fields(line)[1]
			}
		}
		return "0"
	}
	before := count()
	if r := h.send(em, "application/cloudevents+json", []byte(`{"specversion":"1.0"}`)); r.Status != http.StatusBadRequest {
		t.Fatalf("invalid event: %d", r.Status)
	}
	if after := count(); !(before == "0" && after == "1") {
		t.Errorf("custos_http_errors_total{code=\"invalid_event\"} went %s -> %s for one refused event", before, after)
	}

	h.register(em, "user-replayed", "reg-replayed", 30)
	consumers := func() int {
		info, err := h.app.Ledger.Stream().Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	baseline := consumers() // the follower's own
	replayed := 0
	if err := h.auditor().Replay(context.Background(), nil, func(client.ReplayLine) error {
		if replayed++; replayed == 1 && consumers() != baseline+1 {
			t.Errorf("during the replay: %d consumers, want %d", consumers(), baseline+1)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay's consumer to go", func() bool { return consumers() == baseline })

	for _, cmd := range [][]string{{"serve"}, {"token", "create"}, {"token", "list"}, {"token", "revoke"}, {"emit"}, {"replay"}, {"verify"},
		{"audit", "export"}, {"audit", "verify"}, {"transfers"}, {"rights"}, {"policy", "test"}, {"policy", "check"},
		{"policy", "reload"}, {"policy", "whatif"}, {"policy", "build"}, {"bench"}} {
		code, out, _ := run(t, nil, append(cmd, "--help")...)
		usage := strings.Index(out, "Usage:")
		if code != 0 || usage < 150 {
			t.Errorf("custos %s --help says %d characters before its usage, want a description", strings.Join(cmd, " "), usage)
		}
	}
}
