package event

import (
	"slices"
	"strings"
)

// The vocabulary of the event contract (docs/schemas/), taken from the first
// user's privacy policy. docs/vocabulary.md maps every term to the W3C Data
// Privacy Vocabulary and names the policy clause it comes from. Each
// list is returned fresh so callers cannot change what the predicates see.

// Categories returns the personal-data categories (policy §1), sorted.
func Categories() []string {
	return sorted(
		"identity.basic", "identity.contact", "identity.account", "identity.voluntary",
		"usage.device", "usage.network", "usage.behavior", "usage.diagnostic",
		"cookie.session", "cookie.preference", "cookie.security", "cookie.analytics",
	)
}

// CookieClasses returns the cookie.* categories (policy §1(3)), sorted: the
// only terms a consent's or a withdrawal's cookies list may hold.
func CookieClasses() []string {
	var c []string
	for _, s := range Categories() {
		if strings.HasPrefix(s, "cookie.") {
			c = append(c, s)
		}
	}
	return c
}

// Purposes returns the purposes of use (policy §2), sorted.
func Purposes() []string {
	return sorted(
		"service_provision", "service_improvement", "notifications",
		"interactive_features", "customer_support", "security", "legal_compliance",
	)
}

// RecipientKinds returns the kinds of recipient data may be shared with
// (policy §4), sorted.
func RecipientKinds() []string {
	return sorted("affiliate", "service_provider", "third_party", "authority")
}

// Bases returns the grounds on which data may be shared (policy §4(2)),
// sorted.
func Bases() []string {
	return sorted("consent", "service_provider", "legal_obligation", "anonymized")
}

// Mechanisms returns the lawful cross-border transfer mechanisms, sorted:
// PIPL article 38's three, and the GDPR's appropriate safeguards (article 46)
// a transfer can name.
func Mechanisms() []string {
	return sorted("security_assessment", "standard_contract", "certification",
		"standard_contractual_clauses", "binding_corporate_rules")
}

// GuardianRelations returns how a guardian may be related to a minor
// (policy §7), sorted. A closed list, so that the member, which is stored
// in clear, can hold no personal data.
func GuardianRelations() []string {
	return sorted("mother", "father", "parent", "legal_guardian", "other")
}

// ConsentMethods returns the channels a consent may be given through,
// sorted. A closed list for the same reason.
func ConsentMethods() []string {
	return sorted("web_form", "mobile_app", "in_person", "paper", "email", "phone", "api", "other")
}

// IsGuardianRelation reports whether s is a guardian relation.
func IsGuardianRelation(s string) bool { return slices.Contains(GuardianRelations(), s) }

// IsConsentMethod reports whether s is a consent method.
func IsConsentMethod(s string) bool { return slices.Contains(ConsentMethods(), s) }

// PersonalMembers returns the members of an event of type typ that hold
// personal data, as its bindings mark them (personal in data.go): they are
// sealed under the subject's key and erased with it, and the ledger keeps
// only a keyed commitment to each (docs/keys.md). A path "a.b" is member b
// of object a; "a.*" is every member of object a; "tracestate" is the
// CloudEvents attribute, sealed on every event about a data subject because
// its vendor values are opaque. Every other member is a closed vocabulary
// term, a region, a time, an identifier the platform chose, or text of an
// event about no subject (a notice).
func PersonalMembers(typ string) []string {
	var out []string
	if p := newPayload(typ); p != nil {
		out = memberPaths("", p.bindings(), true)
	}
	return append(out, "tracestate")
}

// Members returns every member path of the data of an event of type typ,
// the members of nested objects included, as PersonalMembers spells them.
func Members(typ string) []string {
	p := newPayload(typ)
	if p == nil {
		return nil
	}
	return memberPaths("", p.bindings(), false)
}

func memberPaths(prefix string, bs []binding, personalOnly bool) []string {
	var out []string
	for _, b := range bs {
		path := prefix + b.name
		switch {
		case b.members != nil && !b.personal:
			out = append(out, memberPaths(path+".", b.members(), personalOnly)...)
		case personalOnly && !b.personal:
		case b.anyMember:
			out = append(out, path+".*")
		default:
			out = append(out, path)
		}
	}
	return out
}

// Rights returns the data-subject rights (policy §5), sorted.
func Rights() []string {
	return sorted("access", "correction", "deletion", "withdrawal", "portability", "complaint")
}

// Outcomes returns how a rights request can end, sorted.
func Outcomes() []string { return sorted("fulfilled", "rejected") }

// ErasureReasons returns why data may be erased, sorted.
func ErasureReasons() []string { return sorted("request", "retention", "withdrawal") }

// IsCategory reports whether s is a personal-data category.
func IsCategory(s string) bool { return slices.Contains(Categories(), s) }

// IsCookieClass reports whether s is one of the cookie.* categories.
func IsCookieClass(s string) bool { return strings.HasPrefix(s, "cookie.") && IsCategory(s) }

// IsPurpose reports whether s is a purpose of use.
func IsPurpose(s string) bool { return slices.Contains(Purposes(), s) }

// IsRecipientKind reports whether s is a kind of recipient.
func IsRecipientKind(s string) bool { return slices.Contains(RecipientKinds(), s) }

// IsBasis reports whether s is a ground for sharing.
func IsBasis(s string) bool { return slices.Contains(Bases(), s) }

// IsMechanism reports whether s is a cross-border transfer mechanism.
func IsMechanism(s string) bool { return slices.Contains(Mechanisms(), s) }

// IsRight reports whether s is a data-subject right.
func IsRight(s string) bool { return slices.Contains(Rights(), s) }

// IsOutcome reports whether s is an outcome of a rights request.
func IsOutcome(s string) bool { return slices.Contains(Outcomes(), s) }

// IsErasureReason reports whether s is a reason for erasure.
func IsErasureReason(s string) bool { return slices.Contains(ErasureReasons(), s) }

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
