package custos.decision_test

# --- privacy.data.collected ------------------------------------------------------

test_collected_with_consent_allowed if {
	d := decide(input_for("privacy.data.collected", collected({}), adult([consent({})])))
	d == {"allow": true, "reasons": [], "obligations": [], "basis": "consent"}
}

test_collected_without_consent_denied if {
	denied_only(input_for("privacy.data.collected", collected({}), adult([])), "PURPOSE_NOT_CONSENTED")
}

test_collected_purpose_not_allowed if {
	config := object.union(settings, {"allowed_purposes": ["service_provision"]})
	inp := input_for("privacy.data.collected", collected({"purpose": "customer_support"}), adult([consent({"purposes": ["customer_support"]})]))
	codes_with(inp, config) == {"PURPOSE_NOT_ALLOWED"}
	decide(inp).allow == true
}

test_collected_missing_purpose_not_allowed if {
	inp := input_for("privacy.data.collected", object.remove(collected({}), ["purpose"]), adult([consent({})]))
	codes(inp) == {"PURPOSE_NOT_ALLOWED", "PURPOSE_NOT_CONSENTED"}
}

test_collected_exempt_purpose_allowed if {
	allowed(input_for("privacy.data.collected", collected({"purpose": "security", "categories": ["usage.network"]}), adult([])))
}

test_collected_stored_abroad_with_separate_consent if {
	inp := input_for("privacy.data.collected", collected({"storage_region": "SG"}), adult([consent({"destinations": ["SG"]})]))
	d := decide(inp)
	d.allow == true
	d.obligations == [{"kind": "record_transfer_register", "destination": "SG"}]
}

test_collected_stored_abroad_without_separate_consent if {
	inp := input_for("privacy.data.collected", collected({"storage_region": "SG"}), adult([consent({})]))
	denied_only(inp, "NO_SEPARATE_CONSENT")
}

test_collected_stored_in_refused_region if {
	inp := input_for("privacy.data.collected", collected({"storage_region": "US"}), adult([consent({"destinations": ["US"]})]))
	codes(inp) == {"DESTINATION_NOT_ALLOWED", "STORAGE_REGION_NOT_ALLOWED"}
}

test_collected_minor_with_guardian_consent if {
	allowed(input_for("privacy.data.collected", collected({}), minor([consent({"guardian": true})])))
}

test_collected_minor_without_guardian_consent if {
	denied_only(input_for("privacy.data.collected", collected({}), minor([consent({})])), "GUARDIAN_CONSENT_REQUIRED")
}

test_collected_minor_exempt_purpose_needs_guardian if {
	inp := input_for("privacy.data.collected", collected({"purpose": "security"}), minor([]))
	denied_only(inp, "GUARDIAN_CONSENT_REQUIRED")
	c := consent({"guardian": true, "purposes": ["notifications"]})
	allowed(input_for("privacy.data.collected", collected({"purpose": "security"}), minor([c])))
}

test_collected_minor_withdrawn_guardian_consent if {
	inp := input_for("privacy.data.collected", collected({"purpose": "security"}), minor([consent(object.union(withdrawn, {"guardian": true}))]))
	denied_only(inp, "GUARDIAN_CONSENT_REQUIRED")
}

# --- privacy.data.shared ------------------------------------------------------------

test_shared_on_consent_allowed if {
	allowed(input_for("privacy.data.shared", shared({}), adult([consent({})])))
}

test_shared_on_consent_without_consent if {
	denied_only(input_for("privacy.data.shared", shared({}), adult([])), "PURPOSE_NOT_CONSENTED")
}

test_shared_recipient_listed if {
	allowed(input_for("privacy.data.shared", shared({}), adult([consent({"recipients": ["acme"]})])))
}

test_shared_recipient_not_consented if {
	inp := input_for("privacy.data.shared", shared({}), adult([consent({"recipients": ["other"]})]))
	denied_only(inp, "RECIPIENT_NOT_CONSENTED")
}

test_shared_recipient_consent_withdrawn if {
	c1 := consent({"recipients": ["other"]})
	c2 := consent(object.union(withdrawn, {"consent_id": "c-2", "recipients": ["acme"]}))
	denied_only(input_for("privacy.data.shared", shared({}), adult([c1, c2])), "CONSENT_WITHDRAWN")
}

