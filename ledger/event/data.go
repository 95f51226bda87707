package event

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
)

// payload is implemented by the twelve *Data types. bindings lists the
// members in the contract's order; crossCheck checks what involves more than one
// member (or the envelope) once every member is known to be well formed.
type payload interface {
	bindings() []binding
	crossCheck(c *vctx) *FieldError
}

// binding ties one JSON member to one Go field. decode checks the JSON type
// and stores the value; check validates the stored value (it is all
// Validate has for events built in code); present tells a stored value
// from an absent one.
type binding struct {
	name     string
	required bool
	decode   func(n *node, path string) *FieldError
	present  func() bool
	check    func(path string, c *vctx) *FieldError
	// personal marks a member holding personal data: it is sealed under
	// the subject's key and erased with it (PersonalMembers).
	personal bool
	// members are the bindings of a member that is an object of known
	// members (a guardian, a controller); anyMember marks one whose members
	// are the sender's (fields).
	members   func() []binding
	anyMember bool
}

// personal marks b as a member holding personal data.
func personal(b binding) binding {
	b.personal = true
	return b
}

type strCheck func(s string, c *vctx) string

func str(name string, required bool, p *string, chk strCheck) binding {
	return binding{
		name:     name,
		required: required,
		decode: func(n *node, path string) *FieldError {
			if n.kind != jString {
				return fieldErr(path, "must be a string")
			}
			if n.str == "" {
				return fieldErr(path, "must not be empty")
			}
			*p = n.str
			return nil
		},
		present: func() bool { return *p != "" },
		check: func(path string, c *vctx) *FieldError {
			if m := chk(*p, c); m != "" {
				return fieldErr(path, m)
			}
			return nil
		},
	}
}

func list(name string, required bool, p *[]string, chk strCheck) binding {
	return binding{
		name:     name,
		required: required,
		decode: func(n *node, path string) *FieldError {
			if n.kind != jArray {
				return fieldErr(path, "must be an array of strings")
			}
			out := make([]string, 0, len(n.vals))
			for i, v := range n.vals {
				if v.kind != jString {
					return fieldErr(index(path, i), "must be a string")
				}
				out = append(out, v.str)
			}
			*p = out
			return nil
		},
		present: func() bool { return *p != nil },
		check:   func(path string, c *vctx) *FieldError { return checkList(*p, path, chk, c) },
	}
}

// checkList: non-empty, every entry valid and none twice.
func checkList(l []string, path string, chk strCheck, c *vctx) *FieldError {
	if len(l) == 0 {
		return fieldErr(path, "must not be empty")
	}
	seen := make(map[string]struct{}, len(l))
	for i, s := range l {
		if s == "" {
			return fieldErr(index(path, i), "must not be empty")
		}
		if m := chk(s, c); m != "" {
			return fieldErr(index(path, i), m)
		}
		if _, dup := seen[s]; dup {
			return fieldErr(index(path, i), "duplicate entry")
		}
		seen[s] = struct{}{}
	}
	return nil
}

func integer(name string, p **int, lo, hi int) binding {
	return binding{
		name: name,
		decode: func(n *node, path string) *FieldError {
			if n.kind != jNumber {
				return fieldErr(path, "must be an integer")
			}
			v, err := strconv.Atoi(n.str)
			if err != nil {
				return fieldErr(path, "must be an integer")
			}
			*p = &v
			return nil
		},
		present: func() bool { return *p != nil },
		check: func(path string, _ *vctx) *FieldError {
			if **p < lo || **p > hi {
				return fieldErr(path, "must be between "+strconv.Itoa(lo)+" and "+strconv.Itoa(hi))
			}
			return nil
		},
	}
}

func decodeTime(n *node, path string) (time.Time, *FieldError) {
	if n.kind != jString {
		return time.Time{}, fieldErr(path, "must be an RFC 3339 time string")
	}
	t, ok := parseTime(n.str)
	if !ok {
		return time.Time{}, fieldErr(path, "must be an RFC 3339 time")
	}
	return t, nil
}

func timestamp(name string, required bool, p *time.Time) binding {
	return binding{
		name:     name,
		required: required,
		decode: func(n *node, path string) (ferr *FieldError) {
			*p, ferr = decodeTime(n, path)
			return ferr
		},
		present: func() bool { return !p.IsZero() },
		check:   func(string, *vctx) *FieldError { return nil },
	}
}

