package consentrecord

// dpvTerms maps every term of Custos's vocabulary to the one W3C Data Privacy
// Vocabulary concept a consent record names for it, as a compact IRI under
// the prefixes of the shipped context. docs/vocabulary.md gives the same
// mapping with the privacy-policy clause of each term. Where DPV has no
// concept (PIPL's own law, mechanisms and bases), the term is defined under
// the custos: namespace, https://custos.dev/ns/dpv#, and the docs say so.
var dpvTerms = map[string]map[string]string{
	"category": {
		"identity.basic":     "pd:Identifying",
		"identity.contact":   "pd:Contact",
		"identity.account":   "pd:Authenticating",
		"identity.voluntary": "dpv:ProvidedPersonalData",
		"usage.device":       "pd:DeviceBased",
		"usage.network":      "pd:IPAddress",
		"usage.behavior":     "pd:BrowsingBehavior",
		"usage.diagnostic":   "dpv:ObservedPersonalData",
		"cookie.session":     "pd:Identifier",
		"cookie.preference":  "pd:Preference",
		"cookie.security":    "pd:Authenticating",
		"cookie.analytics":   "pd:BrowsingBehavior",
	},
	"purpose": {
		"service_provision":    "dpv:ServiceProvision",
		"service_improvement":  "dpv:ServiceOptimisation",
		"notifications":        "dpv:CommunicationManagement",
		"interactive_features": "dpv:RequestedServiceProvision",
		"customer_support":     "dpv:CustomerCare",
		"security":             "dpv:EnforceSecurity",
		"legal_compliance":     "dpv:LegalCompliance",
	},
	"mechanism": {
		"security_assessment":          "custos:PIPLSecurityAssessment",
		"standard_contract":            "custos:PIPLStandardContract",
		"certification":                "custos:PIPLCertification",
		"standard_contractual_clauses": "dpv:StandardContractualClauses",
		"binding_corporate_rules":      "dpv:BindingCorporateRules",
	},
	"basis": {
		"consent":              "dpv:Consent",
		"contract":             "dpv:Contract",
		"legal_obligation":     "dpv:LegalObligation",
		"vital_interests":      "dpv:VitalInterest",
		"public_interest":      "dpv:PublicInterest",
		"publicly_disclosed":   "custos:PubliclyDisclosedData",
		"legitimate_interests": "dpv:LegitimateInterest",
	},
	"law": {
		"PIPL": "custos:PIPL",
		"GDPR": "eu-gdpr:GDPR",
	},
}

// DPV is the DPV concept of term of the given kind (category, purpose,
// mechanism, basis, law), and whether there is one.
func DPV(kind, term string) (string, bool) {
	iri, ok := dpvTerms[kind][term]
	return iri, ok
}

func dpvAll(kind string, terms []string) []string {
	out := make([]string, 0, len(terms))
	for _, t := range terms {
		if iri, ok := dpvTerms[kind][t]; ok {
			out = append(out, iri)
		} else {
			out = append(out, "custos:"+kind+"/"+t)
		}
	}
	return dedupe(out)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
