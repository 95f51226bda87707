package event

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
)

// SpecVersion is the only CloudEvents version accepted.
const SpecVersion = "1.0"

// The privacy event types of the event contract (docs/schemas/).
const (
	TypeSubjectRegistered = "privacy.subject.registered"
	TypeNoticePublished   = "privacy.notice.published"
	TypeConsentGranted    = "privacy.consent.granted"
	TypeConsentWithdrawn  = "privacy.consent.withdrawn"
	TypeDataCollected     = "privacy.data.collected"
	TypeDataUsed          = "privacy.data.used"
	TypeDataShared        = "privacy.data.shared"
	TypeDataTransferred   = "privacy.data.transferred"
	TypeRightsRequested   = "privacy.rights.requested"
	TypeRightsCompleted   = "privacy.rights.completed"
	TypeDataCorrected     = "privacy.data.corrected"
	TypeDataErased        = "privacy.data.erased"
)

// InternalPrefix starts every type that only Custos itself writes
// (custos.decision.denied, custos.policy.activated, custos.key.destroyed,
// custos.retention.expired); emitters may not send them.
const InternalPrefix = "custos."

// Event is one CloudEvents 1.0 event as emitted by a platform service.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	TraceParent     string    `json:"traceparent,omitempty"`
	TraceState      string    `json:"tracestate,omitempty"`
	Data            any       `json:"data"` // one of the *Data pointer types below, by Type
}

// SubjectRegistered is the data of privacy.subject.registered.
type SubjectRegistered struct {
	Residence string    `json:"residence"`
	BirthDate string    `json:"birth_date,omitempty"` // YYYY-MM-DD
	Age       *int      `json:"age,omitempty"`
	Guardian  *Guardian `json:"guardian,omitempty"`
}

// Guardian identifies the legal guardian who consents for a minor.
type Guardian struct {
	Ref      string `json:"ref"`
	Relation string `json:"relation"`
}

// NoticePublished is the data of privacy.notice.published.
type NoticePublished struct {
	Version   string    `json:"version"`
	Effective time.Time `json:"effective"`
	Changes   string    `json:"changes,omitempty"`
	// Controller is who the notice names as controller (personal
	// information handler), and Language the notice's language as a BCP 47
	// tag: consent records name both.
	Controller *Controller `json:"controller,omitempty"`
	Language   string      `json:"language,omitempty"`
}

// Controller is the organisation a privacy notice names as controller.
type Controller struct {
	Name    string `json:"name"`
	Contact string `json:"contact,omitempty"`
}

// ConsentGranted is the data of privacy.consent.granted.
type ConsentGranted struct {
	ConsentID     string     `json:"consent_id"`
	NoticeVersion string     `json:"notice_version"`
	Purposes      []string   `json:"purposes"`
	Categories    []string   `json:"categories"`
	Destinations  []string   `json:"destinations,omitempty"`
	Recipients    []string   `json:"recipients,omitempty"`
	Cookies       []string   `json:"cookies,omitempty"`
	Guardian      *Guardian  `json:"guardian,omitempty"`
	Method        string     `json:"method,omitempty"`
	Expires       *time.Time `json:"expires,omitempty"`
	// RisksInformed says the subject was told, before consenting, of the
	// risks of transfers to its destinations for want of an adequacy
	// decision and safeguards: what makes the consent a GDPR Art. 49(1)(a)
	// derogation.
	RisksInformed bool `json:"risks_informed,omitempty"`
}

// ConsentWithdrawn is the data of privacy.consent.withdrawn: a consent_id,
// or a scope of purposes, destinations, cookies and categories; neither
// means every consent the subject gave.
type ConsentWithdrawn struct {
	ConsentID    string   `json:"consent_id,omitempty"`
	Purposes     []string `json:"purposes,omitempty"`
	Destinations []string `json:"destinations,omitempty"`
	Cookies      []string `json:"cookies,omitempty"`
	Categories   []string `json:"categories,omitempty"`
}

// DataCollected is the data of privacy.data.collected. Fields holds the
// personal values themselves, each a JSON string, number or boolean.
type DataCollected struct {
	Categories    []string                   `json:"categories"`
	Purpose       string                     `json:"purpose"`
	StorageRegion string                     `json:"storage_region"`
	Retention     string                     `json:"retention"` // ISO 8601 duration
	Fields        map[string]json.RawMessage `json:"fields,omitempty"`
}

// DataUsed is the data of privacy.data.used.
type DataUsed struct {
	Categories []string `json:"categories"`
	Purpose    string   `json:"purpose"`
}