func timestampPtr(name string, p **time.Time) binding {
	return binding{
		name: name,
		decode: func(n *node, path string) *FieldError {
			t, ferr := decodeTime(n, path)
			if ferr == nil {
				*p = &t
			}
			return ferr
		},
		present: func() bool { return *p != nil },
		check: func(path string, _ *vctx) *FieldError {
			if (*p).IsZero() {
				return fieldErr(path, "must be an RFC 3339 time")
			}
			return nil
		},
	}
}

func guardian(name string, p **Guardian) binding {
	return object(name, p, "must be an object with ref and relation")
}

// object binds a member that is an object of known members, strict like
// data, to *p, allocated when the member is present.
func object[T any, PT interface {
	*T
	bindings() []binding
}](name string, p *PT, shape string) binding {
	return binding{
		name: name,
		decode: func(n *node, path string) *FieldError {
			if n.kind != jObject {
				return fieldErr(path, shape)
			}
			*p = PT(new(T))
			return decodeMembers(n, path, (*p).bindings(), &vctx{}, unknownField)
		},
		present: func() bool { return *p != nil },
		check:   func(path string, c *vctx) *FieldError { return checkMembers(path, (*p).bindings(), c) },
		members: func() []binding { return PT(new(T)).bindings() },
	}
}

// bindings makes a guardian an object of its own, strict like data: a
// reference to the guardian in the emitting platform and their relation
// to the subject.
func (g *Guardian) bindings() []binding {
	return []binding{
		personal(str("ref", true, &g.Ref, idCheck)),
		str("relation", true, &g.Relation, term(IsGuardianRelation, "guardian relation ("+strings.Join(GuardianRelations(), ", ")+")")),
	}
}

