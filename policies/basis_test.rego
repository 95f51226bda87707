package custos.decision_test

# --- lawful bases --------------------------------------------------------------

test_contract_basis_needs_no_consent if {
	d := decide(input_for("privacy.data.collected", collected({"categories": ["identity.account", "usage.diagnostic"]}), adult([])))
	d == {"allow": true, "reasons": [], "obligations": [], "basis": "contract"}
}

test_consent_basis_category_needs_consent if {
	inp := input_for("privacy.data.collected", collected({"categories": ["identity.account", "identity.contact"]}), adult([]))
	denied_only(inp, "PURPOSE_NOT_CONSENTED")
}

test_purpose_default_basis if {
	d := decide(input_for("privacy.data.used", used({"purpose": "legal_compliance", "categories": ["identity.basic"]}), adult([])))
	d.allow == true
	d.basis == "legal_obligation"
}

test_table_default_basis if {
	config := object.union(settings, {"lawful_bases": {"default": "contract", "purposes": {}}})
	d := decide_with(input_for("privacy.data.used", used({"purpose": "notifications"}), adult([])), config)
	d.allow == true
	d.basis == "contract"
}

test_mixed_bases_reported_in_order if {
	config := object.union(settings, {"lawful_bases": {"default": "consent", "purposes": {"security": {"default": "contract", "categories": {"usage.network": "legal_obligation"}}}}})
	d := decide_with(input_for("privacy.data.used", used({"purpose": "security", "categories": ["usage.device", "usage.network"]}), adult([])), config)
	d.basis == "legal_obligation"
}

test_necessary_cookies_rest_on_contract if {
	d := decide(input_for("privacy.data.collected", collected({"categories": ["cookie.session", "cookie.security"]}), adult([])))
	d.allow == true
	d.basis == "contract"
}

test_other_cookies_rest_on_consent if {
	every k in ["cookie.preference", "cookie.analytics"] {
		denied_only(input_for("privacy.data.collected", collected({"categories": [k], "purpose": "security"}), adult([])), "COOKIE_CONSENT_REQUIRED")
	}
	d := decide(input_for("privacy.data.collected", collected({"categories": ["cookie.analytics"], "purpose": "security"}), adult([consent({"cookies": ["cookie.analytics"]})])))
	d.allow == true
	d.basis == "consent"
}

test_event_without_categories_needs_consent if {
	inp := input_for("privacy.data.used", used({"categories": [], "purpose": "security"}), adult([]))
	denied_only(inp, "PURPOSE_NOT_CONSENTED")
}

test_sharing_states_its_ground if {
	every basis, want in {"service_provider": "contract", "legal_obligation": "legal_obligation", "anonymized": "anonymized"} {
		kind := {"service_provider": "service_provider", "legal_obligation": "authority", "anonymized": "third_party"}[basis]
		d := decide(input_for("privacy.data.shared", shared({"basis": basis, "recipient_kind": kind}), adult([])))
		d.allow == true
		d.basis == want
	}
}

test_basis_not_available_under_the_law if {
	config := object.union(settings, {"lawful_bases": {"default": "legitimate_interests", "purposes": {}}})
	inp := input_for("privacy.data.used", used({"purpose": "notifications"}), adult([]))
	codes_with(inp, config) == {"BASIS_NOT_AVAILABLE"}
	eea := object.union(adult_subject, {"residence": "DE"})
	decide_with(input_for("privacy.data.used", used({"purpose": "notifications"}), eea), config).basis == "legitimate_interests"
}

# --- minors --------------------------------------------------------------------

test_minor_contract_collection_needs_guardian if {
	inp := input_for("privacy.data.collected", collected({"categories": ["identity.account"]}), minor([]))
	denied_only(inp, "GUARDIAN_CONSENT_REQUIRED")
	allowed(input_for("privacy.data.collected", collected({"categories": ["identity.account"]}), minor([consent({"guardian": true})])))
}

test_minor_use_and_transfer_need_guardian if {
	denied_only(input_for("privacy.data.used", used({"purpose": "security"}), minor([])), "GUARDIAN_CONSENT_REQUIRED")
	inp := input_for("privacy.data.transferred", transferred({}), minor([sg_consent({})]))
	denied_only(inp, "GUARDIAN_CONSENT_REQUIRED")
}

test_minor_anonymized_sharing_needs_no_guardian if {
	allowed(input_for("privacy.data.shared", shared({"basis": "anonymized"}), minor([])))
}

# --- PIPL impact assessment references --------------------------------------------

test_assessment_ref_required_when_set if {
	config := object.union(settings, {"require_assessment_ref": true})
	inp := input_for("privacy.data.transferred", transferred({}), adult([sg_consent({})]))
	codes_with(inp, config) == {"ASSESSMENT_REF_REQUIRED"}
	with_ref := input_for("privacy.data.transferred", transferred({"assessment_ref": "PIA-2026-07"}), adult([sg_consent({})]))
	decide_with(with_ref, config).allow == true
	allowed(inp)
}

# --- GDPR Chapter V --------------------------------------------------------------

eea_subject(consents) := object.union(adult_subject, {"residence": "DE", "consents": consents})

eea_transfer(overrides) := transferred(object.union(
	{"from_region": "DE", "to_region": "JP", "recipient": "acme-jp", "categories": ["identity.account"], "mechanism": null},
	overrides,
))

test_gdpr_adequacy if {
	d := decide(input_for("privacy.data.transferred", eea_transfer({}), eea_subject([])))
	d == {
		"allow": true, "reasons": [], "basis": "contract", "transfer_ground": "adequacy_decision",
		"obligations": [{"kind": "record_transfer_register", "destination": "JP"}],
	}
}

test_gdpr_safeguards if {
	every m in settings.gdpr.transfer_mechanisms {
		d := decide(input_for("privacy.data.transferred", eea_transfer({"to_region": "US", "mechanism": m}), eea_subject([])))
		d.allow == true
		d.transfer_ground == "appropriate_safeguards"
	}
}

test_gdpr_no_ground if {
	inp := input_for("privacy.data.transferred", eea_transfer({"to_region": "US", "mechanism": "standard_contract"}), eea_subject([]))
	denied_only(inp, "NO_TRANSFER_GROUND")
}

test_gdpr_explicit_consent if {
	c := consent({"destinations": ["US"], "recipients": ["acme-jp"], "categories": ["identity.account"], "risks_informed": true})
	d := decide(input_for("privacy.data.transferred", eea_transfer({"to_region": "US"}), eea_subject([c])))
	d.allow == true
	d.transfer_ground == "explicit_consent"
	d.basis == "consent"
	uninformed := object.union(c, {"risks_informed": false})
	denied_only(input_for("privacy.data.transferred", eea_transfer({"to_region": "US"}), eea_subject([uninformed])), "NO_TRANSFER_GROUND")
	inp := input_for("privacy.data.transferred", eea_transfer({"to_region": "US"}), eea_subject([consent(object.union(withdrawn, {"destinations": ["US"], "risks_informed": true}))]))
	denied_only(inp, "NO_TRANSFER_GROUND")
}

test_gdpr_inside_the_eea if {
	d := decide(input_for("privacy.data.transferred", eea_transfer({"to_region": "FR"}), eea_subject([])))
	d == {"allow": true, "reasons": [], "obligations": [], "basis": "contract"}
}

test_gdpr_transfer_still_needs_its_basis if {
	inp := input_for("privacy.data.transferred", eea_transfer({"categories": ["identity.contact"]}), eea_subject([]))
	denied_only(inp, "PURPOSE_NOT_CONSENTED")
}
