package custos.decision

# ---------------------------------------------------------------------------
# Processing events: collection, use, sharing and transfer of personal data.
# ---------------------------------------------------------------------------

# The purpose of a processing event, defined for those events only. A missing
# purpose is "(none)", which no consent or setting names.
event_purpose := object.get(input.event.data, "purpose", "(none)") if input.event.type == "privacy.data.collected"

event_purpose := object.get(input.event.data, "purpose", "(none)") if input.event.type == "privacy.data.used"

event_purpose := object.get(input.event.data, "purpose", "(none)") if input.event.type == "privacy.data.shared"

event_purpose := object.get(input.event.data, "purpose", "(none)") if input.event.type == "privacy.data.transferred"

# Personal information is used only for the purposes of the privacy policy
# (its section 2).
deny contains reason("PURPOSE_NOT_ALLOWED", sprintf("purpose %s is not an allowed purpose", [p])) if {
	p := event_purpose
	not p in object.get(data.custos.config, "allowed_purposes", [])
}

# The region the event moves data to, when that region is outside the storage
# regions: storing, sharing or transferring data there is a cross-border
# transfer. A missing region counts as an unknown foreign one. Anonymized data
# is not personal information and never crosses the border as such.
xborder_dest := d if {
	input.event.type == "privacy.data.transferred"
	not gdpr_subject
	d := object.get(input.event.data, "to_region", "")
	not d in object.get(data.custos.config, "storage_regions", [])
}

xborder_dest := d if {
	input.event.type == "privacy.data.shared"
	not event_data.basis == "anonymized"
	d := object.get(input.event.data, "region", "")
	not d in object.get(data.custos.config, "storage_regions", [])
}

xborder_dest := d if {
	input.event.type == "privacy.data.collected"
	d := object.get(input.event.data, "storage_region", "")
	not d in object.get(data.custos.config, "storage_regions", [])
}

# ---------------------------------------------------------------------------
# Lawful bases (data.custos.config.lawful_bases; docs/policies.md, "Lawful
# bases"). Each category of a collection, use or domestic transfer has a basis
# for the event's purpose: the purpose's entry for the category, else the
# purpose's default, else the table's default. Necessary cookies rest on the
# contract and every other cookie class on consent, whatever the table says, so
# the cookie rule below and the bases never disagree.
# ---------------------------------------------------------------------------

category_basis(k) := "contract" if {
	startswith(k, "cookie.")
	k in object.get(data.custos.config, "necessary_cookies", [])
} else := "consent" if {
	startswith(k, "cookie.")
} else := b if {
	b := data.custos.config.lawful_bases.purposes[event_purpose].categories[k]
} else := b if {
	b := data.custos.config.lawful_bases.purposes[event_purpose]["default"]
} else := data.custos.config.lawful_bases["default"]

category_bases contains category_basis(k) if {
	some k in input.event.data.categories
}

# When the categories rest on different bases other than consent, the event is
# reported under the first of them in this order.
basis_order := ["legal_obligation", "vital_interests", "public_interest", "publicly_disclosed", "contract", "legitimate_interests"]

# The basis of the processing itself, before the cross-border and sharing
# rules: consent as soon as one category needs it, and consent too when the
# event names no category or a basis the order does not know.
processing_basis := "consent" if {
	"consent" in category_bases
} else := b if {
	ordered := [b | some b in basis_order; b in category_bases]
	b := ordered[0]
} else := "consent"

# Whether the processing needs a consent covering its purpose and categories.
# Cookie classes are left to the cookie rule, which asks a consent listing the
# class; an event without categories needs one, to fail closed.
processing_needs_consent if {
	some k in input.event.data.categories
	not startswith(k, "cookie.")
	category_basis(k) == "consent"
}

processing_needs_consent if not input.event.data.categories[0]

# Bases some laws do not know: PIPL has no legitimate interests, and the GDPR
# does not make publicly disclosed data lawful to process on that ground alone.
basis_unavailable := {"legitimate_interests": "PIPL", "publicly_disclosed": "GDPR"}

deny contains reason("BASIS_NOT_AVAILABLE", sprintf("%s is not a lawful basis under %s", [b, j])) if {
	b := event_basis
	j := basis_unavailable[b]
	rights_jurisdiction == j
}

# The basis an allowed processing event was lawful on, as its decision states.
# Sharing states its own ground (privacy policy section 4(2)); a cross-border
# event that needs a separate consent rests on that consent.
event_basis := "consent" if {
	consent_required
} else := b if {
	input.event.type == "privacy.data.shared"
	b := {"service_provider": "contract", "legal_obligation": "legal_obligation", "anonymized": "anonymized"}[event_data.basis]
} else := processing_basis if {
	processing_event
}

processing_event if input.event.type == "privacy.data.collected"

processing_event if input.event.type == "privacy.data.used"

processing_event if input.event.type == "privacy.data.transferred"

processing_event if input.event.type == "privacy.data.shared"

# Whether the event needs a consent in force covering it.
consent_required if {
	input.event.type == "privacy.data.collected"
	processing_needs_consent
}

consent_required if {
	input.event.type == "privacy.data.used"
	processing_needs_consent
}

consent_required if {
	input.event.type == "privacy.data.shared"
	event_data.basis == "consent"
}

# A transfer PIPL's cross-border rules do not govern (a domestic one, or one
# of a subject the GDPR governs) needs what its processing needs, and a
# Chapter V transfer resting on the subject's explicit consent needs that
# consent to cover it.
consent_required if {
	input.event.type == "privacy.data.transferred"
	not xborder_dest
	processing_needs_consent
}

