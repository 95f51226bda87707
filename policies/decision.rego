# METADATA
# title: Custos decision policy
# description: |
#   Decides every event before Custos appends it (docs/policies.md). The input is
#   described in docs/policy-input.md; the tunable facts are data under
#   data.custos.config (policies/data/custos/config/data.json); every rule and
#   reason code is documented in docs/policies.md.
package custos.decision

# ---------------------------------------------------------------------------
# The decision: query data.custos.decision.decision.
# ---------------------------------------------------------------------------

# Broken settings decide alone: what the other rules would say with them means
# nothing.
decision := {"allow": false, "reasons": reasons_of(config_deny), "obligations": []} if {
	count(config_deny) > 0
} else := decision_unchecked

# The decision once the settings are known to be valid. The settings are data,
# fixed for a loaded set, so Custos checks config_deny once when it loads the
# set (refusing it if any) and then queries this rule for every event, sparing
# each decision the checks (docs/policies.md, "Settings"). Any other caller
# queries decision.
decision_unchecked := allowed_decision if {
	type_known
	count(deny) == 0
} else := {"allow": false, "reasons": reasons_of(deny), "obligations": []}

# An allowed decision states what made a processing event lawful: its basis
# and, for a GDPR Chapter V transfer, its transfer ground.
allowed_decision := {"allow": true, "reasons": [], "obligations": sort(obligation), "basis": b, "transfer_ground": g} if {
	b := event_basis
	g := transfer_ground
} else := {"allow": true, "reasons": [], "obligations": sort(obligation), "basis": b} if {
	b := event_basis
} else := {"allow": true, "reasons": [], "obligations": sort(obligation)}

# An event is allowed only when its type is known and no deny rule fired.
allow := decision.allow

# One reason per code, sorted by code; the messages of a code are joined.
reasons_of(denials) := [r |
	some code in sort({d.code | some d in denials})
	r := {
		"code": code,
		"message": concat("; ", sort({d.message | some d in denials; d.code == code})),
	}
]

reason(code, message) := {"code": code, "message": message}

# ---------------------------------------------------------------------------
# Settings: data.custos.config (docs/policies.md, "Settings").
#
# The rules fail closed on their own, whoever loads them: with the settings
# missing, not an object, or with a setting missing or of the wrong type,
# every event is denied with CONFIG_MISSING or CONFIG_INVALID. Rules read a
# setting where they use it, as object.get(data.custos.config, name,
# strictest), rather than through a rule or a function of its own: each rule
# or call a decision goes through costs it microseconds (docs/policies.md,
# "Keeping decisions fast").
# ---------------------------------------------------------------------------

config_deny contains reason("CONFIG_MISSING", "the policy settings data.custos.config are missing") if {
	not config_present
}

config_present if data.custos.config

config_deny contains reason("CONFIG_INVALID", problem) if {
	config_present
	some problem in config_problems
}

config_problems contains "data.custos.config is not an object" if {
	not is_object(data.custos.config)
}

# The settings when they are an object; the checks below read them through it
# so that settings of another type give only the problem above.
config_object := data.custos.config if is_object(data.custos.config)

string_list_settings := [
	"storage_regions", "transfer_destinations", "transfer_mechanisms",
	"allowed_purposes", "necessary_cookies",
]

config_problems contains sprintf("setting %s must be a list of strings", [name]) if {
	some name in string_list_settings
	not string_list(object.get(config_object, name, null))
}

string_list(v) if {
	is_array(v)
	every x in v {
		is_string(x)
	}
}

config_problems contains "setting guardian_age must be a number" if {
	not is_number(object.get(config_object, "guardian_age", null))
}

config_problems contains "setting notices.reconsent_required must be a list of strings" if {
	not string_list(object.get(config_object, ["notices", "reconsent_required"], null))
}

config_problems contains "setting require_assessment_ref must be true or false" if {
	not is_boolean(object.get(config_object, "require_assessment_ref", null))
}

config_problems contains sprintf("setting gdpr.%s must be a list of strings", [name]) if {
	some name in ["adequate_destinations", "transfer_mechanisms"]
	not string_list(object.get(config_object, ["gdpr", name], null))
}

config_problems contains "setting rights.default_jurisdiction must be a string" if {
	not is_string(object.get(config_object, ["rights", "default_jurisdiction"], null))
}

config_problems contains "setting rights.jurisdiction_by_residence must be an object of strings" if {
	not string_object(object.get(config_object, ["rights", "jurisdiction_by_residence"], null))
}

string_object(v) if {
	is_object(v)
	every x in v {
		is_string(x)
	}
}

config_problems contains sprintf("setting rights.deadline_days.%s must be an object of numbers with a default", [j]) if {
	some j, days in object.get(config_object, ["rights", "deadline_days"], {})
	not number_object_with_default(days)
}

config_problems contains "setting rights.deadline_days must be an object" if {
	not is_object(object.get(config_object, ["rights", "deadline_days"], null))
}

number_object_with_default(v) if {
	is_object(v)
	is_number(v["default"])
	every x in v {
		is_number(x)
	}
}

# The lawful bases PIPL art. 13 and GDPR art. 6 give, as docs/policies.md
# names them.
lawful_bases := {
	"consent", "contract", "legal_obligation", "vital_interests",
	"public_interest", "publicly_disclosed", "legitimate_interests",
}

config_problems contains "setting lawful_bases.default must be a lawful basis" if {
	not object.get(config_object, ["lawful_bases", "default"], null) in lawful_bases
}

config_problems contains "setting lawful_bases.purposes must be an object" if {
	not is_object(object.get(config_object, ["lawful_bases", "purposes"], null))
}

config_problems contains sprintf("setting lawful_bases.purposes.%s must be an object whose default and categories name lawful bases", [p]) if {
	some p, entry in object.get(config_object, ["lawful_bases", "purposes"], {})
	not basis_entry(entry)
}

basis_entry(entry) if {
	is_object(entry)
	object.get(entry, "default", "consent") in lawful_bases
	categories := object.get(entry, "categories", {})
	is_object(categories)
	every b in categories {
		b in lawful_bases
	}
}

# ---------------------------------------------------------------------------
# The event and the subject.
# ---------------------------------------------------------------------------

# The types this policy decides: the contract's privacy.* types, and Custos's own
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
