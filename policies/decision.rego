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
	type_known
	count(deny) == 0
} else := {"allow": false, "reasons": reasons, "obligations": []}

# An event is allowed only when its type is known and no deny rule fired.
allow := decision.allow

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
#
# Every setting but the guardian age (18 when missing) is a list, whose
# strictest value is the empty one. Rules read a setting where they use it, as
# object.get(data.custos.config, name, []), rather than through a rule or a
# function of its own: each rule or call a decision goes through costs it
# microseconds (docs/policies.md, "Keeping decisions fast").
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# The event and the subject.
# ---------------------------------------------------------------------------

# The types this policy decides: SPEC §2's privacy.* types, and Custos's own
# records, which emitters may not send and which record what already happened
# (a denial, an activation, a key destruction), so no rule below applies to
# them. Rules name the type they apply to as `input.event.type == "..."`, so
# that OPA's rule index skips the rules of other types without evaluating
# them; for the same reason each known type is a clause of its own.
#
# Note on negation: "not x in s" and "not f(x)" are undefined, not true, when x
# is undefined (the argument is evaluated outside the negation), so negated
# memberships of what may be missing go through a helper rule, or read it with
# object.get and a default.
type_known if input.event.type == "privacy.subject.registered"

type_known if input.event.type == "privacy.notice.published"

type_known if input.event.type == "privacy.consent.granted"

type_known if input.event.type == "privacy.consent.withdrawn"

type_known if input.event.type == "privacy.data.collected"

type_known if input.event.type == "privacy.data.used"

type_known if input.event.type == "privacy.data.shared"

type_known if input.event.type == "privacy.data.transferred"

type_known if input.event.type == "privacy.rights.requested"

type_known if input.event.type == "privacy.rights.completed"

type_known if input.event.type == "privacy.data.corrected"

type_known if input.event.type == "privacy.data.erased"

type_known if input.event.type == "custos.decision.denied"

type_known if input.event.type == "custos.policy.activated"

type_known if input.event.type == "custos.key.destroyed"

type_known if input.event.type == "custos.retention.expired"

event_data := input.event.data

now_ns := time.parse_rfc3339_ns(input.now)

# The subject is a minor when their age is known and below the guardian age;
# an unknown age is not treated as a minor (registration carries the age).
minor if {
	is_number(input.subject.age)
	input.subject.age < object.get(data.custos.config, "guardian_age", 18)
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
