# METADATA
# description: |
#   Builders shared by the tests. Every test decides with its own settings
#   (settings) rather than the shipped data, so tuning policies/data never
#   breaks the tests that guard the rules.
package custos.decision_test

import data.custos.decision

settings := {
	"storage_regions": ["CN"],
	"transfer_destinations": ["HK", "SG", "DE"],
	"transfer_mechanisms": ["security_assessment", "standard_contract", "certification"],
	"guardian_age": 18,
	"allowed_purposes": [
		"service_provision",
		"service_improvement",
		"notifications",
		"interactive_features",
		"customer_support",
		"security",
		"legal_compliance",
	],
	"lawful_bases": {
		"default": "consent",
		"purposes": {
			# Unlike the shipped table, contact data for the service rests on
			# consent here, so the consent rules have a purpose to guard.
			"service_provision": {"categories": {"identity.account": "contract", "usage.diagnostic": "contract"}},
			"security": {"default": "contract"},
			"legal_compliance": {"default": "legal_obligation"},
		},
	},
	"require_assessment_ref": false,
	"gdpr": {
		"adequate_destinations": ["JP", "CH", "GB"],
		"transfer_mechanisms": ["standard_contractual_clauses", "binding_corporate_rules"],
	},
	"necessary_cookies": ["cookie.session", "cookie.security"],
	"notices": {"reconsent_required": []},
	"rights": {
		"default_jurisdiction": "PIPL",
		"jurisdiction_by_residence": {"CN": "PIPL", "DE": "GDPR", "FR": "GDPR"},
		"deadline_days": {
			"PIPL": {"default": 15, "access": 15, "deletion": 15},
			"GDPR": {"default": 30, "access": 30},
		},
	},
}

# settings requiring fresh consent once notice 2.0 is in force.
reconsent_config := object.union(settings, {"notices": {"reconsent_required": ["2.0"]}})

now := "2026-11-29T10:00:00Z"

notices := {
	"current": "2.0",
	"versions": [
		{"version": "1.0", "effective": "2026-01-01T00:00:00Z"},
		{"version": "2.0", "effective": "2026-10-01T00:00:00Z"},
	],
}

base_consent := {
	"consent_id": "c-1",
	"notice_version": "2.0",
	"purposes": ["service_provision"],
	"categories": ["identity.contact"],
	"destinations": [],
	"recipients": [],
	"cookies": [],
	"guardian": false,
	"risks_informed": false,
	"granted_at": "2026-11-01T00:00:00Z",
	"expires": null,
	"withdrawn": false,
	"withdrawn_at": null,
	"withdrawn_scope": {"purposes": [], "destinations": [], "cookies": [], "categories": []},
}

consent(overrides) := object.union(base_consent, overrides)

# A separate consent for transfers to acme-sg in Singapore.
sg_consent(overrides) := consent(object.union({"destinations": ["SG"], "recipients": ["acme-sg"]}, overrides))

withdrawn := {"withdrawn": true, "withdrawn_at": "2026-11-20T00:00:00Z"}

expired := {"expires": "2026-11-28T00:00:00Z"}

scope(kind, item) := {"withdrawn_scope": {kind: [item]}}

adult_subject := {
	"registered": true,
	"residence": "CN",
	"age": 30,
	"erased": false,
	"erased_categories": [],
	"last_seq": 7,
	"consents": [],
}

adult(consents) := object.union(adult_subject, {"consents": consents})

minor(consents) := object.union(adult_subject, {"age": 16, "consents": consents})

input_for(type, event_data, subject) := {
	"now": now,
	"event": {
		"type": type,
		"source": "https://shop.example/orders",
		"id": "evt-1",
		"time": "2026-11-29T09:59:58Z",
		"subject": "p_test",
		"data": event_data,
	},
	"subject": subject,
	"notices": notices,
}

collected(overrides) := object.union(
	{
		"categories": ["identity.contact"],
		"purpose": "service_provision",
		"storage_region": "CN",
		"retention": "P1Y",
		"fields": ["email"],
	},
	overrides,
)

used(overrides) := object.union({"categories": ["identity.contact"], "purpose": "service_provision"}, overrides)

shared(overrides) := object.union(
	{
		"recipient": "acme",
		"recipient_kind": "third_party",
		"basis": "consent",
		"categories": ["identity.contact"],
		"purpose": "service_provision",
		"region": "CN",
	},
	overrides,
)

transferred(overrides) := object.union(
	{
		"transfer_id": "t-1",
		"recipient": "acme-sg",
		"from_region": "CN",
		"to_region": "SG",
		"categories": ["identity.contact"],
		"purpose": "service_provision",
		"mechanism": "standard_contract",
	},
	overrides,
)

decide(inp) := d if {
	d := decision.decision with input as inp with data.custos.config as settings
}

decide_with(inp, config) := d if {
	d := decision.decision with input as inp with data.custos.config as config
}

codes(inp) := {r.code | some r in decide(inp).reasons}

codes_with(inp, config) := {r.code | some r in decide_with(inp, config).reasons}

allowed(inp) if {
	d := decide(inp)
	d.allow == true
	d.reasons == []
}

# denied_only(inp, code): denied with exactly that one reason code.
denied_only(inp, code) if {
	d := decide(inp)
	d.allow == false
	d.obligations == []
	codes(inp) == {code}
}
