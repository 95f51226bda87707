package event

import (
	"errors"
	"strconv"
)

// ErrInvalid is wrapped by every *FieldError: errors.Is(err, ErrInvalid)
// tells an invalid event (HTTP 400, invalid_event) from other failures.
var ErrInvalid = errors.New("invalid event")

// FieldError names the first bad field of an event. Field is a path such as
// "specversion", "subject", "data.to_region", "data.categories[1]" or
// "data.fields.email"; it is empty when the body as a whole is wrong (not
// JSON, not an object). Message says why and never repeats the offending
// value, which may be personal data.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return ErrInvalid.Error() + ": " + e.Message
	}
	return ErrInvalid.Error() + ": " + e.Field + ": " + e.Message
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, msg string) *FieldError { return &FieldError{Field: field, Message: msg} }

// safeName is what a member name must look like to be echoed in a path.
// Anything else (an e-mail address used as a key, control characters, a
// megabyte of text) could be personal data or garbage, so the path stops
// at the parent instead.
func safeName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// join appends a member name to a path.
func join(parent, name string) string {
	if !safeName(name) {
		return parent
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// index appends an array index to a path.
func index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}