// DataShared is the data of privacy.data.shared.
type DataShared struct {
	Recipient     string   `json:"recipient"`
	RecipientKind string   `json:"recipient_kind"`
	Basis         string   `json:"basis"`
	Categories    []string `json:"categories"`
	Purpose       string   `json:"purpose"`
	Region        string   `json:"region"`
}

// DataTransferred is the data of privacy.data.transferred.
type DataTransferred struct {
	TransferID string   `json:"transfer_id"`
	Recipient  string   `json:"recipient"`
	FromRegion string   `json:"from_region"`
	ToRegion   string   `json:"to_region"`
	Categories []string `json:"categories"`
	Purpose    string   `json:"purpose"`
	Mechanism  string   `json:"mechanism,omitempty"`
	// AssessmentRef names the personal information protection impact
	// assessment the transfer rests on (PIPL articles 55 and 56).
	AssessmentRef string `json:"assessment_ref,omitempty"`
}

// RightsRequested is the data of privacy.rights.requested.
type RightsRequested struct {
	RequestID string `json:"request_id"`
	Right     string `json:"right"`
	Details   string `json:"details,omitempty"`
}

// RightsCompleted is the data of privacy.rights.completed.
type RightsCompleted struct {
	RequestID string `json:"request_id"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason,omitempty"`
}

// DataCorrected is the data of privacy.data.corrected.
type DataCorrected struct {
	Categories []string                   `json:"categories"`
	Fields     map[string]json.RawMessage `json:"fields,omitempty"`
}

// DataErased is the data of privacy.data.erased.
type DataErased struct {
	Scope  Scope  `json:"scope"`
	Reason string `json:"reason"`
}

// Scope is what an erasure covers: everything the subject has (All), or the
// listed categories. In JSON it is the string "all" or a non-empty array of
// categories.
type Scope struct {
	All        bool
	Categories []string
}

// scopeAll is the JSON spelling of Scope{All: true}.
const scopeAll = "all"

// MarshalJSON writes "all" or the category list.
func (s Scope) MarshalJSON() ([]byte, error) {
	if s.All {
		if s.Categories != nil {
			return nil, errors.New("event: scope is both all and a list of categories")
		}
		return json.Marshal(scopeAll)
	}
	if s.Categories == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(s.Categories)
}

// UnmarshalJSON reads "all" or an array of strings. It only checks the
// shape; Decode and Validate check the categories.
func (s *Scope) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		if str != scopeAll {
			return errors.New(`event: scope must be "all" or a list of categories`)
		}
		*s = Scope{All: true}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil || list == nil {
		return errors.New(`event: scope must be "all" or a list of categories`)
	}
	*s = Scope{Categories: list}
	return nil
}

// Types returns the twelve privacy.* event types an emitter may send, sorted.
func Types() []string {
	t := []string{
		TypeSubjectRegistered, TypeNoticePublished, TypeConsentGranted,
		TypeConsentWithdrawn, TypeDataCollected, TypeDataUsed, TypeDataShared,
		TypeDataTransferred, TypeRightsRequested, TypeRightsCompleted,
		TypeDataCorrected, TypeDataErased,
	}
	slices.Sort(t)
	return t
}

// IsType reports whether t is one of the twelve privacy.* types.
func IsType(t string) bool { return newPayload(t) != nil }

// IsInternalType reports whether t is one of Custos's own custos.* types,
// which emitters may not send.
func IsInternalType(t string) bool { return strings.HasPrefix(t, InternalPrefix) }

// NewData returns a new, empty data value of the Go type that goes with the
// event type t (e.g. *DataTransferred for privacy.data.transferred), or nil
// when t is not a privacy.* type. It lets readers of stored events decode
// data without their own type switch.
func NewData(t string) any {
	p := newPayload(t)
	if p == nil {
		return nil
	}
	return p
}

// newPayload is NewData typed for the decoder.
func newPayload(t string) payload {
	switch t {
	case TypeSubjectRegistered:
		return &SubjectRegistered{}
	case TypeNoticePublished:
		return &NoticePublished{}
	case TypeConsentGranted:
		return &ConsentGranted{}
	case TypeConsentWithdrawn:
		return &ConsentWithdrawn{}
	case TypeDataCollected:
		return &DataCollected{}
	case TypeDataUsed:
		return &DataUsed{}
	case TypeDataShared:
		return &DataShared{}
	case TypeDataTransferred:
		return &DataTransferred{}
	case TypeRightsRequested:
		return &RightsRequested{}
	case TypeRightsCompleted:
		return &RightsCompleted{}
	case TypeDataCorrected:
		return &DataCorrected{}
	case TypeDataErased:
		return &DataErased{}
	}
	return nil
}

// subjectless reports whether events of type t are about no data subject.
func subjectless(t string) bool { return t == TypeNoticePublished }
