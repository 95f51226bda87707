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

# Whether the event needs a consent in force covering it.
consent_required if {
	input.event.type == "privacy.data.collected"
	not event_purpose in object.get(data.custos.config, "consent_exempt_purposes", [])
}

consent_required if {
	input.event.type == "privacy.data.used"
	not event_purpose in object.get(data.custos.config, "consent_exempt_purposes", [])
}

consent_required if {
	input.event.type == "privacy.data.shared"
	event_data.basis == "consent"
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
# section 7): collecting their data needs a guardian's consent in force even
# when the purpose itself needs no consent.
deny contains reason("GUARDIAN_CONSENT_REQUIRED", "collecting data of a subject under the guardian age needs a guardian's consent") if {
	input.event.type == "privacy.data.collected"
	minor
	not consent_required
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
