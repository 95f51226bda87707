# METADATA
# title: Custos decision policy
# description: |
#   Decides every event before Custos appends it (SPEC §3). The input is
#   described in docs/policy-input.md; the tunable facts are data under
#   data.custos.config (policies/data/custos/config/data.json); every rule and
#   reason code is documented in docs/policies.md.
package custos.decision

# ---------------------------------------------------------------------------
# The decision: query data.custos.decision.decision.
# ---------------------------------------------------------------------------

decision := {"allow": true, "reasons": [], "obligations": sort(obligation)} if {
	allow
} else := {"allow": false, "reasons": reasons, "obligations": []}

default allow := false

# An event is allowed only when its type is known and no deny rule fired.
allow if {
	type_known
	count(deny) == 0
}

# One reason per code, sorted by code; the messages of a code are joined.
reasons := [r |
	some code in sort({d.code | some d in deny})
	r := {
		"code": code,
		"message": concat("; ", sort({d.message | some d in deny; d.code == code})),
	}
]

reason(code, message) := {"code": code, "message": message}

# ---------------------------------------------------------------------------
# Settings: data.custos.config, with the strictest value when one is missing.
# ---------------------------------------------------------------------------

default storage_regions := []

storage_regions := data.custos.config.storage_regions

default transfer_destinations := []

transfer_destinations := data.custos.config.transfer_destinations

default transfer_mechanisms := []

transfer_mechanisms := data.custos.config.transfer_mechanisms

default guardian_age := 18

guardian_age := data.custos.config.guardian_age

default allowed_purposes := []

allowed_purposes := data.custos.config.allowed_purposes

default consent_exempt_purposes := []

consent_exempt_purposes := data.custos.config.consent_exempt_purposes

default necessary_cookies := []

necessary_cookies := data.custos.config.necessary_cookies

default reconsent_required := []

reconsent_required := data.custos.config.notices.reconsent_required

# ---------------------------------------------------------------------------
# The event and the subject.
# ---------------------------------------------------------------------------

# The types this policy decides: SPEC §2's privacy.* types, and Custos's own
# records, which emitters may not send and which record what already happened
# (a denial, an activation, a key destruction), so no rule below applies to
# them. Rules name the type they apply to as `input.event.type == "..."`, so
# that OPA's rule index skips the rules of other types without evaluating
# them; the sets are literals for the same reason.
#
# Note on negation: "not x in s" and "not f(x)" are undefined, not true, when x
# is undefined (the argument is evaluated outside the negation), so negated
# memberships of what may be missing go through helper rules like these.
type_known if input.event.type in {
	"privacy.subject.registered",
	"privacy.notice.published",
	"privacy.consent.granted",
	"privacy.consent.withdrawn",
	"privacy.data.collected",
	"privacy.data.used",
	"privacy.data.shared",
	"privacy.data.transferred",
	"privacy.rights.requested",
	"privacy.rights.completed",
	"privacy.data.corrected",
	"privacy.data.erased",
	"custos.decision.denied",
	"custos.policy.activated",
	"custos.key.destroyed",
	"custos.retention.expired",
}

event_data := input.event.data

now_ns := time.parse_rfc3339_ns(input.now)

# The subject is a minor when their age is known and below the guardian age;
# an unknown age is not treated as a minor (registration carries the age).
minor if {
	is_number(input.subject.age)
	input.subject.age < guardian_age
}

# ---------------------------------------------------------------------------
# Rules that apply to every event.
# ---------------------------------------------------------------------------

deny contains reason("EVENT_TYPE_UNKNOWN", "the event type is not one this policy decides") if {
	not type_known
}

deny contains reason("POLICY_ERROR", "input.now is missing or not an RFC 3339 time") if {
	not now_ns
}

# After erasure nothing more may be recorded about the subject, except the
# completion of a rights request, so the deletion request that caused the
# erasure can be closed.
erasure_exempt if input.event.type == "privacy.rights.completed"

erasure_exempt if startswith(input.event.type, "custos.")

deny contains reason("SUBJECT_ERASED", "the data subject has been erased") if {
	input.subject.erased == true
	not erasure_exempt
}

# ---------------------------------------------------------------------------
# Obligations of an allowed event.
# ---------------------------------------------------------------------------

# A rights request must be answered within the deadline of the subject's
# jurisdiction (data.custos.config.rights).
obligation contains o if {
	input.event.type == "privacy.rights.requested"
	right := event_data.right
	jurisdiction := rights_jurisdiction
	days := rights_deadline_days(jurisdiction, right)
	o := {"kind": "rights_deadline", "right": right, "jurisdiction": jurisdiction, "days": days}
}

rights_jurisdiction := j if {
	j := data.custos.config.rights.jurisdiction_by_residence[input.subject.residence]
} else := data.custos.config.rights.default_jurisdiction

rights_deadline_days(jurisdiction, right) := data.custos.config.rights.deadline_days[jurisdiction][right]

rights_deadline_days(jurisdiction, right) := data.custos.config.rights.deadline_days[jurisdiction].default if {
	not data.custos.config.rights.deadline_days[jurisdiction][right]
}