test_shared_category_not_consented if {
	inp := input_for("privacy.data.shared", shared({"categories": ["usage.behavior"]}), adult([consent({})]))
	denied_only(inp, "CATEGORY_NOT_CONSENTED")
}

test_shared_with_service_provider if {
	allowed(input_for("privacy.data.shared", shared({"basis": "service_provider", "recipient_kind": "service_provider"}), adult([])))
	allowed(input_for("privacy.data.shared", shared({"basis": "service_provider", "recipient_kind": "affiliate"}), adult([])))
}

test_shared_service_provider_basis_invalid if {
	inp := input_for("privacy.data.shared", shared({"basis": "service_provider", "recipient_kind": "third_party"}), adult([]))
	denied_only(inp, "SHARING_BASIS_INVALID")
}

test_shared_legal_obligation if {
	allowed(input_for("privacy.data.shared", shared({"basis": "legal_obligation", "recipient_kind": "authority"}), adult([])))
}

test_shared_legal_obligation_basis_invalid if {
	inp := input_for("privacy.data.shared", shared({"basis": "legal_obligation", "recipient_kind": "affiliate"}), adult([]))
	denied_only(inp, "SHARING_BASIS_INVALID")
}

test_shared_unknown_basis_invalid if {
	denied_only(input_for("privacy.data.shared", shared({"basis": "interest"}), adult([])), "SHARING_BASIS_INVALID")
}

test_shared_anonymized_allowed_anywhere if {
	allowed(input_for("privacy.data.shared", shared({"basis": "anonymized", "region": "US", "categories": ["cookie.analytics"]}), adult([])))
}

test_shared_abroad_needs_separate_consent if {
	inp := input_for("privacy.data.shared", shared({"basis": "service_provider", "recipient_kind": "service_provider", "region": "SG"}), adult([consent({})]))
	denied_only(inp, "NO_SEPARATE_CONSENT")
}

test_shared_abroad_with_separate_consent if {
	inp := input_for("privacy.data.shared", shared({"region": "HK"}), adult([consent({"destinations": ["HK"]})]))
	d := decide(inp)
	d.allow == true
	d.obligations == [{"kind": "record_transfer_register", "destination": "HK"}]
}

test_shared_abroad_refused_destination if {
	inp := input_for("privacy.data.shared", shared({"region": "US"}), adult([consent({"destinations": ["US"]})]))
	denied_only(inp, "DESTINATION_NOT_ALLOWED")
}

test_shared_minor_on_consent_needs_guardian if {
	denied_only(input_for("privacy.data.shared", shared({}), minor([consent({})])), "GUARDIAN_CONSENT_REQUIRED")
	allowed(input_for("privacy.data.shared", shared({}), minor([consent({"guardian": true})])))
}

test_shared_cookie_data_needs_cookie_consent if {
	inp := input_for("privacy.data.shared", shared({"basis": "service_provider", "recipient_kind": "service_provider", "categories": ["cookie.analytics"]}), adult([]))
	denied_only(inp, "COOKIE_CONSENT_REQUIRED")
}

# --- privacy.data.transferred ----------------------------------------------------------

test_transfer_allowed if {
	inp := input_for("privacy.data.transferred", transferred({}), adult([sg_consent({})]))
	d := decide(inp)
	d == {"allow": true, "reasons": [], "obligations": [{"kind": "record_transfer_register", "destination": "SG"}], "basis": "consent"}
}

test_transfer_example_of_input_contract if {
	c := sg_consent({"guardian": true, "cookies": ["cookie.analytics"], "expires": "2027-11-01T00:00:00Z"})
	subject := object.union(minor([c]), {"age": 17, "erased_categories": ["usage.behavior"], "last_seq": 118})
	allowed(input_for("privacy.data.transferred", transferred({}), subject))
}

test_transfer_domestic_allowed if {
	inp := input_for("privacy.data.transferred", object.remove(transferred({"to_region": "CN", "recipient": "acme-bj", "categories": ["identity.account"]}), ["mechanism"]), adult([]))
	d := decide(inp)
	d == {"allow": true, "reasons": [], "obligations": [], "basis": "contract"}
	denied_only(object.union(inp, {"event": object.union(inp.event, {"data": object.union(inp.event.data, {"categories": ["identity.contact"]})})}), "PURPOSE_NOT_CONSENTED")
}

test_transfer_destination_not_allowed if {
	inp := input_for("privacy.data.transferred", transferred({"to_region": "US"}), adult([sg_consent({"destinations": ["US"]})]))
	denied_only(inp, "DESTINATION_NOT_ALLOWED")
}