func fields(name string, p *map[string]json.RawMessage) binding {
	return binding{
		name:      name,
		anyMember: true,
		decode: func(n *node, path string) *FieldError {
			if n.kind != jObject {
				return fieldErr(path, "must be an object of field names to values")
			}
			if len(n.keys) > MaxFields {
				return fieldErr(path, "must have at most "+strconv.Itoa(MaxFields)+" entries")
			}
			m := make(map[string]json.RawMessage, len(n.keys))
			for i, k := range n.keys {
				raw := rawScalar(n.vals[i])
				if ferr := checkFieldEntry(path, k, raw); ferr != nil {
					return ferr
				}
				m[k] = raw
			}
			*p = m
			return nil
		},
		present: func() bool { return *p != nil },
		check: func(path string, _ *vctx) *FieldError {
			m := *p
			if len(m) == 0 {
				return fieldErr(path, "must not be empty")
			}
			if len(m) > MaxFields {
				return fieldErr(path, "must have at most "+strconv.Itoa(MaxFields)+" entries")
			}
			names := make([]string, 0, len(m))
			for k := range m {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, k := range names {
				if ferr := checkFieldEntry(path, k, m[k]); ferr != nil {
					return ferr
				}
			}
			return nil
		},
	}
}

// checkFieldEntry checks one personal value. A name that breaks the
// pattern is not echoed: it might itself be a personal value.
func checkFieldEntry(path, name string, raw json.RawMessage) *FieldError {
	if !fieldName(name) {
		return fieldErr(path, "every field name must match ^[a-z][a-z0-9_]{0,63}$")
	}
	if m := checkFieldValue(raw); m != "" {
		return fieldErr(path+"."+name, m)
	}
	return nil
}

func scope(name string, p *Scope) binding {
	const shape = `must be "all" or a non-empty array of categories`
	return binding{
		name:     name,
		required: true,
		decode: func(n *node, path string) *FieldError {
			switch n.kind {
			case jString:
				if n.str != scopeAll {
					return fieldErr(path, shape)
				}
				*p = Scope{All: true}
				return nil
			case jArray:
				var l []string
				if ferr := list(name, true, &l, nil).decode(n, path); ferr != nil {
					return ferr
				}
				*p = Scope{Categories: l}
				return nil
			}
			return fieldErr(path, shape)
		},
		present: func() bool { return p.All || p.Categories != nil },
		check: func(path string, c *vctx) *FieldError {
			if p.All {
				if p.Categories != nil {
					return fieldErr(path, "cannot be both all and a list of categories")
				}
				return nil
			}
			return checkList(p.Categories, path, term(IsCategory, "data category"), c)
		},
	}
}

const unknownField = "unknown field"

// decodeMembers decodes an object's members in document order, checking
// each as it goes so the first bad member in the document is the one
// reported, then reports missing required members. Member names match
// case-sensitively: "Purpose" is a misspelling, not "purpose".
func decodeMembers(n *node, path string, bs []binding, c *vctx, unknown string) *FieldError {
	for i, k := range n.keys {
		child := join(path, k)
		j := slices.IndexFunc(bs, func(b binding) bool { return b.name == k })
		if j < 0 {
			if child == path {
				return fieldErr(path, unknown+" (its name is not shown: it is not a schema name)")
			}
			return fieldErr(child, unknown)
		}
		if ferr := bs[j].decode(n.vals[i], child); ferr != nil {
			return ferr
		}
		if ferr := bs[j].check(child, c); ferr != nil {
			return ferr
		}
	}
	for _, b := range bs {
		if b.required && !b.present() {
			return fieldErr(join(path, b.name), "required")
		}
	}
	return nil
}

// checkMembers validates stored values in the contract's order.
func checkMembers(path string, bs []binding, c *vctx) *FieldError {
	for _, b := range bs {
		child := join(path, b.name)
		if !b.present() {
			if b.required {
				return fieldErr(child, "required")
			}
			continue
		}
		if ferr := b.check(child, c); ferr != nil {
			return ferr
		}
	}
	return nil
}

func categories(p *[]string, required bool) binding {
	return list("categories", required, p, term(IsCategory, "data category"))
}

func purpose(p *string) binding {
	return str("purpose", true, p, term(IsPurpose, "purpose"))
}

func (d *SubjectRegistered) bindings() []binding {
	return []binding{
		str("residence", true, &d.Residence, checkRegion),
		personal(str("birth_date", false, &d.BirthDate, checkBirthDate)),
		integer("age", &d.Age, 0, maxAge),
		guardian("guardian", &d.Guardian),
	}
}

func (d *SubjectRegistered) crossCheck(*vctx) *FieldError {
	if d.BirthDate != "" && d.Age != nil {
		return fieldErr("data.age", "give birth_date or age, not both")
	}
	return nil
}

func (d *NoticePublished) bindings() []binding {
	return []binding{
		str("version", true, &d.Version, textCheck),
		timestamp("effective", true, &d.Effective),
		str("changes", false, &d.Changes, textCheck),
		controller("controller", &d.Controller),
		str("language", false, &d.Language, languageCheck),
	}
}

func controller(name string, p **Controller) binding {
	return object(name, p, "must be an object with name and contact")
}

func (c *Controller) bindings() []binding {
	return []binding{
		str("name", true, &c.Name, textCheck),
		str("contact", false, &c.Contact, textCheck),
	}
}

func (d *NoticePublished) crossCheck(*vctx) *FieldError { return nil }

func (d *ConsentGranted) bindings() []binding {
	return []binding{
		str("consent_id", true, &d.ConsentID, idCheck),
		str("notice_version", true, &d.NoticeVersion, textCheck),
		list("purposes", true, &d.Purposes, term(IsPurpose, "purpose")),
		categories(&d.Categories, true),
		list("destinations", false, &d.Destinations, checkRegion),
		list("recipients", false, &d.Recipients, textCheck),
		list("cookies", false, &d.Cookies, term(IsCookieClass, "cookie category (one of the cookie.* categories)")),
		guardian("guardian", &d.Guardian),
		str("method", false, &d.Method, term(IsConsentMethod, "consent method ("+strings.Join(ConsentMethods(), ", ")+")")),
		timestampPtr("expires", &d.Expires),
		flag("risks_informed", &d.RisksInformed),
	}
}

// flag binds an optional boolean member; false is its absence.
func flag(name string, p *bool) binding {
	return binding{
		name: name,
		decode: func(n *node, path string) *FieldError {
			if n.kind != jBool {
				return fieldErr(path, "must be true or false")
			}
			*p = n.b
			return nil
		},
		present: func() bool { return *p },
		check:   func(string, *vctx) *FieldError { return nil },
	}
}

func (d *ConsentGranted) crossCheck(c *vctx) *FieldError {
	if d.Expires != nil && !d.Expires.After(c.eventTime) {
		return fieldErr("data.expires", "must be after the event's time")
	}
	return nil
}

func (d *ConsentWithdrawn) bindings() []binding {
	return []binding{
		str("consent_id", false, &d.ConsentID, idCheck),
		list("purposes", false, &d.Purposes, term(IsPurpose, "purpose")),
		list("destinations", false, &d.Destinations, checkRegion),
		list("cookies", false, &d.Cookies, term(IsCookieClass, "cookie category (one of the cookie.* categories)")),
		categories(&d.Categories, false),
	}
}

// crossCheck refuses a consent_id together with a scope: the event contract (docs/schemas/) offers
// one or the other, and docs/policy-input.md gives each its own meaning
// (withdraw that consent / withdraw the scope from every consent), so a
// combination would be silently read as one of them.
func (d *ConsentWithdrawn) crossCheck(*vctx) *FieldError {
	if d.ConsentID == "" {
		return nil
	}
	for _, s := range []struct {
		name string
		l    []string
	}{{"purposes", d.Purposes}, {"destinations", d.Destinations}, {"cookies", d.Cookies}, {"categories", d.Categories}} {
		if s.l != nil {
			return fieldErr("data."+s.name, "a withdrawal names a consent_id or a scope, not both")
		}
	}
	return nil
}

func (d *DataCollected) bindings() []binding {
	return []binding{
		categories(&d.Categories, true),
		purpose(&d.Purpose),
		str("storage_region", true, &d.StorageRegion, checkRegion),
		str("retention", true, &d.Retention, checkRetention),
		personal(fields("fields", &d.Fields)),
	}
}

func (d *DataCollected) crossCheck(*vctx) *FieldError { return nil }

func (d *DataUsed) bindings() []binding {
	return []binding{categories(&d.Categories, true), purpose(&d.Purpose)}
}

func (d *DataUsed) crossCheck(*vctx) *FieldError { return nil }

func (d *DataShared) bindings() []binding {
	return []binding{
		str("recipient", true, &d.Recipient, textCheck),
		str("recipient_kind", true, &d.RecipientKind, term(IsRecipientKind, "recipient kind")),
		str("basis", true, &d.Basis, term(IsBasis, "sharing basis")),
		categories(&d.Categories, true),
		purpose(&d.Purpose),
		str("region", true, &d.Region, checkRegion),
	}
}

func (d *DataShared) crossCheck(*vctx) *FieldError { return nil }

func (d *DataTransferred) bindings() []binding {
	return []binding{
		str("transfer_id", true, &d.TransferID, idCheck),
		str("recipient", true, &d.Recipient, textCheck),
		str("from_region", true, &d.FromRegion, checkRegion),
		str("to_region", true, &d.ToRegion, checkRegion),
		categories(&d.Categories, true),
		purpose(&d.Purpose),
		str("mechanism", false, &d.Mechanism, term(IsMechanism, "transfer mechanism")),
		str("assessment_ref", false, &d.AssessmentRef, idCheck),
	}
}

func (d *DataTransferred) crossCheck(*vctx) *FieldError { return nil }

func (d *RightsRequested) bindings() []binding {
	return []binding{
		str("request_id", true, &d.RequestID, idCheck),
		str("right", true, &d.Right, term(IsRight, "right")),
		personal(str("details", false, &d.Details, textCheck)),
	}
}

func (d *RightsRequested) crossCheck(*vctx) *FieldError { return nil }

func (d *RightsCompleted) bindings() []binding {
	return []binding{
		str("request_id", true, &d.RequestID, idCheck),
		str("outcome", true, &d.Outcome, term(IsOutcome, "outcome")),
		personal(str("reason", false, &d.Reason, textCheck)),
	}
}

func (d *RightsCompleted) crossCheck(*vctx) *FieldError { return nil }

func (d *DataCorrected) bindings() []binding {
	return []binding{categories(&d.Categories, true), personal(fields("fields", &d.Fields))}
}

func (d *DataCorrected) crossCheck(*vctx) *FieldError { return nil }

func (d *DataErased) bindings() []binding {
	return []binding{
		scope("scope", &d.Scope),
		str("reason", true, &d.Reason, term(IsErasureReason, "erasure reason")),
	}
}

func (d *DataErased) crossCheck(*vctx) *FieldError { return nil }
