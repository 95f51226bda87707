package state_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

var t0 = time.Date(2026, 1, 10, 8, 30, 0, 0, time.UTC)

// rec is a stored record of type typ at time at with the given data, as
// Custos writes it (commitments, not values, in the data).
func rec(t testing.TB, typ string, at time.Time, data any) *record.Record {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	r := &record.Record{V: record.Version, Type: typ, ID: fmt.Sprintf("%s-%d", typ, at.UnixNano()), Source: "/svc",
		Time: record.FormatTime(at), Subject: "p", RecordedAt: record.FormatTime(at), Data: b}
	// What a stored record goes through.
	body, err := record.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := record.Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func apply(t testing.TB, s *state.Subject, seq uint64, r *record.Record) {
	t.Helper()
	if err := s.Apply(seq, r); err != nil {
		t.Fatalf("Apply(%d, %s): %v", seq, r.Type, err)
	}
}

func day(n int) time.Time { return t0.AddDate(0, 0, n) }

func intp(n int) *int { return &n }

func TestSubjectApplyEachType(t *testing.T) {
	s := state.NewSubject("p")
	expires := day(365)

	apply(t, s, 1, rec(t, event.TypeSubjectRegistered, day(0), event.SubjectRegistered{Residence: "CN", Age: intp(16)}))
	if !s.Registered || s.Residence != "CN" || *s.RegisteredAge != 16 || !s.RegisteredAt.Equal(day(0)) {
		t.Fatalf("after registration: %+v", s)
	}

	apply(t, s, 2, rec(t, event.TypeConsentGranted, day(1), map[string]any{
		"consent_id": "c1", "notice_version": "v1", "purposes": []string{"marketing"}, "categories": []string{"contact"},
		"destinations": []string{"US"}, "guardian": map[string]any{"ref": "hmac-sha256:AA", "relation": "parent"}, "expires": expires,
	}))
	want := &state.Consent{Seq: 2, ConsentState: policy.ConsentState{
		ConsentID: "c1", NoticeVersion: "v1", Purposes: []string{"marketing"}, Categories: []string{"contact"},
		Destinations: []string{"US"}, Recipients: []string{}, Cookies: []string{}, Guardian: true, GrantedAt: day(1), Expires: &expires,
		WithdrawnScope: policy.Scope{Purposes: []string{}, Destinations: []string{}, Cookies: []string{}, Categories: []string{}},
	}}
	if len(s.Consents) != 1 || !reflect.DeepEqual(s.Consents[0], want) {
		t.Fatalf("consent\n got %+v\nwant %+v", s.Consents[0], want)
	}

	collected := rec(t, event.TypeDataCollected, day(2), map[string]any{
		"categories": []string{"contact", "identity"}, "purpose": "service", "storage_region": "CN", "retention": "P30D",
		"fields": map[string]string{"email": "hmac-sha256:BB"},
	})
	collected.PII = "p.k3"
	apply(t, s, 3, collected)
	for _, c := range []string{"contact", "identity"} {
		h := s.Holdings[c]
		if h == nil || !slices.Equal(h.Regions, []string{"CN"}) || !slices.Equal(h.Purposes, []string{"service"}) ||
			!slices.Equal(h.Collections, []uint64{3}) || !h.RetainUntil.Equal(day(32)) {
			t.Fatalf("holding %s: %+v", c, h)
		}
		if d, ok := h.Deadline(3); !ok || !d.Equal(day(32)) {
			t.Fatalf("deadline of 3 in %s: %v %v", c, d, ok)
		}
	}
	if !reflect.DeepEqual(s.Sealed, []state.SealedRef{{Seq: 3, Ref: "p.k3", Type: event.TypeDataCollected, Categories: []string{"contact", "identity"}}}) {
		t.Fatalf("sealed %+v", s.Sealed)
	}

	apply(t, s, 4, rec(t, event.TypeDataUsed, day(3), event.DataUsed{Categories: []string{"contact"}, Purpose: "service"}))
	apply(t, s, 5, rec(t, event.TypeDataShared, day(3), event.DataShared{Recipient: "acme", RecipientKind: "processor", Basis: "consent", Categories: []string{"contact"}, Purpose: "service", Region: "CN"}))
	apply(t, s, 6, rec(t, event.TypeDataTransferred, day(4), event.DataTransferred{TransferID: "t1", Recipient: "acme-us", FromRegion: "CN", ToRegion: "US", Categories: []string{"contact"}, Purpose: "marketing", Mechanism: "scc"}))
	wantT := []state.Transfer{{Seq: 6, Time: day(4), TransferID: "t1", Recipient: "acme-us", From: "CN", To: "US", Categories: []string{"contact"}, Purpose: "marketing", Mechanism: "scc"}}
	if !reflect.DeepEqual(s.Transfers, wantT) {
		t.Fatalf("transfers %+v", s.Transfers)
	}

	apply(t, s, 7, rec(t, event.TypeRightsRequested, day(5), event.RightsRequested{RequestID: "r1", Right: "access", Details: "hmac-sha256:CC"}))
	apply(t, s, 8, rec(t, event.TypeRightsRequested, day(5), event.RightsRequested{RequestID: "r2", Right: "deletion"}))
	if len(s.Requests) != 2 || s.Requests[0].Status != "open" || s.Requests[0].Seq != 7 || !s.Requests[0].RequestedAt.Equal(day(5)) {
		t.Fatalf("requests %+v", s.Requests)
	}
	apply(t, s, 9, rec(t, event.TypeRightsCompleted, day(6), event.RightsCompleted{RequestID: "r1", Outcome: "fulfilled"}))
	apply(t, s, 10, rec(t, event.TypeRightsCompleted, day(6), event.RightsCompleted{RequestID: "r2", Outcome: "rejected", Reason: "hmac-sha256:DD"}))
	// A second completion of a closed request changes nothing.
	apply(t, s, 11, rec(t, event.TypeRightsCompleted, day(7), event.RightsCompleted{RequestID: "r1", Outcome: "rejected"}))
	if r := s.Requests[0]; r.Status != "fulfilled" || r.CompletedBy != 9 || !r.CompletedAt.Equal(day(6)) {
		t.Fatalf("request r1 %+v", r)
	}
	if r := s.Requests[1]; r.Status != "rejected" || r.CompletedBy != 10 {
		t.Fatalf("request r2 %+v", r)
	}

	corrected := rec(t, event.TypeDataCorrected, day(8), map[string]any{"categories": []string{"contact"}, "fields": map[string]string{"email": "hmac-sha256:EE"}})
	corrected.PII = "p.k12"
	apply(t, s, 12, corrected)
	if len(s.Sealed) != 2 || s.Sealed[1].Ref != "p.k12" || s.Sealed[1].Seq != 12 {
		t.Fatalf("sealed %+v", s.Sealed)
	}

	apply(t, s, 13, rec(t, record.TypeDenied, day(9), record.Denied{Type: event.TypeDataTransferred, Decision: policy.Decision{Reasons: []policy.Reason{{Code: "DESTINATION_NOT_ALLOWED"}}}}))
	if s.Denials != 1 {
		t.Fatalf("denials %d", s.Denials)
	}

	// Records already applied are ignored: the follower may see a record
	// the appending process applied first.
	apply(t, s, 6, rec(t, event.TypeDataTransferred, day(4), event.DataTransferred{TransferID: "t1"}))
	apply(t, s, 13, rec(t, record.TypeDenied, day(9), record.Denied{}))
	if s.Events != 13 || s.LastSeq != 13 || len(s.Transfers) != 1 || s.Denials != 1 {
		t.Fatalf("re-applied records counted: events %d last %d transfers %d denials %d", s.Events, s.LastSeq, len(s.Transfers), s.Denials)
	}

	st := s.PolicyState(day(10))
	if !st.Registered || st.Residence != "CN" || st.Erased || st.LastSeq != 13 || len(st.Consents) != 1 || *st.Age != 16 {
		t.Fatalf("policy state %+v", st)
	}
}

func TestApplyRefusesMalformedData(t *testing.T) {
	s := state.NewSubject("p")
	r := rec(t, event.TypeConsentGranted, day(0), map[string]any{"purposes": "marketing"})
	if err := s.Apply(1, r); err == nil {
		t.Fatal("consent with a string for purposes applied")
	}
}

func consentIDs(cs []*state.Consent, withdrawn bool) []string {
	var out []string
	for _, c := range cs {
		if c.Withdrawn == withdrawn {
			out = append(out, c.ConsentID)
		}
	}
	return out
}

func TestWithdrawals(t *testing.T) {
	grant := func(id string, purposes ...string) map[string]any {
		return map[string]any{"consent_id": id, "notice_version": "v1", "purposes": purposes, "categories": []string{"contact"},
			"destinations": []string{"US", "SG"}, "cookies": []string{"analytics"}}
	}
	setup := func() *state.Subject {
		s := state.NewSubject("p")
		apply(t, s, 1, rec(t, event.TypeConsentGranted, day(0), grant("c1", "marketing", "service")))
		apply(t, s, 2, rec(t, event.TypeConsentGranted, day(0), grant("c2", "analytics")))
		apply(t, s, 3, rec(t, event.TypeConsentGranted, day(0), grant("c3", "marketing")))
		return s
	}

	t.Run("by consent id", func(t *testing.T) {
		s := setup()
		apply(t, s, 4, rec(t, event.TypeConsentWithdrawn, day(1), event.ConsentWithdrawn{ConsentID: "c2"}))
		if got := consentIDs(s.Consents, true); !slices.Equal(got, []string{"c2"}) {
			t.Fatalf("withdrawn %v", got)
		}
		if c := s.Consents[1]; c.WithdrawnAt == nil || !c.WithdrawnAt.Equal(day(1)) {
			t.Fatalf("withdrawn at %v", c.WithdrawnAt)
		}
		if c := s.Consents[0]; len(c.WithdrawnScope.Purposes) != 0 {
			t.Fatalf("another consent's scope changed: %+v", c.WithdrawnScope)
		}
		// Withdrawing everything later leaves c2's withdrawal time alone.
		apply(t, s, 5, rec(t, event.TypeConsentWithdrawn, day(2), event.ConsentWithdrawn{}))
		if c := s.Consents[1]; !c.WithdrawnAt.Equal(day(1)) {
			t.Fatalf("c2 withdrawn again at %v", c.WithdrawnAt)
		}
	})

	t.Run("scoped", func(t *testing.T) {
		s := setup()
		apply(t, s, 4, rec(t, event.TypeConsentWithdrawn, day(1), event.ConsentWithdrawn{ConsentID: "c2"}))
		apply(t, s, 5, rec(t, event.TypeConsentWithdrawn, day(2), event.ConsentWithdrawn{Purposes: []string{"marketing"}, Destinations: []string{"US"}}))
		apply(t, s, 6, rec(t, event.TypeConsentWithdrawn, day(3), event.ConsentWithdrawn{Purposes: []string{"marketing", "ads"}, Cookies: []string{"analytics"}, Categories: []string{"contact"}}))
		if got := consentIDs(s.Consents, true); !slices.Equal(got, []string{"c2"}) {
			t.Fatalf("a scoped withdrawal withdrew whole consents: %v", got)
		}
		wantScope := policy.Scope{Purposes: []string{"ads", "marketing"}, Destinations: []string{"US"}, Cookies: []string{"analytics"}, Categories: []string{"contact"}}
		for _, i := range []int{0, 2} {
			if got := s.Consents[i].WithdrawnScope; !reflect.DeepEqual(got, wantScope) {
				t.Fatalf("consent %s scope %+v, want %+v", s.Consents[i].ConsentID, got, wantScope)
			}
		}
		// A consent already withdrawn in full keeps an empty scope.
		if got := s.Consents[1].WithdrawnScope; len(got.Purposes)+len(got.Destinations)+len(got.Cookies)+len(got.Categories) != 0 {
			t.Fatalf("withdrawn consent's scope changed: %+v", got)
		}
	})

	t.Run("scoped to one consent", func(t *testing.T) {
		s := setup()
		apply(t, s, 4, rec(t, event.TypeConsentWithdrawn, day(1), event.ConsentWithdrawn{ConsentID: "c3", Destinations: []string{"SG"}}))
		if got := s.Consents[2].WithdrawnScope.Destinations; !slices.Equal(got, []string{"SG"}) {
			t.Fatalf("c3 destinations withdrawn %v", got)
		}
		if got := s.Consents[0].WithdrawnScope.Destinations; len(got) != 0 {
			t.Fatalf("c1 destinations withdrawn %v", got)
		}
	})

	t.Run("empty means all", func(t *testing.T) {
		s := setup()
		apply(t, s, 4, rec(t, event.TypeConsentWithdrawn, day(1), event.ConsentWithdrawn{}))
		if got := consentIDs(s.Consents, true); !slices.Equal(got, []string{"c1", "c2", "c3"}) {
			t.Fatalf("withdrawn %v", got)
		}
		for _, c := range s.PolicyState(day(2)).Consents {
			if !c.Withdrawn || c.WithdrawnAt == nil || !c.WithdrawnAt.Equal(day(1)) {
				t.Fatalf("policy sees %+v", c)
			}
		}
	})
}

// Consent expiry is the policy's to judge at decision time: the projection
// keeps an expired consent as granted, with its expiry.
func TestExpiryIsNotApplied(t *testing.T) {
	s := state.NewSubject("p")
	exp := day(30)
	apply(t, s, 1, rec(t, event.TypeConsentGranted, day(0), map[string]any{"consent_id": "c1", "notice_version": "v1",
		"purposes": []string{"marketing"}, "categories": []string{"contact"}, "expires": exp}))
	st := s.PolicyState(day(400))
	if len(st.Consents) != 1 || st.Consents[0].Withdrawn || st.Consents[0].Expires == nil || !st.Consents[0].Expires.Equal(exp) {
		t.Fatalf("consents %+v", st.Consents)
	}
}

func collect(t *testing.T, s *state.Subject, seq uint64, at time.Time, retention string, cats ...string) {
	t.Helper()
	apply(t, s, seq, rec(t, event.TypeDataCollected, at, event.DataCollected{Categories: cats, Purpose: "service", StorageRegion: "CN", Retention: retention}))
}

func TestErasure(t *testing.T) {
	s := state.NewSubject("p")
	collect(t, s, 1, day(0), "P1Y", "contact", "identity")
	collect(t, s, 2, day(0), "P1Y", "usage.behavior")

	apply(t, s, 3, rec(t, event.TypeDataErased, day(1), event.DataErased{Scope: event.Scope{Categories: []string{"contact"}}, Reason: "request"}))
	if _, held := s.Holdings["contact"]; held || s.Erased || !slices.Equal(s.ErasedCategories, []string{"contact"}) {
		t.Fatalf("after erasing contact: erased %v categories %v holdings %v", s.Erased, s.ErasedCategories, s.Holdings)
	}
	if len(s.Holdings) != 2 {
		t.Fatalf("holdings %v", s.Holdings)
	}
	// Collecting the category again holds it again.
	collect(t, s, 4, day(2), "P1Y", "contact")
	if _, held := s.Holdings["contact"]; !held || len(s.ErasedCategories) != 0 {
		t.Fatalf("after collecting contact again: %v %v", s.Holdings, s.ErasedCategories)
	}

	apply(t, s, 5, rec(t, event.TypeDataErased, day(3), event.DataErased{Scope: event.Scope{All: true}, Reason: "request"}))
	if !s.Erased || s.ErasedAt == nil || !s.ErasedAt.Equal(day(3)) || len(s.Holdings) != 0 ||
		!slices.Equal(s.ErasedCategories, []string{"contact", "identity", "usage.behavior"}) {
		t.Fatalf("after erasing all: erased %v at %v categories %v holdings %v", s.Erased, s.ErasedAt, s.ErasedCategories, s.Holdings)
	}
	if st := s.PolicyState(day(4)); !st.Erased || !slices.Equal(st.ErasedCategories, s.ErasedCategories) {
		t.Fatalf("policy state %+v", st)
	}
	apply(t, s, 6, rec(t, record.TypeKeyDestroyed, day(3), record.KeyDestroyed{Reason: "request", KeyName: "custos-subject-p", Trigger: 5}))
	if !s.KeyDestroyed || !s.ErasedAt.Equal(day(3)) {
		t.Fatalf("key destroyed %v erased at %v", s.KeyDestroyed, s.ErasedAt)
	}
}

// A destroyed key alone (a crash between erasure and its record, or an
// operator's shredding) makes the subject erased.
func TestKeyDestroyedErases(t *testing.T) {
	s := state.NewSubject("p")
	collect(t, s, 1, day(0), "P1Y", "contact")
	apply(t, s, 2, rec(t, record.TypeKeyDestroyed, day(1), record.KeyDestroyed{Reason: "request", KeyName: "k"}))
	if !s.Erased || !s.KeyDestroyed || !s.ErasedAt.Equal(day(1)) || !s.PolicyState(day(2)).Erased {
		t.Fatalf("erased %v key destroyed %v at %v", s.Erased, s.KeyDestroyed, s.ErasedAt)
	}
}

func TestRetentionExpiry(t *testing.T) {
	s := state.NewSubject("p")
	collect(t, s, 1, day(0), "P30D", "contact")
	collect(t, s, 2, day(1), "P1Y", "contact", "identity")
	collect(t, s, 3, day(2), "P2M", "contact")
	h := s.Holdings["contact"]
	if !slices.Equal(h.Collections, []uint64{1, 2, 3}) || !h.RetainUntil.Equal(day(1).AddDate(1, 0, 0)) {
		t.Fatalf("contact %+v", h)
	}

	apply(t, s, 4, rec(t, record.TypeRetentionExpired, day(31), record.RetentionExpired{Categories: []string{"contact"}, Collected: []uint64{1}, Deadline: record.FormatTime(day(30))}))
	h = s.Holdings["contact"]
	if h == nil || !slices.Equal(h.Collections, []uint64{2, 3}) || !h.RetainUntil.Equal(day(1).AddDate(1, 0, 0)) {
		t.Fatalf("contact after expiring 1: %+v", h)
	}
	if _, ok := h.Deadline(1); ok {
		t.Fatal("expired collection still has a deadline")
	}
	if d, ok := h.Deadline(3); !ok || !d.Equal(day(2).AddDate(0, 2, 0)) {
		t.Fatalf("deadline of 3: %v %v", d, ok)
	}
	if len(s.ErasedCategories) != 0 {
		t.Fatalf("erased %v", s.ErasedCategories)
	}

	// The one-year collection expires: contact's deadline drops to the
	// two-month one; identity, which had only that collection, goes.
	apply(t, s, 5, rec(t, record.TypeRetentionExpired, day(400), record.RetentionExpired{Categories: []string{"contact", "identity"}, Collected: []uint64{2}}))
	if h := s.Holdings["contact"]; h == nil || !slices.Equal(h.Collections, []uint64{3}) || !h.RetainUntil.Equal(day(2).AddDate(0, 2, 0)) {
		t.Fatalf("contact after expiring 2: %+v", h)
	}
	if _, held := s.Holdings["identity"]; held || !slices.Equal(s.ErasedCategories, []string{"identity"}) {
		t.Fatalf("identity still held: %v %v", s.Holdings, s.ErasedCategories)
	}
	apply(t, s, 6, rec(t, record.TypeRetentionExpired, day(401), record.RetentionExpired{Categories: []string{"contact", "never.held"}, Collected: []uint64{3}}))
	if len(s.Holdings) != 0 || !slices.Equal(s.ErasedCategories, []string{"contact", "identity"}) || s.Erased {
		t.Fatalf("after expiring everything: %v %v erased %v", s.Holdings, s.ErasedCategories, s.Erased)
	}
}

func TestPolicyStateAge(t *testing.T) {
	registered := func(age int, at time.Time) *state.Subject {
		s := state.NewSubject("p")
		apply(t, s, 1, rec(t, event.TypeSubjectRegistered, at, event.SubjectRegistered{Residence: "CN", Age: intp(age)}))
		return s
	}
	at := time.Date(2020, 3, 15, 10, 0, 0, 0, time.UTC)
	s := registered(17, at)
	shanghai := time.FixedZone("UTC+8", 8*3600)
	for _, tc := range []struct {
		now  time.Time
		want int
	}{
		{at.Add(-time.Hour), 17}, // a clock behind the registration
		{at, 17},
		{time.Date(2021, 3, 14, 23, 59, 59, 0, time.UTC), 17},
		{time.Date(2021, 3, 15, 0, 0, 0, 0, time.UTC), 18}, // the anniversary counts from its first moment
		{time.Date(2023, 3, 15, 9, 0, 0, 0, time.UTC), 20},
		{time.Date(2023, 3, 14, 9, 0, 0, 0, time.UTC), 19},
		// The date is the UTC date whatever the caller's zone: 2021-03-15
		// 01:00 in UTC+8 is still the 14th in UTC.
		{time.Date(2021, 3, 15, 1, 0, 0, 0, shanghai), 17},
		{time.Date(2021, 3, 15, 9, 0, 0, 0, shanghai), 18},
	} {
		if got := s.PolicyState(tc.now).Age; got == nil || *got != tc.want {
			t.Errorf("age at %v = %v, want %d", tc.now, deref(got), tc.want)
		}
	}

	leap := registered(10, time.Date(2020, 2, 29, 12, 0, 0, 0, time.UTC))
	for now, want := range map[time.Time]int{
		time.Date(2021, 2, 28, 23, 0, 0, 0, time.UTC): 10,
		time.Date(2021, 3, 1, 0, 0, 0, 0, time.UTC):   11,
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC):  14,
	} {
		if got := leap.PolicyState(now).Age; *got != want {
			t.Errorf("leap-day registration: age at %v = %d, want %d", now, *got, want)
		}
	}

	// The latest registration counts.
	apply(t, s, 2, rec(t, event.TypeSubjectRegistered, time.Date(2022, 6, 1, 0, 0, 0, 0, time.UTC), event.SubjectRegistered{Residence: "SG", Age: intp(30)}))
	if st := s.PolicyState(time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)); *st.Age != 31 || st.Residence != "SG" {
		t.Fatalf("after re-registration: age %d residence %s", *st.Age, st.Residence)
	}

	noAge := state.NewSubject("q")
	apply(t, noAge, 1, rec(t, event.TypeSubjectRegistered, at, event.SubjectRegistered{Residence: "CN"}))
	if st := noAge.PolicyState(at.AddDate(5, 0, 0)); st.Age != nil {
		t.Fatalf("age %d without a registered age", *st.Age)
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestCloneIsIndependent(t *testing.T) {
	s := state.NewSubject("p")
	apply(t, s, 1, rec(t, event.TypeSubjectRegistered, day(0), event.SubjectRegistered{Residence: "CN", Age: intp(20)}))
	collect(t, s, 2, day(0), "P30D", "contact")
	c := s.Clone()
	if d, ok := c.Holdings["contact"].Deadline(2); !ok || !d.Equal(day(30)) {
		t.Fatalf("clone lost the deadline: %v %v", d, ok)
	}
	if *c.PolicyState(day(400)).Age != 21 {
		t.Fatalf("clone lost the registered age")
	}
	collect(t, c, 3, day(1), "P1Y", "contact")
	if slices.Contains(s.Holdings["contact"].Collections, 3) || s.LastSeq != 2 {
		t.Fatal("changing the clone changed the original")
	}
}
