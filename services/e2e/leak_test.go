package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/services/natsd"
)

// Distinctive personal data: nothing of Custos's own may ever hold them.
const (
	leakSubject = "subject-leak-7731-zq"
	leakEmail   = "zq.leak.7731@example.org"
	leakPhone   = "+86 139 7731 0042"
	leakPhone2  = "+86 139 7731 0099"
	leakName    = "Zhanglei Leakname"
	leakBirth   = "1987-03-14"
)

// leakNeedles are the values and the plain encodings a careless program
// might store them in.
func leakNeedles() []string {
	var out []string
	for _, v := range []string{leakSubject, leakEmail, leakPhone, leakPhone2, leakName, leakBirth} {
		out = append(out, v, base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)), hex.EncodeToString([]byte(v)))
	}
	// Parts that would betray a value cut or reformatted.
	return append(out, "zq.leak.7731", "7731 0042", "7731 0099", "Leakname", "leakname", url.PathEscape(leakEmail), url.QueryEscape(leakPhone))
}

// leaks reports which needles s holds.
func leaks(s []byte) []string {
	var found []string
	for _, n := range leakNeedles() {
		if bytes.Contains(s, []byte(n)) {
			found = append(found, n)
		}
	}
	return found
}

func TestNoPersonalDataLeaks(t *testing.T) {
	h := start(t)
	em := h.emitter()
	au := h.auditor()
	check := func(where string, b []byte) {
		t.Helper()
		if l := leaks(b); len(l) > 0 {
			t.Errorf("%s holds personal data %q:\n%.600s", where, l, b)
		}
	}

	// A subject's life, every personal value in it.
	h.mustAppend(em, h.ev("privacy.subject.registered", "leak-reg", leakSubject, map[string]any{"residence": "CN", "birth_date": leakBirth}))
	h.consent(em, leakSubject, "leak-consent", map[string]any{"destinations": []string{"SG"}})
	collected := h.ev("privacy.data.collected", "leak-collect", leakSubject, map[string]any{
		"categories": []string{"identity.contact", "identity.basic"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"email": leakEmail, "phone": leakPhone, "name": leakName},
	})
	h.mustAppend(em, collected)
	h.mustAppend(em, h.ev("privacy.data.corrected", "leak-correct", leakSubject, map[string]any{
		"categories": []string{"identity.contact"}, "fields": map[string]any{"phone": leakPhone2},
	}))
	h.mustAppend(em, h.ev("privacy.rights.requested", "leak-rights", leakSubject, map[string]any{
		"request_id": "leak-rr", "right": "access", "details": "Send my data to " + leakEmail + ", " + leakName,
	}))
	h.mustAppend(em, h.transfer(leakSubject, "leak-tr-sg", "SG", "standard_contract"))
	denied := h.mustDeny(em, h.transfer(leakSubject, "leak-tr-us", "US", "standard_contract"), "DESTINATION_NOT_ALLOWED")
	check("a policy denial's answer", denied.Raw)
	// Binary mode, the subject in a header.
	bin := h.send(em, "application/json", []byte(`{"categories":["identity.contact"],"purpose":"customer_support"}`),
		"Ce-Specversion", "1.0", "Ce-Id", "leak-bin", "Ce-Source", shopSource, "Ce-Type", "privacy.data.used",
		"Ce-Subject", url.PathEscape(leakSubject), "Ce-Time", h.clock.Now().Format(time.RFC3339))
	if bin.Status != http.StatusCreated {
		t.Fatalf("binary mode: %d %s", bin.Status, bin.Raw)
	}
	check("a receipt", bin.Raw)
	h.waitCheckpoint(int64(h.streamLen()))
	// The control: the admin's portability export decrypts the values, so
	// they were collected and the scan below would see them.
	export, err := doRaw(h.app.URL, hostile{method: http.MethodGet, path: "/v1/subjects/" + url.PathEscape(leakSubject) + "/export", token: h.admin.Token})
	if err != nil || export.status != 200 {
		t.Fatalf("export: %v %d %s", err, export.status, export.raw)
	}
	for _, v := range []string{leakEmail, leakPhone2, leakName, leakBirth} {
		if !bytes.Contains(export.raw, []byte(v)) {
			t.Fatalf("the export lacks %q: the values were not collected", v)
		}
	}

	// Bad requests carrying the values: no answer may echo them.
	for _, x := range leakBattery(h, em.Token, au.Token, collected) {
		a, err := doRaw(h.app.URL, x)
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		if a.status < 400 || a.status > 499 {
			t.Errorf("%s: status %d %s", x.name, a.status, a.raw)
		}
		check(x.name+" answer", a.raw)
	}
	// A batch whose bad entries carry the values.
	badEmail := clone(collected).(map[string]any)
	badEmail["id"] = "leak-batch-1"
	badEmail["data"].(map[string]any)["purpose"] = leakEmail
	batch := h.send(em, "application/cloudevents-batch+json", mustJSON([]any{badEmail, map[string]any{"subject": leakSubject, leakEmail: leakPhone}}))
	if batch.Status != 200 || strings.Contains(string(batch.Raw), `"status":201`) {
		t.Errorf("batch: %d %s", batch.Status, batch.Raw)
	}
	check("a batch answer", batch.Raw)

	// What auditors and monitoring read over HTTP.
	for _, path := range []string{"/v1/events", "/v1/events?subject=" + url.QueryEscape(leakSubject), "/v1/subjects/" + url.PathEscape(leakSubject) + "/state",
		"/v1/transfers", "/v1/transfers?format=csv", "/v1/rights", "/v1/checkpoints", "/v1/proofs/inclusions?from_seq=1"} {
		a, err := doRaw(h.app.URL, hostile{method: http.MethodGet, path: path, token: au.Token})
		if err != nil || a.status != 200 {
			t.Fatalf("GET %s: %v %d %s", path, err, a.status, a.raw)
		}
		check("GET "+path, a.raw)
	}
	metrics, err := doRaw(h.app.URL, hostile{method: http.MethodGet, path: "/metrics"})
	if err != nil || metrics.status != 200 {
		t.Fatalf("metrics: %v %d", err, metrics.status)
	}
	check("/metrics", metrics.raw)

	// The streams as an auditor reads them from NATS (the auditors'
	// mirrors): bodies, subjects, headers.
	h.waitMirror()
	n := scanStreams(t, filepath.Join(h.dir, "nats-auditor.json"), check)
	if n < 10 {
		t.Fatalf("read only %d stored messages", n)
	}

	// Every file under DATA once Custos is down, and every log line.
	h.down()
	scanDir(t, h.dir, leakNeedles()...)
	logs := h.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "request refused") {
		t.Fatal("the logs were not written at debug level")
	}
	for _, line := range strings.Split(logs, "\n") {
		if l := leaks([]byte(line)); len(l) > 0 {
			t.Errorf("log line holds personal data %q: %s", l, line)
		}
	}
}