consent_required if {
	input.event.type == "privacy.data.transferred"
	transfer_ground == "explicit_consent"
}

# A cross-border transfer always needs a separate consent naming the
# destination, whatever the purpose or sharing basis. One clause per type that
# can cross the border, so that the rule index skips them for other events.
consent_required if {
	input.event.type == "privacy.data.transferred"
	xborder_dest
}

consent_required if {
	input.event.type == "privacy.data.shared"
	xborder_dest
}

consent_required if {
	input.event.type == "privacy.data.collected"
	xborder_dest
}

deny contains reason("DESTINATION_NOT_ALLOWED", sprintf("%s is not a destination personal information may be transferred to", [d])) if {
	d := xborder_dest
	not d in object.get(data.custos.config, "transfer_destinations", [])
}

deny contains reason("STORAGE_REGION_NOT_ALLOWED", sprintf("personal information may not be stored in %s", [d])) if {
	input.event.type == "privacy.data.collected"
	d := xborder_dest
	not d in object.get(data.custos.config, "transfer_destinations", [])
}

deny contains reason("NO_TRANSFER_MECHANISM", "a cross-border transfer needs a lawful transfer mechanism") if {
	input.event.type == "privacy.data.transferred"
	xborder_dest
	not object.get(input.event.data, "mechanism", null) in object.get(data.custos.config, "transfer_mechanisms", [])
}

# Minors use the services only with their guardian's consent (privacy policy
# section 7): processing their data needs a guardian's consent in force
# whatever its basis. Anonymized data is no longer theirs.
deny contains reason("GUARDIAN_CONSENT_REQUIRED", "processing data of a subject under the guardian age needs a guardian's consent in force") if {
	processing_event
	minor
	not event_data.basis == "anonymized"
	not guardian_in_force
}

guardian_in_force if {
	some c in consents
	c.guardian == true
	in_force(c)
}

# ---------------------------------------------------------------------------
# privacy.data.shared: the lawful bases of the privacy policy's section 4(2).
# ---------------------------------------------------------------------------

sharing_basis_known if event_data.basis in {"consent", "service_provider", "legal_obligation", "anonymized"}

deny contains reason("SHARING_BASIS_INVALID", "the sharing basis is not one the privacy policy allows") if {
	input.event.type == "privacy.data.shared"
	not sharing_basis_known
}

deny contains reason("SHARING_BASIS_INVALID", "sharing with a service provider must go to a service provider or an affiliate") if {
	input.event.type == "privacy.data.shared"
	event_data.basis == "service_provider"
	not recipient_is_provider
}

recipient_is_provider if event_data.recipient_kind in {"service_provider", "affiliate"}

deny contains reason("SHARING_BASIS_INVALID", "sharing under a legal obligation must go to an authority") if {
	input.event.type == "privacy.data.shared"
	event_data.basis == "legal_obligation"
	not event_data.recipient_kind == "authority"
}

# ---------------------------------------------------------------------------
# Obligations.
# ---------------------------------------------------------------------------

# An allowed cross-border transfer (or storage or sharing abroad) goes into the
# register of cross-border transfers.
obligation contains {"kind": "record_transfer_register", "destination": d} if {
	d := xborder_dest
}

obligation contains {"kind": "record_transfer_register", "destination": d} if {
	d := chapter_v_dest
}

# ---------------------------------------------------------------------------
# PIPL articles 55 and 56: a transfer abroad may carry the reference of its
# personal information protection impact assessment, and must when
# require_assessment_ref is true.
# ---------------------------------------------------------------------------

deny contains reason("ASSESSMENT_REF_REQUIRED", "a cross-border transfer needs the reference of its impact assessment") if {
	input.event.type == "privacy.data.transferred"
	xborder_dest
	data.custos.config.require_assessment_ref == true
	not is_string(object.get(event_data, "assessment_ref", null))
}

# ---------------------------------------------------------------------------
# GDPR Chapter V, for subjects whose jurisdiction is the GDPR (their residence,
# through data.custos.config.rights.jurisdiction_by_residence). The EEA is the
# residences that table maps to the GDPR; a transfer inside it is not a
# Chapter V transfer. Outside it a transfer needs a ground: an adequacy
# decision for the destination (Art. 45), an appropriate safeguard (Art. 46) or
# the subject's explicit consent naming the destination, given after being
# informed of the risks (Art. 49(1)(a): risks_informed).
# ---------------------------------------------------------------------------

gdpr_subject if rights_jurisdiction == "GDPR"

eea contains r if {
	some r, j in data.custos.config.rights.jurisdiction_by_residence
	j == "GDPR"
}

chapter_v_dest := d if {
	input.event.type == "privacy.data.transferred"
	gdpr_subject
	d := object.get(input.event.data, "to_region", "")
	not d in eea
}

transfer_ground := "adequacy_decision" if {
	chapter_v_dest in data.custos.config.gdpr.adequate_destinations
} else := "appropriate_safeguards" if {
	chapter_v_dest
	object.get(input.event.data, "mechanism", null) in data.custos.config.gdpr.transfer_mechanisms
} else := "explicit_consent" if {
	d := chapter_v_dest
	some c in consents
	d in c.destinations
	c.risks_informed == true
	not scope_withdrawn(c, "destinations", d)
	in_force(c)
}

deny contains reason("NO_TRANSFER_GROUND", sprintf("%s has no adequacy decision, and the transfer has neither an appropriate safeguard nor an explicit consent naming it given after being informed of the risks", [d])) if {
	d := chapter_v_dest
	not transfer_ground
}
