package custos.decision_test

# --- privacy.consent.granted ---------------------------------------------------

grant(overrides) := object.union(
	{
		"consent_id": "c-2",
		"notice_version": "2.0",
		"purposes": ["service_provision"],
		"categories": ["identity.contact"],
	},
	overrides,
)

test_grant_allowed if {
	allowed(input_for("privacy.consent.granted", grant({}), adult([])))
}

test_grant_naming_refused_destination_allowed if {
	allowed(input_for("privacy.consent.granted", grant({"destinations": ["US"]}), adult([])))
}

test_grant_minor_without_guardian_denied if {
	denied_only(input_for("privacy.consent.granted", grant({}), minor([])), "GUARDIAN_CONSENT_REQUIRED")
}

test_grant_minor_with_guardian_allowed if {
	allowed(input_for("privacy.consent.granted", grant({"guardian": true}), minor([])))
}

test_grant_unknown_age_without_guardian_allowed if {
	allowed(input_for("privacy.consent.granted", grant({}), object.remove(adult_subject, ["age"])))
}

test_grant_unknown_notice_denied if {
	denied_only(input_for("privacy.consent.granted", grant({"notice_version": "9.9"}), adult([])), "NOTICE_UNKNOWN")
}

test_grant_before_any_notice_allowed if {
	inp := object.union(input_for("privacy.consent.granted", grant({"notice_version": "9.9"}), adult([])), {"notices": {"versions": []}})
	allowed(inp)
}

test_grant_superseded_notice_denied if {
	inp := input_for("privacy.consent.granted", grant({"notice_version": "1.0"}), adult([]))
	codes_with(inp, reconsent_config) == {"NOTICE_SUPERSEDED"}
}

test_grant_current_notice_allowed_under_reconsent if {
	inp := input_for("privacy.consent.granted", grant({}), adult([]))
	decide_with(inp, reconsent_config).allow == true
}

# --- consents in force: privacy.data.used -------------------------------------

test_used_with_consent_allowed if {
	allowed(input_for("privacy.data.used", used({}), adult([consent({})])))
}

test_used_without_consent_denied if {
	denied_only(input_for("privacy.data.used", used({}), adult([])), "PURPOSE_NOT_CONSENTED")
}

test_used_purpose_not_allowed if {
	config := object.union(settings, {"allowed_purposes": ["security"]})
	inp := input_for("privacy.data.used", used({}), adult([consent({})]))
	codes_with(inp, config) == {"PURPOSE_NOT_ALLOWED"}
}

test_used_exempt_purpose_needs_no_consent if {
	allowed(input_for("privacy.data.used", used({"purpose": "security"}), adult([])))
	allowed(input_for("privacy.data.used", used({"purpose": "legal_compliance"}), adult([])))
}

test_used_category_not_consented if {
	c := consent({"categories": ["usage.device"]})
	denied_only(input_for("privacy.data.used", used({}), adult([c])), "CATEGORY_NOT_CONSENTED")
}

test_used_categories_covered_by_several_consents if {
	c1 := consent({"categories": ["identity.contact"]})
	c2 := consent({"consent_id": "c-2", "categories": ["usage.device"]})
	allowed(input_for("privacy.data.used", used({"categories": ["identity.contact", "usage.device"]}), adult([c1, c2])))
}

test_used_category_must_pair_with_purpose if {
	c1 := consent({"purposes": ["service_provision"], "categories": ["identity.contact"]})
	c2 := consent({"consent_id": "c-2", "purposes": ["notifications"], "categories": ["usage.behavior"]})
	inp := input_for("privacy.data.used", used({"categories": ["usage.behavior"]}), adult([c1, c2]))
	denied_only(inp, "CATEGORY_NOT_CONSENTED")
}

test_used_withdrawn_consent if {
	denied_only(input_for("privacy.data.used", used({}), adult([consent(withdrawn)])), "CONSENT_WITHDRAWN")
}

test_used_purpose_withdrawn_by_scope if {
	c := consent(scope("purposes", "service_provision"))
	denied_only(input_for("privacy.data.used", used({}), adult([c])), "CONSENT_WITHDRAWN")
}