// leakBattery builds refused requests that carry personal values
// where a careless error message or log line would repeat them.
func leakBattery(h *harness, em, au string, collected map[string]any) []hostile {
	with := func(change func(d map[string]any, e map[string]any)) []byte {
		e := clone(collected).(map[string]any)
		e["id"] = uniq("leak-bad")
		change(e["data"].(map[string]any), e)
		return mustJSON(e)
	}
	post := func(name string, body []byte) hostile { return hostile{name: name, token: em, body: body} }
	fields := func(d map[string]any) map[string]any { return d["fields"].(map[string]any) }
	body := mustJSON(collected)
	iEmail := bytes.Index(body, []byte(leakEmail)) + len(leakEmail) + 1
	syntax := append(append(append([]byte{}, body[:iEmail]...), " x"...), body[iEmail:]...)
	utf := append(append(append([]byte{}, body[:iEmail-1]...), "\xff"...), body[iEmail-1:]...)
	subjPath := "/v1/subjects/" + url.PathEscape(leakSubject)
	emailPath := "/v1/subjects/" + url.PathEscape(leakEmail)
	xs := []hostile{
		post("a bad field next to the email", with(func(d, _ map[string]any) { fields(d)["phone"] = map[string]any{"x": 1} })),
		post("a bad category next to the email", with(func(d, _ map[string]any) { d["categories"] = []string{"identity.bogus"} })),
		post("the email as a field name", with(func(d, _ map[string]any) { fields(d)[leakEmail] = "x" })),
		post("the email as a data member", with(func(d, _ map[string]any) { d[leakEmail] = leakPhone })),
		post("the email as an attribute", with(func(_, e map[string]any) { e[leakEmail] = leakPhone })),
		post("the email as an extension's value", with(func(_, e map[string]any) { e["partitionkey"] = leakEmail })),
		post("the email as the purpose", with(func(d, _ map[string]any) { d["purpose"] = leakEmail })),
		post("the email as the type", with(func(_, e map[string]any) { e["type"] = leakEmail })),
		post("the email as the region", with(func(d, _ map[string]any) { d["storage_region"] = leakEmail })),
		post("the phone as the retention", with(func(d, _ map[string]any) { d["retention"] = leakPhone })),
		post("the name as the time", with(func(_, e map[string]any) { e["time"] = leakName })),
		post("a subject with a line break", with(func(_, e map[string]any) { e["subject"] = leakSubject + "\n" + leakEmail })),
		post("a subject too long", with(func(_, e map[string]any) { e["subject"] = leakEmail + strings.Repeat("x", 300) })),
		post("an id with a control character", with(func(_, e map[string]any) { e["id"] = leakEmail + "\x01" })),
		post("an oversized field value", with(func(d, _ map[string]any) { fields(d)["name"] = leakName + strings.Repeat(" ", 5000) })),
		post("a field value that is an object", with(func(d, _ map[string]any) { fields(d)["email"] = map[string]any{"v": leakEmail} })),
		post("a foreign source", with(func(_, e map[string]any) { e["source"] = "https://other.example/" + url.PathEscape(leakEmail) })),
		post("a syntax error after the email", syntax),
		post("invalid UTF-8 after the email", utf),
		post("the same id with another phone", with(func(d, e map[string]any) { e["id"] = collected["id"]; fields(d)["phone"] = leakPhone2 })),
		post("a denied transfer, again", mustJSON(h.transfer(leakSubject, "leak-tr-us2", "US", "standard_contract"))),
		{name: "an oversized body", token: em, body: append(append([]byte{}, body...), bytes.Repeat([]byte(" "), 1<<20)...)},
		{name: "a wrong content type", token: em, ctype: "text/plain", body: body},
		{name: "no token", body: body},
		{name: "a decision with a bad field", path: "/v1/decisions", token: em, body: with(func(d, _ map[string]any) { fields(d)["phone"] = []any{leakPhone} })},
		{name: "binary mode with a bad time", token: em, ctype: "application/json", body: []byte(`{"categories":["identity.contact"],"purpose":"customer_support"}`),
			header: map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "leak-bin-2", "Ce-Source": shopSource, "Ce-Type": "privacy.data.used",
				"Ce-Subject": url.PathEscape(leakEmail), "Ce-Time": leakPhone}},
		{name: "binary mode with the email in an unknown attribute", token: em, ctype: "application/json", body: []byte(`{"categories":["identity.contact"],"purpose":"customer_support"}`),
			header: map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "leak-bin-3", "Ce-Source": shopSource, "Ce-Type": "privacy.data.used",
				"Ce-Subject": leakSubject, "Ce-Time": h.clock.Now().Format(time.RFC3339), "Ce-Email": leakEmail}},
		{name: "state at a bad time", method: http.MethodGet, path: subjPath + "/state?at=" + url.QueryEscape(leakPhone), token: au},
		{name: "state without a token", method: http.MethodGet, path: emailPath + "/state"},
		{name: "export with an emitter token", method: http.MethodGet, path: emailPath + "/export", token: em},
		{name: "export with an auditor token", method: http.MethodGet, path: subjPath + "/export", token: au},
		{name: "export of an unknown subject", method: http.MethodGet, path: emailPath + "/export", token: h.admin.Token},
		{name: "replay with a bad filter", method: http.MethodGet, path: "/v1/events?subject=" + url.QueryEscape(leakEmail) + "&since=" + url.QueryEscape(leakName), token: au},
		{name: "a subject path with a bad method", method: http.MethodPost, path: emailPath + "/state", token: au, body: []byte(`{}`)},
		{name: "an unknown path naming the subject", method: http.MethodGet, path: "/v1/people/" + url.PathEscape(leakEmail), token: au},
	}
	return xs
}

// scanStreams reads LEDGER and LEDGER_CHECKPOINTS with the auditor's
// credentials and checks every body, NATS subject and header.
func scanStreams(t *testing.T, credsFile string, check func(string, []byte)) int {
	t.Helper()
	creds, err := readNATSCreds(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := creds.Connect("leak-scan")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	err = ledger.NewReader(js).Replay(ctx, ledger.Filter{}, func(e ledger.Entry) error {
		n++
		check(fmt.Sprintf("LEDGER body %d", e.Seq), e.Body)
		check(fmt.Sprintf("LEDGER subject %d", e.Seq), []byte(e.Subject))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		for got := uint64(0); got < info.State.Msgs; {
			batch, err := cons.Fetch(int(info.State.Msgs-got), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				got++
				var hdr bytes.Buffer
				for k, vs := range m.Headers() {
					fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(vs, ","))
				}
				check(name+" headers", hdr.Bytes())
				check(name+" subject", []byte(m.Subject()))
				check(name+" body", m.Data())
			}
			if err := batch.Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

func readNATSCreds(path string) (natsd.Credentials, error) {
	var c natsd.Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}
