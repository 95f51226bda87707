package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/keys"
)

// MetaKeyName is the transit key wrapping Custos's pseudonymization key.
const MetaKeyName = "custos-meta"

const pseudonymKeyEntry = "pseudonym-key"

// pseudonymKey returns the ledger's pseudonymization key. It is made once
// by Vault (a transit data key), kept wrapped in the meta bucket so every
// Custos process sharing the ledger derives the same pseudonyms, and
// unwrapped with one Vault call per start.
func pseudonymKey(ctx context.Context, c *keys.Client, meta jetstream.KeyValue) ([]byte, error) {
	type entry struct {
		Wrapped string `json:"wrapped"`
	}
	for attempt := 0; attempt < 3; attempt++ {
		e, err := meta.Get(ctx, pseudonymKeyEntry)
		if err == nil {
			var ent entry
			if err := json.Unmarshal(e.Value(), &ent); err != nil {
				return nil, err
			}
			return c.Unwrap(ctx, MetaKeyName, ent.Wrapped)
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, err
		}
		if err := c.EnsureKey(ctx, MetaKeyName, "aes256-gcm96"); err != nil {
			return nil, err
		}
		plain, wrapped, err := c.DataKey(ctx, MetaKeyName)
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(entry{Wrapped: wrapped})
		if _, err := meta.Create(ctx, pseudonymKeyEntry, b); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return nil, err
		}
		return plain, nil
	}
	return nil, fmt.Errorf("pseudonymization key entry kept changing")
}
