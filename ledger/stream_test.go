package ledger

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestCheckStreamConfigNamesTheWeakSetting(t *testing.T) {
	want := ledgerConfig(StreamOptions{Replicas: 3, Duplicates: time.Hour, Placement: &jetstream.Placement{Tags: []string{"region:cn"}}})
	if err := CheckStreamConfig(want, want); err != nil {
		t.Fatalf("the required config itself: %v", err)
	}
	cases := map[string]func(c *jetstream.StreamConfig){
		"storage":              func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage },
		"deny_delete":          func(c *jetstream.StreamConfig) { c.DenyDelete = false },
		"deny_purge":           func(c *jetstream.StreamConfig) { c.DenyPurge = false },
		"allow_rollup_hdrs":    func(c *jetstream.StreamConfig) { c.AllowRollup = true },
		"discard":              func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld },
		"max_msgs":             func(c *jetstream.StreamConfig) { c.MaxMsgs = 1000 },
		"max_bytes":            func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 30 },
		"max_age":              func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour },
		"max_msgs_per_subject": func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 },
		"duplicate_window":     func(c *jetstream.StreamConfig) { c.Duplicates = 0 },
		"num_replicas":         func(c *jetstream.StreamConfig) { c.Replicas = 1 },
		"allow_msg_ttl":        func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true },
		"placement":            func(c *jetstream.StreamConfig) { c.Placement = &jetstream.Placement{Tags: []string{"region:sg"}} },
		"subjects":             func(c *jetstream.StreamConfig) { c.Subjects = []string{"ledger.s.>"} },
		"retention":            func(c *jetstream.StreamConfig) { c.Retention = jetstream.WorkQueuePolicy },
	}
	for setting, weaken := range cases {
		have := want
		have.Placement = &jetstream.Placement{Tags: append([]string(nil), want.Placement.Tags...)}
		weaken(&have)
		err := CheckStreamConfig(have, want)
		if !errors.Is(err, ErrWeakStream) || !strings.Contains(err.Error(), setting) {
			t.Errorf("%s weakened: got %v", setting, err)
		}
	}
}

func TestSubjects(t *testing.T) {
	if got := SubjectFor("abc", "privacy.data.used"); got != "ledger.s.abc.privacy.data.used" {
		t.Fatal(got)
	}
	if got := SubjectFor("", "privacy.notice.published"); got != "ledger.g._.privacy.notice.published" {
		t.Fatal(got)
	}
	if TypeFilter("privacy.data.used") != "ledger.*.*.privacy.data.used" || SubjectFilter("abc") != "ledger.s.abc.>" {
		t.Fatal("filters")
	}
}
