package custos.decision_test

# --- the shape of the decision ----------------------------------------------

test_allowed_decision_shape if {
	d := decide(input_for("privacy.subject.registered", {"residence": "CN", "age": 30}, adult_subject))
	d == {"allow": true, "reasons": [], "obligations": []}
}

test_unknown_type_denied if {
	denied_only(input_for("privacy.data.sold", {}, adult_subject), "EVENT_TYPE_UNKNOWN")
}

test_missing_type_denied if {
	inp := object.remove(input_for("privacy.data.used", used({}), adult_subject), ["event"])
	denied_only(inp, "EVENT_TYPE_UNKNOWN")
}

test_reasons_sorted_by_code if {
	inp := input_for("privacy.data.transferred", object.remove(transferred({"to_region": "US"}), ["mechanism"]), adult([]))
	d := decide(inp)
	d.allow == false
	[r.code | some r in d.reasons] == ["DESTINATION_NOT_ALLOWED", "NO_SEPARATE_CONSENT", "NO_TRANSFER_MECHANISM"]
}

test_reasons_one_per_code if {
	c := consent({"categories": ["usage.behavior"]})
	inp := input_for("privacy.data.used", used({"categories": ["identity.contact", "usage.device"]}), adult([c]))
	d := decide(inp)
	count(d.reasons) == 1
	d.reasons[0].code == "CATEGORY_NOT_CONSENTED"
	d.reasons[0].message == "no consent covers category identity.contact for purpose service_provision; no consent covers category usage.device for purpose service_provision"
}

test_missing_now_is_policy_error if {
	inp := object.remove(input_for("privacy.subject.registered", {"residence": "CN"}, adult_subject), ["now"])
	denied_only(inp, "POLICY_ERROR")
}

test_lifecycle_types_allowed if {
	every t in {
		"privacy.subject.registered",
		"privacy.notice.published",
		"privacy.rights.requested",
		"privacy.rights.completed",
		"privacy.data.corrected",
		"privacy.data.erased",
		"privacy.consent.withdrawn",
	} {
		decide(input_for(t, {}, adult_subject)).allow == true
	}
}

test_system_types_allowed if {
	every t in {"custos.decision.denied", "custos.policy.activated", "custos.key.destroyed", "custos.retention.expired"} {
		decide(input_for(t, {}, object.union(adult_subject, {"erased": true}))).allow == true
	}
}

# --- erasure -----------------------------------------------------------------

erased := object.union(adult_subject, {"erased": true, "consents": [consent({})]})

test_erased_subject_denied if {
	every t in {
		"privacy.subject.registered",
		"privacy.consent.granted",
		"privacy.consent.withdrawn",
		"privacy.data.corrected",
		"privacy.data.erased",
		"privacy.rights.requested",
	} {
		"SUBJECT_ERASED" in codes(input_for(t, {"consent_id": "c-2", "notice_version": "2.0"}, erased))
	}
	denied_only(input_for("privacy.data.used", used({}), erased), "SUBJECT_ERASED")
}

test_erased_subject_rights_completed_allowed if {
	allowed(input_for("privacy.rights.completed", {"request_id": "r-1", "outcome": "fulfilled"}, erased))
}

# --- rights deadlines ----------------------------------------------------------

rights_obligation(residence, right) := o if {
	subject := object.union(adult_subject, {"residence": residence})
	d := decide(input_for("privacy.rights.requested", {"request_id": "r-1", "right": right}, subject))
	d.allow == true
	[o] := d.obligations
}

test_rights_deadline_pipl if {
	rights_obligation("CN", "access") == {"kind": "rights_deadline", "right": "access", "jurisdiction": "PIPL", "days": 15}
}

test_rights_deadline_gdpr if {
	rights_obligation("DE", "access") == {"kind": "rights_deadline", "right": "access", "jurisdiction": "GDPR", "days": 30}
}

test_rights_deadline_default_jurisdiction if {
	rights_obligation("US", "deletion").jurisdiction == "PIPL"
	d := decide(input_for("privacy.rights.requested", {"request_id": "r-1", "right": "access"}, object.remove(adult_subject, ["residence"])))
	d.obligations[0].jurisdiction == "PIPL"
}

test_rights_deadline_default_right if {
	rights_obligation("FR", "portability").days == 30
}

# --- settings fall back to the strictest value -----------------------------------

test_missing_settings_are_strict if {
	inp := input_for("privacy.data.collected", collected({}), adult([consent({})]))
	codes_with(inp, {}) == {"PURPOSE_NOT_ALLOWED", "DESTINATION_NOT_ALLOWED", "STORAGE_REGION_NOT_ALLOWED", "NO_SEPARATE_CONSENT"}
}

test_missing_settings_guardian_age if {
	inp := input_for("privacy.consent.granted", {"consent_id": "c-2", "notice_version": "2.0"}, minor([]))
	codes_with(inp, {}) == {"GUARDIAN_CONSENT_REQUIRED"}
}

test_settings_from_config if {
	config := object.union(settings, {"transfer_destinations": ["US"], "guardian_age": 16})
	inp := input_for("privacy.data.transferred", transferred({"to_region": "US"}), minor([sg_consent({"destinations": ["US"]})]))
	decide_with(inp, config).allow == true
}

test_missing_settings_transfer if {
	c := sg_consent({"cookies": ["cookie.session"]})
	inp := input_for("privacy.data.transferred", transferred({"categories": ["cookie.session"]}), adult([c]))
	codes_with(inp, {}) == {"PURPOSE_NOT_ALLOWED", "DESTINATION_NOT_ALLOWED", "NO_TRANSFER_MECHANISM"}
	allowed(inp)
}

test_missing_settings_exempt_purpose if {
	inp := input_for("privacy.data.used", used({"purpose": "security", "categories": ["cookie.session"]}), adult([]))
	codes_with(inp, {}) == {"PURPOSE_NOT_ALLOWED", "PURPOSE_NOT_CONSENTED", "COOKIE_CONSENT_REQUIRED"}
	allowed(inp)
}

# --- lists missing from the input -----------------------------------------------

test_missing_lists_in_input if {
	subject := object.union(adult_subject, {"consents": null})
	inp := object.remove(input_for("privacy.data.used", used({}), subject), ["notices"])
	denied_only(inp, "PURPOSE_NOT_CONSENTED")
	grant := object.remove(input_for("privacy.consent.granted", {"consent_id": "c-2", "notice_version": "7"}, subject), ["notices"])
	allowed(grant)
}