test_used_category_withdrawn_by_scope if {
	c := consent(object.union({"categories": ["identity.contact", "usage.device"]}, scope("categories", "usage.device")))
	allowed(input_for("privacy.data.used", used({}), adult([c])))
	denied_only(input_for("privacy.data.used", used({"categories": ["usage.device"]}), adult([c])), "CONSENT_WITHDRAWN")
}

test_used_expired_consent if {
	denied_only(input_for("privacy.data.used", used({}), adult([consent(expired)])), "CONSENT_EXPIRED")
}

test_used_unexpired_consent_allowed if {
	allowed(input_for("privacy.data.used", used({}), adult([consent({"expires": "2027-11-01T00:00:00Z"})])))
	allowed(input_for("privacy.data.used", used({}), adult([object.remove(consent({}), ["expires"])])))
}

test_used_withdrawal_reported_before_expiry if {
	c1 := consent(expired)
	c2 := consent(object.union(withdrawn, {"consent_id": "c-2"}))
	denied_only(input_for("privacy.data.used", used({}), adult([c1, c2])), "CONSENT_WITHDRAWN")
}

test_used_newer_consent_replaces_withdrawn if {
	c1 := consent(withdrawn)
	c2 := consent({"consent_id": "c-2"})
	allowed(input_for("privacy.data.used", used({}), adult([c1, c2])))
}

test_used_superseded_consent if {
	inp := input_for("privacy.data.used", used({}), adult([consent({"notice_version": "1.0"})]))
	codes_with(inp, reconsent_config) == {"NOTICE_SUPERSEDED"}
	decide(inp).allow == true
}

test_used_consent_to_unknown_notice_superseded if {
	inp := input_for("privacy.data.used", used({}), adult([consent({"notice_version": "0.1"})]))
	codes_with(inp, reconsent_config) == {"NOTICE_SUPERSEDED"}
}

test_used_current_consent_under_reconsent_allowed if {
	inp := input_for("privacy.data.used", used({}), adult([consent({})]))
	decide_with(inp, reconsent_config).allow == true
}

test_used_reconsent_notice_not_yet_in_force if {
	future := object.union(settings, {"notices": {"reconsent_required": ["3.0"]}})
	inp := input_for("privacy.data.used", used({}), adult([consent({"notice_version": "1.0"})]))
	later := {"notices": {"versions": array.concat(notices.versions, [{"version": "3.0", "effective": "2027-01-01T00:00:00Z"}])}}
	decide_with(object.union(inp, later), future).allow == true
}

# --- cookies -------------------------------------------------------------------

test_cookie_consent_required if {
	inp := input_for("privacy.data.used", used({"categories": ["cookie.analytics"]}), adult([consent({})]))
	denied_only(inp, "COOKIE_CONSENT_REQUIRED")
}

test_cookie_consent_given if {
	c := consent({"cookies": ["cookie.analytics"]})
	allowed(input_for("privacy.data.used", used({"categories": ["cookie.analytics", "identity.contact"]}), adult([c])))
}

test_necessary_cookies_need_no_consent if {
	allowed(input_for("privacy.data.collected", collected({"categories": ["cookie.session", "cookie.security"], "purpose": "security"}), adult([])))
}

test_cookie_withdrawn_by_scope if {
	c := consent(object.union({"cookies": ["cookie.preference"]}, scope("cookies", "cookie.preference")))
	inp := input_for("privacy.data.collected", collected({"categories": ["cookie.preference"]}), adult([c]))
	denied_only(inp, "CONSENT_WITHDRAWN")
}

test_cookie_consent_expired if {
	c := consent(object.union({"cookies": ["cookie.preference"]}, expired))
	inp := input_for("privacy.data.used", used({"categories": ["cookie.preference"], "purpose": "security"}), adult([c]))
	denied_only(inp, "CONSENT_EXPIRED")
}

test_cookie_rule_applies_to_exempt_purpose if {
	inp := input_for("privacy.data.used", used({"categories": ["cookie.analytics"], "purpose": "security"}), adult([]))
	denied_only(inp, "COOKIE_CONSENT_REQUIRED")
}

test_used_under_consent_listing_recipients if {
	allowed(input_for("privacy.data.used", used({}), adult([consent({"recipients": ["acme"]})])))
}
