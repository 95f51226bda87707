package policy

import (
	"time"

	"custos.dev/ledger/decision"
)

// Input is what a policy sees when it decides one event; docs/policy-input.md
// is its contract with the Rego rules. It never carries a subject identifier
// or a personal value.
type Input struct {
	Now     time.Time    `json:"now"`
	Event   EventInput   `json:"event"`
	Subject SubjectState `json:"subject"`
	Notices Notices      `json:"notices"`
}

// EventInput is the attempted event with personal values removed.
type EventInput struct {
	Type    string         `json:"type"`
	Source  string         `json:"source"`
	ID      string         `json:"id"`
	Time    time.Time      `json:"time"`
	Subject string         `json:"subject,omitempty"` // keyed pseudonym
	Data    map[string]any `json:"data"`
}

// SubjectState is a data subject's state projected from the ledger.
type SubjectState struct {
	Registered       bool           `json:"registered"`
	Residence        string         `json:"residence,omitempty"`
	Age              *int           `json:"age,omitempty"`
	Erased           bool           `json:"erased"`
	ErasedCategories []string       `json:"erased_categories"`
	LastSeq          uint64         `json:"last_seq"`
	Consents         []ConsentState `json:"consents"`
	// StateSeq is the last record that could change what a policy sees of
	// the subject: LastSeq without the denials, which change nothing.
	StateSeq uint64 `json:"-"`
}

// ConsentState is one granted consent and what has been withdrawn of it.
type ConsentState struct {
	ConsentID      string     `json:"consent_id"`
	NoticeVersion  string     `json:"notice_version"`
	Purposes       []string   `json:"purposes"`
	Categories     []string   `json:"categories"`
	Destinations   []string   `json:"destinations"`
	Recipients     []string   `json:"recipients"`
	Cookies        []string   `json:"cookies"`
	Guardian       bool       `json:"guardian"`
	RisksInformed  bool       `json:"risks_informed"`
	GrantedAt      time.Time  `json:"granted_at"`
	Expires        *time.Time `json:"expires"`
	Withdrawn      bool       `json:"withdrawn"`
	WithdrawnAt    *time.Time `json:"withdrawn_at"`
	WithdrawnScope Scope      `json:"withdrawn_scope"`
}

// Scope lists what a scoped withdrawal took back.
type Scope struct {
	Purposes     []string `json:"purposes"`
	Destinations []string `json:"destinations"`
	Cookies      []string `json:"cookies"`
	Categories   []string `json:"categories"`
}

// Notices is the privacy-notice history known to the ledger.
type Notices struct {
	Current  string          `json:"current,omitempty"`
	Versions []NoticeVersion `json:"versions"`
}

// NoticeVersion is one published privacy notice.
type NoticeVersion struct {
	Version   string    `json:"version"`
	Effective time.Time `json:"effective"`
}

// Decision is a policy's verdict on one event, and Reason one of its
// reasons; they live in package decision, which the stored format imports
// without pulling in OPA.
type (
	Decision = decision.Decision
	Reason   = decision.Reason
)
