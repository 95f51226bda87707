package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"custos.dev/ledger/event"
	"custos.dev/ledger/index"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

func domestic(region string) bool { return region == "CN" }

func allEntries(*state.RegisterEntry) bool { return true }

// register reads the whole register or fails the test.
func register(t *testing.T, v *state.View, keep func(*state.RegisterEntry) bool) []state.RegisterEntry {
	t.Helper()
	entries, err := v.Register(keep)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestViewApplyLocalThenApply(t *testing.T) { forEachStore(t, testViewApplyLocalThenApply) }

func testViewApplyLocalThenApply(t *testing.T, v *state.View) {
	reg := rec(t, event.TypeSubjectRegistered, day(0), event.SubjectRegistered{Residence: "CN", Age: intp(30)})
	reg.ContentMAC = "mac-1"
	transfer := rec(t, event.TypeDataTransferred, day(1), event.DataTransferred{TransferID: "t1", Recipient: "acme-us", FromRegion: "CN", ToRegion: "US", Categories: []string{"contact"}, Purpose: "marketing", Mechanism: "scc"})
	transfer.Decision = &policy.Decision{Allow: true, Reasons: []policy.Reason{}, Obligations: []any{}, PolicyRevision: "sha256:r1"}

	// The appending process folds its own records in at once...
	for i, r := range []*record.Record{reg, transfer} {
		if err := v.ApplyLocal(uint64(i+1), "p", r); err != nil {
			t.Fatal(err)
		}
	}
	s := v.Subject("p")
	if s == nil || s.Events != 2 || !s.Registered || len(s.Transfers) != 1 {
		t.Fatalf("after ApplyLocal: %+v", s)
	}
	if e, ok, err := v.Lookup(state.IDKey(reg.Source, reg.ID)); err != nil || !ok || e.Seq != 1 || e.MAC != state.MACDigest("mac-1") {
		t.Fatalf("Lookup after ApplyLocal = %+v, %v", e, ok)
	}
	if e, ok, err := v.Lookup(state.IDKey(transfer.Source, transfer.ID)); err != nil || !ok || e.Seq == 0 {
		t.Fatalf("Lookup of the transfer = %+v", e)
	}
	// ...but the register and the applied mark belong to the follower,
	// which sees every record in order.
	if v.Applied() != 0 || len(register(t, v, allEntries)) != 0 {
		t.Fatalf("ApplyLocal advanced applied to %d or wrote the register %v", v.Applied(), register(t, v, allEntries))
	}

	for seq, r := range []*record.Record{reg, transfer} {
		if err := v.Apply(uint64(seq+1), "p", r); err != nil {
			t.Fatal(err)
		}
	}
	s = v.Subject("p")
	if s.Events != 2 || len(s.Transfers) != 1 || s.LastSeq != 2 || v.Applied() != 2 {
		t.Fatalf("the follower's Apply counted records twice: events %d transfers %d applied %d", s.Events, len(s.Transfers), v.Applied())
	}
	reg1 := register(t, v, allEntries)
	want := state.RegisterEntry{Seq: 2, Time: day(1), Subject: "p", Kind: event.TypeDataTransferred, TransferID: "t1", Recipient: "acme-us",
		From: "CN", To: "US", Mechanism: "scc", Categories: []string{"contact"}, Purpose: "marketing", Allowed: true, Reasons: []string{}, PolicyRevision: "sha256:r1"}
	if len(reg1) != 1 || !equalEntry(reg1[0], want) {
		t.Fatalf("register %+v\nwant %+v", reg1, want)
	}

	// A replay of records already applied (a restarted follower) changes nothing.
	for seq, r := range []*record.Record{reg, transfer} {
		if err := v.Apply(uint64(seq+1), "p", r); err != nil {
			t.Fatal(err)
		}
		if err := v.ApplyLocal(uint64(seq+1), "p", r); err != nil {
			t.Fatal(err)
		}
	}
	if s := v.Subject("p"); s.Events != 2 || len(register(t, v, allEntries)) != 1 || v.Applied() != 2 {
		t.Fatalf("replay changed the view: events %d register %d", s.Events, len(register(t, v, allEntries)))
	}
	if v.Subjects() != 1 {
		t.Fatalf("subjects %d", v.Subjects())
	}
}

func equalEntry(a, b state.RegisterEntry) bool {
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	return string(aj) == string(bj)
}

// forEachStore runs a test on a view in memory and on one whose id index
// and register are in the ledger's index database.
func forEachStore(t *testing.T, test func(t *testing.T, v *state.View)) {
	t.Run("memory", func(t *testing.T) { test(t, state.NewView(domestic)) })
	t.Run("index", func(t *testing.T) {
		db, err := index.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		test(t, state.NewViewOn(domestic, state.Stores{IDs: db.IDs(), Register: db.Register()}))
	})
}

func TestViewRegister(t *testing.T) { forEachStore(t, testViewRegister) }

func testViewRegister(t *testing.T, v *state.View) {
	deny := policy.Decision{Allow: false, Reasons: []policy.Reason{{Code: "DESTINATION_NOT_ALLOWED", Message: "m"}, {Code: "NO_TRANSFER_MECHANISM", Message: "m"}}, Obligations: []any{}, PolicyRevision: "sha256:r2"}
	denied := func(typ string, attempted any) *record.Record {
		a, err := json.Marshal(attempted)
		if err != nil {
			t.Fatal(err)
		}
		return rec(t, record.TypeDenied, day(3), record.Denied{Digest: "sha256:x", Type: typ, Source: "/svc", ID: "attempt", Attempted: a, Decision: deny})
	}
	records := []*record.Record{
		rec(t, event.TypeDataShared, day(1), event.DataShared{Recipient: "local", RecipientKind: "processor", Basis: "consent", Categories: []string{"contact"}, Purpose: "service", Region: "CN"}),
		rec(t, event.TypeDataShared, day(1), event.DataShared{Recipient: "acme-sg", RecipientKind: "controller", Basis: "consent", Categories: []string{"contact"}, Purpose: "marketing", Region: "SG"}),
		rec(t, event.TypeDataCollected, day(2), event.DataCollected{Categories: []string{"identity"}, Purpose: "service", StorageRegion: "CN", Retention: "P1Y"}),
		rec(t, event.TypeDataCollected, day(2), event.DataCollected{Categories: []string{"identity"}, Purpose: "service", StorageRegion: "US", Retention: "P1Y"}),
		denied(event.TypeDataTransferred, event.DataTransferred{TransferID: "t9", Recipient: "acme-us", FromRegion: "CN", ToRegion: "US", Categories: []string{"health"}, Purpose: "research"}),
		denied(event.TypeDataShared, event.DataShared{Recipient: "local", Categories: []string{"contact"}, Purpose: "ads", Region: "CN"}),
		denied(event.TypeDataUsed, event.DataUsed{Categories: []string{"contact"}, Purpose: "ads"}),
		rec(t, event.TypeDataUsed, day(4), event.DataUsed{Categories: []string{"contact"}, Purpose: "service"}),
	}
	for i, r := range records {
		if err := v.Apply(uint64(i+1), "p", r); err != nil {
			t.Fatal(err)
		}
	}
	got := register(t, v, allEntries)
	want := []state.RegisterEntry{
		{Seq: 2, Time: day(1), Subject: "p", Kind: event.TypeDataShared, Recipient: "acme-sg", To: "SG", Categories: []string{"contact"}, Purpose: "marketing", Allowed: true, Reasons: []string{}},
		{Seq: 4, Time: day(2), Subject: "p", Kind: event.TypeDataCollected, To: "US", Categories: []string{"identity"}, Purpose: "service", Allowed: true, Reasons: []string{}},
		{Seq: 5, Time: day(3), Subject: "p", Kind: event.TypeDataTransferred, TransferID: "t9", Recipient: "acme-us", From: "CN", To: "US",
			Categories: []string{"health"}, Purpose: "research", Allowed: false, Reasons: []string{"DESTINATION_NOT_ALLOWED", "NO_TRANSFER_MECHANISM"}, PolicyRevision: "sha256:r2"},
	}
	if len(got) != len(want) {
		t.Fatalf("register has %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !equalEntry(got[i], want[i]) {
			t.Fatalf("entry %d\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if blocked := register(t, v, func(e *state.RegisterEntry) bool { return !e.Allowed }); len(blocked) != 1 || blocked[0].Seq != 5 {
		t.Fatalf("blocked entries %+v", blocked)
	}
	// Denials are counted, and indexed under their own ids (a re-send in
	// the same state is answered with them), never under the attempted
	// event's source and id: a denied event may be sent again and allowed.
	if s := v.Subject("p"); s.Denials != 3 {
		t.Fatalf("denials %d", s.Denials)
	}
	if _, ok, err := v.Lookup(state.IDKey("/svc", "attempt")); err != nil || ok {
		t.Fatal("a denial was indexed under the attempted event's id")
	}
	if ent, ok, err := v.Lookup(state.IDKey(records[4].Source, records[4].ID)); err != nil || !ok || ent.Seq != 5 {
		t.Fatalf("the denial at 5 is not indexed under its own id: %v %v %v", ent, ok, err)
	}
}

func TestViewNoticesAndPolicyRevision(t *testing.T) {
	v := state.NewView(domestic)
	n1 := rec(t, event.TypeNoticePublished, day(0), event.NoticePublished{Version: "v1", Effective: day(0)})
	n2 := rec(t, event.TypeNoticePublished, day(5), event.NoticePublished{Version: "v2", Effective: day(6)})
	pol := rec(t, record.TypePolicyActivated, day(5), record.PolicyActivated{Revision: "sha256:r3", By: "operator"})
	// Notices are ledger-wide: applied without a subject, once, in order.
	if err := v.ApplyLocal(1, "", n1); err != nil {
		t.Fatal(err)
	}
	if n := v.Notices(); len(n.Versions) != 0 {
		t.Fatalf("ApplyLocal recorded a notice: %+v", n)
	}
	for i, r := range []*record.Record{n1, n2, pol} {
		if err := v.Apply(uint64(i+1), "", r); err != nil {
			t.Fatal(err)
		}
	}
	want := policy.Notices{Current: "v2", Versions: []policy.NoticeVersion{{Version: "v1", Effective: day(0)}, {Version: "v2", Effective: day(6)}}}
	n := v.Notices()
	if n.Current != want.Current || !slices.EqualFunc(n.Versions, want.Versions, func(a, b policy.NoticeVersion) bool {
		return a.Version == b.Version && a.Effective.Equal(b.Effective)
	}) {
		t.Fatalf("notices %+v", n)
	}
	if v.PolicyRevision() != "sha256:r3" || v.Subjects() != 0 {
		t.Fatalf("policy revision %q subjects %d", v.PolicyRevision(), v.Subjects())
	}
	// Re-applying an old sequence adds nothing.
	if err := v.Apply(2, "", n2); err != nil {
		t.Fatal(err)
	}
	if len(v.Notices().Versions) != 2 {
		t.Fatalf("notices %+v", v.Notices())
	}
}

func TestViewPolicySubject(t *testing.T) {
	v := state.NewView(domestic)
	if st := v.PolicySubject("nobody", day(0)); st.Registered || st.Consents == nil || st.ErasedCategories == nil {
		t.Fatalf("unknown subject: %+v", st)
	}
	r := rec(t, event.TypeSubjectRegistered, day(0), event.SubjectRegistered{Residence: "CN", Age: intp(13)})
	if err := v.Apply(1, "p", r); err != nil {
		t.Fatal(err)
	}
	if st := v.PolicySubject("p", day(0).AddDate(1, 0, 0)); !st.Registered || *st.Age != 14 || st.LastSeq != 1 {
		t.Fatalf("policy subject %+v", st)
	}
	if v.Subject("nobody") != nil {
		t.Fatal("Subject of an unknown pseudonym is not nil")
	}
	n := 0
	v.EachSubject(func(*state.Subject) { n++ })
	if n != 1 {
		t.Fatalf("EachSubject visited %d", n)
	}
}

func TestViewWaitApplied(t *testing.T) {
	v := state.NewView(domestic)
	done := make(chan error, 1)
	go func() { done <- v.WaitApplied(context.Background(), 3) }()
	r := rec(t, event.TypeDataUsed, day(0), event.DataUsed{Categories: []string{"contact"}, Purpose: "service"})
	if err := v.Apply(1, "p", r); err != nil {
		t.Fatal(err)
	}
	v.MarkApplied(2) // a record of no interest to the view
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(3) returned at 2: %v", err)
	default:
	}
	if err := v.Apply(3, "p", r); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied: %v", err)
	}
	v.MarkApplied(1) // never goes back
	if v.Applied() != 3 {
		t.Fatalf("applied %d", v.Applied())
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- v.WaitApplied(ctx, 10) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied after cancel = %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := v.WaitApplied(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied past its deadline = %v", err)
	}
}

// failingRegister is a register whose disk has failed.
type failingRegister struct{}

func (failingRegister) Add(*state.RegisterEntry) error { return errors.New("disk failed") }

func (failingRegister) Entries(func(*state.RegisterEntry) bool) ([]state.RegisterEntry, error) {
	return nil, errors.New("disk failed")
}

// A store that cannot be written fails the apply before the view changes,
// so the follower stops on a view that is still what it had applied.
func TestViewStoreFailureChangesNothing(t *testing.T) {
	v := state.NewViewOn(domestic, state.Stores{Register: failingRegister{}})
	transfer := rec(t, event.TypeDataTransferred, day(1), event.DataTransferred{TransferID: "t1", Recipient: "acme-us", FromRegion: "CN", ToRegion: "US", Categories: []string{"contact"}, Purpose: "marketing", Mechanism: "scc"})
	if err := v.Apply(1, "p", transfer); err == nil {
		t.Fatal("Apply succeeded with a failed register")
	}
	if v.Subject("p") != nil || v.Applied() != 0 {
		t.Fatalf("the view changed: subject %+v, applied %d", v.Subject("p"), v.Applied())
	}
}
