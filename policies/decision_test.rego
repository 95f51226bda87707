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

# --- settings that are missing or malformed fail closed ------------------------

# OPA's with cannot remove a document, so false stands in for missing settings
# here; the Go tests load the set without data, as plain OPA does.
test_missing_settings_deny_everything if {
	every type in ["privacy.data.transferred", "privacy.data.collected", "privacy.consent.granted", "privacy.subject.registered"] {
		d := data.custos.decision.decision with input as input_for(type, transferred({"to_region": "US"}), adult([sg_consent({"destinations": ["US"]})]))
			with data.custos.config as false
		d.allow == false
		{r.code | some r in d.reasons} == {"CONFIG_MISSING"}
	}
}

test_settings_not_an_object if {
	inp := input_for("privacy.data.transferred", transferred({}), adult([sg_consent({})]))
	codes_with(inp, ["CN"]) == {"CONFIG_INVALID"}
	codes_with(inp, null) == {"CONFIG_INVALID"}
	codes_with(inp, {}) == {"CONFIG_INVALID"}
}

test_setting_of_wrong_type if {
	inp := input_for("privacy.data.collected", collected({}), adult([consent({})]))
	every change in [
		{"storage_regions": "CN"},
		{"transfer_destinations": [1]},
		{"guardian_age": "18"},
		{"require_assessment_ref": "no"},
		{"allowed_purposes": null},
		{"notices": {"reconsent_required": "2.0"}},
		{"gdpr": {"adequate_destinations": "JP"}},
		{"rights": object.union(settings.rights, {"default_jurisdiction": 1})},
		{"rights": object.union(settings.rights, {"jurisdiction_by_residence": {"DE": 1}})},
		{"rights": object.union(settings.rights, {"deadline_days": {"PIPL": {"default": "15"}}})},
		{"rights": object.union(settings.rights, {"deadline_days": []})},
		{"lawful_bases": {"default": "because", "purposes": {}}},
		{"lawful_bases": {"default": "consent", "purposes": []}},
		{"lawful_bases": {"default": "consent", "purposes": {"security": {"default": "whim"}}}},
		{"lawful_bases": {"default": "consent", "purposes": {"security": {"categories": {"usage.device": "whim"}}}}},
	] {
		d := decide_with(inp, object.union(settings, change))
		d.allow == false
		{r.code | some r in d.reasons} == {"CONFIG_INVALID"}
	}
}

test_setting_problem_named if {
	inp := input_for("privacy.data.collected", collected({}), adult([consent({})]))
	d := decide_with(inp, object.remove(settings, ["guardian_age"]))
	d.reasons == [{"code": "CONFIG_INVALID", "message": "setting guardian_age must be a number"}]
}

test_settings_from_config if {
	config := object.union(settings, {"transfer_destinations": ["US"], "guardian_age": 16})
	inp := input_for("privacy.data.transferred", transferred({"to_region": "US"}), minor([sg_consent({"destinations": ["US"]})]))
	decide_with(inp, config).allow == true
}

# --- lists missing from the input -----------------------------------------------

test_missing_lists_in_input if {
	subject := object.union(adult_subject, {"consents": null})
	inp := object.remove(input_for("privacy.data.used", used({}), subject), ["notices"])
	denied_only(inp, "PURPOSE_NOT_CONSENTED")
	grant := object.remove(input_for("privacy.consent.granted", {"consent_id": "c-2", "notice_version": "7"}, subject), ["notices"])
	allowed(grant)
}
