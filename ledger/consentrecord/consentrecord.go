// Package consentrecord renders a data subject's consents as consent records
// of ISO/IEC TS 27560:2023, in JSON-LD following the W3C Data Privacy
// Vocabulary's 27560 profile (https://w3id.org/dpv/schema/iso-27560#record).
//
// A record is built from the subject's ledger records alone, so it shows what
// the ledger proves: every event in it names the ledger sequence it comes
// from. The terms it uses are defined by the context Context returns, served
// at ContextURL; docs/vocabulary.md documents the record and its terms.
package consentrecord

import (
	_ "embed"
	"slices"
	"sort"
	"time"

	"custos.dev/ledger/event"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// ContextURL is where the context of every record is published; Custos
// serves it at /contexts/iso27560-v1.jsonld.
const ContextURL = "https://custos.dev/contexts/iso27560-v1.jsonld"

// Profile is the DPV 27560 profile records conform to.
const Profile = "dpv-27560:record"

// SchemaVersion is the version of this rendering; it changes only when a
// term changes meaning.
const SchemaVersion = "1"

//go:embed context.jsonld
var context []byte

// Context returns the JSON-LD context document of the records.
func Context() []byte { return slices.Clone(context) }

// Notice is what a consent record says about the privacy notice a consent
// was given to.
type Notice struct {
	Version    string
	Effective  time.Time
	Language   string
	Controller *event.Controller
	Seq        uint64
}

// Entry is one of the subject's ledger records with its sequence.
type Entry struct {
	Seq    uint64
	Record *record.Record
}

// Input is what Build renders.
type Input struct {
	Pseudonym string
	// Residence and Law are the subject's residence and the law that
	// governs them (PIPL, GDPR).
	Residence string
	Law       string
	// Notices are the published privacy notices, in ledger order.
	Notices []Notice
	// Entries are the subject's records in sequence order.
	Entries []Entry
	// Now decides whether a consent has expired.
	Now time.Time
}

// Document is the JSON-LD document of a subject's consent records.
type Document struct {
	Context     string    `json:"@context"`
	ID          string    `json:"@id"`
	DataSubject string    `json:"dataSubject"`
	GeneratedAt time.Time `json:"generatedAt"`
	Records     []Record  `json:"records"`
}

// Record is one consent record.
type Record struct {
	ID             string      `json:"@id"`
	Type           string      `json:"@type"`
	ConformsTo     string      `json:"conformsTo"`
	Identifier     string      `json:"identifier"`
	SchemaVersion  string      `json:"schemaVersion"`
	DataSubject    string      `json:"dataSubject"`
	DataController *Party      `json:"dataController,omitempty"`
	Jurisdiction   []string    `json:"jurisdiction,omitempty"`
	ApplicableLaw  string      `json:"applicableLaw,omitempty"`
	LegalBasis     []string    `json:"legalBasis"`
	Notice         NoticeRef   `json:"notice"`
	Process        Process     `json:"process"`
	ConsentStatus  string      `json:"consentStatus"`
	Guardian       bool        `json:"givenByGuardian"`
	Events         []EventNode `json:"events"`
}

// Party is the controller a notice names.
type Party struct {
	Type    string `json:"@type"`
	Name    string `json:"name"`
	Contact string `json:"contact,omitempty"`
}

// NoticeRef is the notice a consent was given to.
type NoticeRef struct {
	Type      string     `json:"@type"`
	Version   string     `json:"version"`
	Language  string     `json:"language,omitempty"`
	Effective *time.Time `json:"effective,omitempty"`
}

// Process is what the consent covers.
type Process struct {
	Type                string        `json:"@type"`
	Purpose             []string      `json:"purpose"`
	PersonalData        []string      `json:"personalData"`
	Cookie              []string      `json:"cookie,omitempty"`
	Recipient           []Party       `json:"recipient,omitempty"`
	StorageCondition    []StorageNode `json:"storageCondition,omitempty"`
	TransferDestination []string      `json:"transferDestination,omitempty"`
	Expires             *time.Time    `json:"expires,omitempty"`
}

// StorageNode is a storage condition: where the covered data is held, and
// until when.
type StorageNode struct {
	Type          string     `json:"@type"`
	Location      []string   `json:"location,omitempty"`
	RetainedUntil *time.Time `json:"retainedUntil,omitempty"`
}

// EventNode is one event in a consent's life.
type EventNode struct {
	Type           string     `json:"@type"`
	Time           time.Time  `json:"time"`
	RecordedAt     *time.Time `json:"recordedAt,omitempty"`
	LedgerSequence uint64     `json:"ledgerSequence"`
	LedgerEventID  string     `json:"ledgerEventId,omitempty"`
	WithdrawnScope *Scope     `json:"withdrawnScope,omitempty"`
}

// Scope is what a scoped withdrawal took back, in DPV terms.
type Scope struct {
	Purpose             []string `json:"purpose,omitempty"`
	PersonalData        []string `json:"personalData,omitempty"`
	Cookie              []string `json:"cookie,omitempty"`
	TransferDestination []string `json:"transferDestination,omitempty"`
}

const (
	statusGiven     = "dpv:ConsentGiven"
	statusWithdrawn = "dpv:ConsentWithdrawn"
	statusExpired   = "dpv:ConsentExpired"
	// DPV's statuses have no partial withdrawal: the consent stays given for
	// what was not taken back.
	statusPartlyWithdrawn = "custos:ConsentPartiallyWithdrawn"
)

// Build renders the subject's consents. The consents' life comes from
// folding the records into a state.Subject, so a record says exactly what the
// projection Custos decides with says.
func Build(in Input) Document {
	doc := Document{
		Context:     ContextURL,
		ID:          "urn:custos:consent-records:" + in.Pseudonym,
		DataSubject: subjectIRI(in.Pseudonym),
		GeneratedAt: in.Now.UTC(),
		Records:     []Record{},
	}
	notices := map[string]Notice{}
	for _, n := range in.Notices {
		if _, seen := notices[n.Version]; !seen {
			notices[n.Version] = n
		}
	}
	s := state.NewSubject(in.Pseudonym)
	byID := map[uint64]*Record{} // by the sequence that granted the consent
	var order []uint64
	for _, e := range in.Entries {
		before := snapshot(s)
		if err := s.Apply(e.Seq, e.Record); err != nil {
			continue
		}
		ev := EventNode{Time: e.Record.EventTime().UTC(), LedgerSequence: e.Seq, LedgerEventID: e.Record.ID}
		if t, err := time.Parse(time.RFC3339Nano, e.Record.RecordedAt); err == nil {
			t = t.UTC()
			ev.RecordedAt = &t
		}
		for _, c := range s.Consents {
			old, existed := before[c.Seq]
			switch {
			case !existed && c.Seq == e.Seq:
				r := newRecord(in, c, notices)
				ev.Type = statusGiven
				r.Events = append(r.Events, ev)
				byID[c.Seq] = &r
				order = append(order, c.Seq)
			case existed && c.Withdrawn && !old.withdrawn:
				ev.Type = statusWithdrawn
				byID[c.Seq].Events = append(byID[c.Seq].Events, ev)
			case existed && !c.Withdrawn && scopeSize(c) > old.scope:
				pe := ev
				pe.Type = statusPartlyWithdrawn
				ws := c.WithdrawnScope
				pe.WithdrawnScope = &Scope{
					Purpose:             dpvAll("purpose", ws.Purposes),
					PersonalData:        dpvAll("category", ws.Categories),
					Cookie:              dpvAll("category", ws.Cookies),
					TransferDestination: locations(ws.Destinations),
				}
				byID[c.Seq].Events = append(byID[c.Seq].Events, pe)
			}
		}
	}
	for _, c := range s.Consents {
		r := byID[c.Seq]
		if r == nil {
			continue
		}
		r.Process.StorageCondition = storage(s, c)
		switch {
		case c.Withdrawn:
			r.ConsentStatus = statusWithdrawn
		case c.Expires != nil && !c.Expires.After(in.Now):
			r.ConsentStatus = statusExpired
			// The expiry is no event of its own: it is the time the grant
			// set, so it names the grant's sequence.
			r.Events = append(r.Events, EventNode{Type: statusExpired, Time: c.Expires.UTC(), LedgerSequence: c.Seq})
		default:
			r.ConsentStatus = statusGiven
		}
		sort.SliceStable(r.Events, func(i, j int) bool { return r.Events[i].Time.Before(r.Events[j].Time) })
	}
	for _, seq := range order {
		doc.Records = append(doc.Records, *byID[seq])
	}
	return doc
}

type consentMark struct {
	withdrawn bool
	scope     int
}

func snapshot(s *state.Subject) map[uint64]consentMark {
	m := make(map[uint64]consentMark, len(s.Consents))
	for _, c := range s.Consents {
		m[c.Seq] = consentMark{withdrawn: c.Withdrawn, scope: scopeSize(c)}
	}
	return m
}

func scopeSize(c *state.Consent) int {
	w := c.WithdrawnScope
	return len(w.Purposes) + len(w.Categories) + len(w.Cookies) + len(w.Destinations)
}

func newRecord(in Input, c *state.Consent, notices map[string]Notice) Record {
	r := Record{
		ID:            "urn:custos:consent:" + in.Pseudonym + ":" + c.ConsentID,
		Type:          "dpv:ConsentRecord",
		ConformsTo:    Profile,
		Identifier:    c.ConsentID,
		SchemaVersion: SchemaVersion,
		DataSubject:   subjectIRI(in.Pseudonym),
		ApplicableLaw: dpvTerms["law"][in.Law],
		LegalBasis:    legalBasis(in.Law, len(c.Destinations) > 0),
		Notice:        NoticeRef{Type: "dpv:ConsentNotice", Version: c.NoticeVersion},
		Guardian:      c.Guardian,
		Process: Process{
			Type:                "dpv:Process",
			Purpose:             dpvAll("purpose", c.Purposes),
			PersonalData:        dpvAll("category", c.Categories),
			Cookie:              dpvAll("category", c.Cookies),
			TransferDestination: locations(c.Destinations),
		},
		Events: []EventNode{},
	}
	if in.Residence != "" {
		r.Jurisdiction = []string{"loc:" + in.Residence}
	}
	for _, name := range c.Recipients {
		r.Process.Recipient = append(r.Process.Recipient, Party{Type: "dpv:Recipient", Name: name})
	}
	if c.Expires != nil {
		t := c.Expires.UTC()
		r.Process.Expires = &t
	}
	if n, ok := notices[c.NoticeVersion]; ok {
		r.Notice.Language = n.Language
		eff := n.Effective.UTC()
		r.Notice.Effective = &eff
		if n.Controller != nil {
			r.DataController = &Party{Type: "dpv:DataController", Name: n.Controller.Name, Contact: n.Controller.Contact}
		}
	}
	return r
}

// legalBasis is the consent's own basis: explicit consent, and for a consent
// naming destinations PIPL article 39's separate consent or the GDPR's
// article 49(1)(a) derogation.
func legalBasis(law string, transfers bool) []string {
	switch {
	case law == "GDPR" && transfers:
		return []string{"eu-gdpr:A6-1-a", "eu-gdpr:A49-1-a"}
	case law == "GDPR":
		return []string{"eu-gdpr:A6-1-a"}
	case transfers:
		return []string{"dpv:ExplicitlyExpressedConsent", "custos:PIPLSeparateConsent"}
	}
	return []string{"dpv:ExplicitlyExpressedConsent"}
}

// storage is where the subject's data of the consent's categories is held,
// and until when, from the collections on the ledger.
func storage(s *state.Subject, c *state.Consent) []StorageNode {
	var regions []string
	var until time.Time
	for _, cat := range c.Categories {
		h := s.Holdings[cat]
		if h == nil {
			continue
		}
		regions = append(regions, h.Regions...)
		if h.RetainUntil.After(until) {
			until = h.RetainUntil
		}
	}
	if len(regions) == 0 {
		return nil
	}
	slices.Sort(regions)
	out := []StorageNode{{Type: "dpv:StorageLocation", Location: locations(slices.Compact(regions))}}
	if !until.IsZero() {
		u := until.UTC()
		out = append(out, StorageNode{Type: "dpv:StorageDuration", RetainedUntil: &u})
	}
	return out
}

func locations(regions []string) []string {
	out := make([]string, 0, len(regions))
	for _, r := range regions {
		out = append(out, "loc:"+r)
	}
	return out
}

func subjectIRI(p string) string { return "urn:custos:subject:" + p }