test_transfer_missing_destination if {
	inp := input_for("privacy.data.transferred", object.remove(transferred({}), ["to_region"]), adult([sg_consent({})]))
	codes(inp) == {"DESTINATION_NOT_ALLOWED", "NO_SEPARATE_CONSENT"}
}

test_transfer_without_mechanism if {
	denied_only(input_for("privacy.data.transferred", object.remove(transferred({}), ["mechanism"]), adult([sg_consent({})])), "NO_TRANSFER_MECHANISM")
	denied_only(input_for("privacy.data.transferred", transferred({"mechanism": "adequacy"}), adult([sg_consent({})])), "NO_TRANSFER_MECHANISM")
}

test_transfer_every_mechanism_allowed if {
	every m in settings.transfer_mechanisms {
		allowed(input_for("privacy.data.transferred", transferred({"mechanism": m}), adult([sg_consent({})])))
	}
}

test_transfer_without_separate_consent if {
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([consent({})])), "NO_SEPARATE_CONSENT")
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([sg_consent({"destinations": ["HK"]})])), "NO_SEPARATE_CONSENT")
}

test_transfer_consent_withdrawn if {
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([sg_consent(withdrawn)])), "CONSENT_WITHDRAWN")
}

test_transfer_destination_withdrawn_by_scope if {
	c := sg_consent(scope("destinations", "SG"))
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([c])), "CONSENT_WITHDRAWN")
}

test_transfer_purpose_withdrawn_by_scope if {
	c := sg_consent(scope("purposes", "service_provision"))
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([c])), "CONSENT_WITHDRAWN")
}

test_transfer_category_withdrawn_by_scope if {
	c := sg_consent(scope("categories", "identity.contact"))
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([c])), "CONSENT_WITHDRAWN")
}

test_transfer_consent_expired if {
	denied_only(input_for("privacy.data.transferred", transferred({}), adult([sg_consent(expired)])), "CONSENT_EXPIRED")
}

test_transfer_consent_superseded if {
	inp := input_for("privacy.data.transferred", transferred({}), adult([sg_consent({"notice_version": "1.0"})]))
	codes_with(inp, reconsent_config) == {"NOTICE_SUPERSEDED"}
}

test_transfer_purpose_not_consented if {
	inp := input_for("privacy.data.transferred", transferred({"purpose": "customer_support"}), adult([sg_consent({})]))
	denied_only(inp, "PURPOSE_NOT_CONSENTED")
}

test_transfer_category_not_consented if {
	inp := input_for("privacy.data.transferred", transferred({"categories": ["identity.contact", "usage.device"]}), adult([sg_consent({})]))
	denied_only(inp, "CATEGORY_NOT_CONSENTED")
}

test_transfer_recipient_not_consented if {
	inp := input_for("privacy.data.transferred", transferred({"recipient": "other-sg"}), adult([sg_consent({})]))
	denied_only(inp, "RECIPIENT_NOT_CONSENTED")
}

test_transfer_consent_without_recipients_covers_any if {
	allowed(input_for("privacy.data.transferred", transferred({"recipient": "other-sg"}), adult([sg_consent({"recipients": []})])))
}

test_transfer_minor_needs_guardian if {
	denied_only(input_for("privacy.data.transferred", transferred({}), minor([sg_consent({})])), "GUARDIAN_CONSENT_REQUIRED")
	allowed(input_for("privacy.data.transferred", transferred({}), minor([sg_consent({"guardian": true})])))
}

test_transfer_cookie_data_needs_cookie_consent if {
	inp := input_for("privacy.data.transferred", transferred({"categories": ["identity.contact", "cookie.preference"]}), adult([sg_consent({})]))
	denied_only(inp, "COOKIE_CONSENT_REQUIRED")
	allowed(input_for("privacy.data.transferred", transferred({"categories": ["identity.contact", "cookie.preference"]}), adult([sg_consent({"cookies": ["cookie.preference"]})])))
}

test_transfer_several_reasons if {
	inp := input_for("privacy.data.transferred", object.remove(transferred({"to_region": "US"}), ["mechanism"]), minor([sg_consent({"destinations": ["US"]})]))
	codes(inp) == {"DESTINATION_NOT_ALLOWED", "NO_TRANSFER_MECHANISM", "GUARDIAN_CONSENT_REQUIRED"}
}
