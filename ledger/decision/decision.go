// Package decision holds a policy's verdict on one event, as Custos stores
// it with every record: the stored format and its verifiers depend on this
// package alone, not on the policy engine that made the decision.
package decision

// Decision is a policy's verdict on one event (docs/policy-input.md).
type Decision struct {
	Allow       bool     `json:"allow"`
	Reasons     []Reason `json:"reasons"`
	Obligations []any    `json:"obligations"`
	// Basis is the lawful basis an allowed processing event rests on
	// (consent, contract, legal_obligation, ...), and TransferGround the
	// GDPR Chapter V ground of a transfer (docs/policies.md, "Lawful bases").
	// Both are empty when the policy gives none.
	Basis          string `json:"basis,omitempty"`
	TransferGround string `json:"transfer_ground,omitempty"`
	PolicyRevision string `json:"policy_revision"`
}

// Reason is one stable reason code with a human message.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
