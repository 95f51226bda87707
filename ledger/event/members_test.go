package event_test

import (
	"slices"
	"testing"

	"custos.dev/ledger/event"
)

// nonPersonal is every member of every type that is stored in clear, with
// why that is safe. A member added to a type must be marked personal on its
// binding or listed here: this test fails until one of the two is done.
var nonPersonal = map[string]string{
	"privacy.subject.registered residence":         "a region code",
	"privacy.subject.registered age":               "a number the policy needs (the birth date is sealed)",
	"privacy.subject.registered guardian.relation": "a closed vocabulary",
	"privacy.notice.published version":             "text of an event about no subject",
	"privacy.notice.published effective":           "a time",
	"privacy.notice.published changes":             "text of an event about no subject",
	"privacy.notice.published controller.name":     "the controller, an organisation",
	"privacy.notice.published controller.contact":  "the controller's contact point",
	"privacy.notice.published language":            "a language tag",
	"privacy.consent.granted consent_id":           "an identifier the platform chose",
	"privacy.consent.granted notice_version":       "a notice's version",
	"privacy.consent.granted purposes":             "a closed vocabulary",
	"privacy.consent.granted categories":           "a closed vocabulary",
	"privacy.consent.granted destinations":         "region codes",
	"privacy.consent.granted recipients":           "recipients, organisations the platform names",
	"privacy.consent.granted cookies":              "a closed vocabulary",
	"privacy.consent.granted guardian.relation":    "a closed vocabulary",
	"privacy.consent.granted method":               "a closed vocabulary",
	"privacy.consent.granted expires":              "a time",
	"privacy.consent.granted risks_informed":       "a flag",
	"privacy.consent.withdrawn consent_id":         "an identifier the platform chose",
	"privacy.consent.withdrawn purposes":           "a closed vocabulary",
	"privacy.consent.withdrawn destinations":       "region codes",
	"privacy.consent.withdrawn cookies":            "a closed vocabulary",
	"privacy.consent.withdrawn categories":         "a closed vocabulary",
	"privacy.data.collected categories":            "a closed vocabulary",
	"privacy.data.collected purpose":               "a closed vocabulary",
	"privacy.data.collected storage_region":        "a region code",
	"privacy.data.collected retention":             "an ISO 8601 duration",
	"privacy.data.used categories":                 "a closed vocabulary",
	"privacy.data.used purpose":                    "a closed vocabulary",
	"privacy.data.shared recipient":                "an organisation the platform names",
	"privacy.data.shared recipient_kind":           "a closed vocabulary",
	"privacy.data.shared basis":                    "a closed vocabulary",
	"privacy.data.shared categories":               "a closed vocabulary",
	"privacy.data.shared purpose":                  "a closed vocabulary",
	"privacy.data.shared region":                   "a region code",
	"privacy.data.transferred transfer_id":         "an identifier the platform chose",
	"privacy.data.transferred recipient":           "an organisation the platform names",
	"privacy.data.transferred from_region":         "a region code",
	"privacy.data.transferred to_region":           "a region code",
	"privacy.data.transferred categories":          "a closed vocabulary",
	"privacy.data.transferred purpose":             "a closed vocabulary",
	"privacy.data.transferred mechanism":           "a closed vocabulary",
	"privacy.data.transferred assessment_ref":      "an identifier the platform chose",
	"privacy.rights.requested request_id":          "an identifier the platform chose",
	"privacy.rights.requested right":               "a closed vocabulary",
	"privacy.rights.completed request_id":          "an identifier the platform chose",
	"privacy.rights.completed outcome":             "a closed vocabulary",
	"privacy.data.corrected categories":            "a closed vocabulary",
	"privacy.data.erased scope":                    "\"all\" or a closed vocabulary",
	"privacy.data.erased reason":                   "a closed vocabulary",
}

// Every member of every type is either personal or known to be safe in
// clear; none is both.
func TestEveryMemberIsClassified(t *testing.T) {
	seen := map[string]bool{}
	for _, typ := range event.Types() {
		personal := event.PersonalMembers(typ)
		for _, m := range event.Members(typ) {
			key := typ + " " + m
			seen[key] = true
			_, clear := nonPersonal[key]
			switch isPersonal := slices.Contains(personal, m); {
			case isPersonal && clear:
				t.Errorf("%s is marked personal and listed as stored in clear", key)
			case !isPersonal && !clear:
				t.Errorf("%s is neither marked personal (on its binding) nor listed as stored in clear", key)
			}
		}
	}
	for key := range nonPersonal {
		if !seen[key] {
			t.Errorf("%s is listed but is no member", key)
		}
	}
	for _, want := range []string{"birth_date", "guardian.ref"} {
		if !slices.Contains(event.PersonalMembers(event.TypeSubjectRegistered), want) {
			t.Errorf("%s of a registration is not personal", want)
		}
	}
}
