package keyserver

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// fields is a request's parameters, coerced the way Vault's framework
// coerces them: strings from numbers and booleans, integers and booleans
// from their string forms. Error messages name the field but never quote
// its value, which may be a plaintext.
type fields map[string]any

func convErr(name, want string) error {
	return userError(fmt.Sprintf("error converting input for field %q: expected %s", name, want))
}

// str returns the named string parameter and whether it was given.
func (f fields) str(name string) (string, bool, error) {
	v, ok := f[name]
	if !ok || v == nil {
		return "", false, nil
	}
	s, ok := coerceString(v)
	if !ok {
		return "", true, convErr(name, "a string")
	}
	return s, true, nil
}

func coerceString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		return strconv.FormatBool(t), true
	}
	return "", false
}

func (f fields) integer(name string) (int, bool, error) {
	v, ok := f[name]
	if !ok || v == nil {
		return 0, false, nil
	}
	n, ok := coerceInt(v)
	if !ok {
		return 0, true, convErr(name, "an integer")
	}
	return n, true, nil
}

func coerceInt(v any) (int, bool) {
	var s string
	switch t := v.(type) {
	case json.Number:
		s = t.String()
	case string:
		s = strings.TrimSpace(t)
	default:
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return int(n), true
	}
	if fl, err := strconv.ParseFloat(s, 64); err == nil && fl == math.Trunc(fl) && math.Abs(fl) <= math.MaxInt32 {
		return int(fl), true
	}
	return 0, false
}

func (f fields) boolean(name string) (bool, bool, error) {
	v, ok := f[name]
	if !ok || v == nil {
		return false, false, nil
	}
	switch t := v.(type) {
	case bool:
		return t, true, nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(t)); err == nil {
			return b, true, nil
		}
	case json.Number:
		if fl, err := t.Float64(); err == nil {
			return fl != 0, true, nil
		}
	}
	return false, true, convErr(name, "a boolean")
}

// unknown lists the parameters an endpoint does not take, for Vault's
// "ignored these unrecognized parameters" warning.
func (f fields) unknown(known ...string) []string {
	var out []string
outer:
	for k := range f {
		for _, kn := range known {
			if k == kn {
				continue outer
			}
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ignoredWarning(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("Endpoint ignored these unrecognized parameters: [%s]", strings.Join(names, " "))}
}

// batchItem is one entry of batch_input (or the single request's own
// parameters), as transit's encrypt, decrypt, sign and verify read them.
type batchItem struct {
	Plaintext      string
	HasPlaintext   bool
	Ciphertext     string
	Input          string
	HasInput       bool
	Signature      string
	HasSignature   bool
	HasMAC         bool // hmac or cmac given: not offered here
	Context        string
	Nonce          string
	AssociatedData string
	KeyVersion     int
	Reference      string
}

// decodeBatch reads batch_input. A malformed list fails the whole request
// (Vault answers 500 there; a client error is the truer status).
func decodeBatch(raw any) ([]batchItem, error) {
	list, ok := raw.([]any)
	if !ok {
		return nil, userError("failed to parse batch input: batch_input must be a list of objects")
	}
	items := make([]batchItem, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, userError(fmt.Sprintf("failed to parse batch input: [%d] expected a map", i))
		}
		it := &items[i]
		for k, v := range m {
			if v == nil {
				continue
			}
			if k == "key_version" {
				n, ok := coerceInt(v)
				if !ok {
					return nil, userError(fmt.Sprintf("failed to parse batch input: '[%d].key_version' expected type 'int'", i))
				}
				it.KeyVersion = n
				continue
			}
			var dst *string
			switch k {
			case "plaintext":
				dst, it.HasPlaintext = &it.Plaintext, true
			case "ciphertext":
				dst = &it.Ciphertext
			case "input":
				dst, it.HasInput = &it.Input, true
			case "signature":
				dst, it.HasSignature = &it.Signature, true
			case "hmac", "cmac":
				it.HasMAC = true
				continue
			case "context":
				dst = &it.Context
			case "nonce":
				dst = &it.Nonce
			case "associated_data":
				dst = &it.AssociatedData
			case "reference":
				dst = &it.Reference
			default:
				continue
			}
			s, ok := v.(string)
			if !ok {
				return nil, userError(fmt.Sprintf("failed to parse batch input: '[%d].%s' expected type 'string'", i, k))
			}
			*dst = s
		}
	}
	return items, nil
}
