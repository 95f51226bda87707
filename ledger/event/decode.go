package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"time"
)

// MaxBatch is the most events one batch may hold.
const MaxBatch = 1000

const unknownAttribute = "unknown attribute; the only extension attributes accepted are traceparent and tracestate"

// Decode decodes and validates one structured-mode CloudEvent (the body of
// an application/cloudevents+json request). now is the time the event is
// received; it bounds how far in the future time may lie. Every error is a
// *FieldError wrapping ErrInvalid.
func Decode(b []byte, now time.Time) (*Event, error) {
	root, ferr := parseDocument(b, "", 0)
	if ferr != nil {
		return nil, ferr
	}
	return decodeEvent(root, now)
}

// decodeEvent checks the envelope's members in document order, then the
// data's members in document order, then everything Validate checks.
func decodeEvent(root *node, now time.Time) (*Event, error) {
	if root.kind != jObject {
		return nil, fieldErr("", "an event must be a JSON object")
	}
	e := &Event{}
	var data *node
	c := &vctx{now: now}
	if ferr := decodeMembers(root, "", e.envelope(&data), c, unknownAttribute); ferr != nil {
		return nil, ferr
	}
	if ferr := e.checkSubject(); ferr != nil {
		return nil, ferr
	}
	p := newPayload(e.Type) // the type was checked with the envelope
	c.eventTime = e.Time
	if ferr := decodeMembers(data, "data", p.bindings(), c, unknownField); ferr != nil {
		return nil, ferr
	}
	if ferr := p.crossCheck(c); ferr != nil {
		return nil, ferr
	}
	e.Data = p
	if err := e.Validate(now); err != nil {
		return nil, err
	}
	return e, nil
}

// envelope binds the CloudEvents attributes. data, when not nil, receives
// the data member's node (decoding); Validate passes nil.
func (e *Event) envelope(data **node) []binding {
	bs := []binding{
		str("specversion", true, &e.SpecVersion, func(s string, _ *vctx) string { return checkSpecVersion(s) }),
		str("id", true, &e.ID, idCheck),
		str("source", true, &e.Source, func(s string, _ *vctx) string { return checkSource(s) }),
		str("type", true, &e.Type, func(s string, _ *vctx) string { return checkType(s) }),
		str("subject", false, &e.Subject, idCheck),
		eventTime(&e.Time),
		str("datacontenttype", true, &e.DataContentType, func(s string, _ *vctx) string { return checkContentType(s) }),
		str("traceparent", false, &e.TraceParent, func(s string, _ *vctx) string { return checkTraceParent(s) }),
		str("tracestate", false, &e.TraceState, func(s string, _ *vctx) string { return checkTraceState(s) }),
	}
	if data != nil {
		bs = append(bs, binding{
			name:     "data",
			required: true,
			decode: func(n *node, path string) *FieldError {
				if n.kind != jObject {
					return fieldErr(path, "must be a JSON object")
				}
				*data = n
				return nil
			},
			present: func() bool { return *data != nil },
			check:   func(string, *vctx) *FieldError { return nil },
		})
	}
	return bs
}

func eventTime(p *time.Time) binding {
	b := timestamp("time", true, p)
	b.check = func(path string, c *vctx) *FieldError {
		if m := checkEventTime(*p, c.now); m != "" {
			return fieldErr(path, m)
		}
		return nil
	}
	return b
}

func (e *Event) checkSubject() *FieldError {
	if subjectless(e.Type) {
		if e.Subject != "" {
			return fieldErr("subject", "not allowed for this type")
		}
		return nil
	}
	if e.Subject == "" {
		return fieldErr("subject", "required for this type")
	}
	return nil
}

// Validate checks an event against the event contract (docs/schemas/) as Decode does, for events built
// in code. now bounds how far in the future Time may lie. Data must be the
// pointer type that goes with Type (see NewData). The error, if any, is a
// *FieldError wrapping ErrInvalid.
func (e *Event) Validate(now time.Time) error {
	if ferr := e.validate(now); ferr != nil {
		return ferr
	}
	return nil
}

func (e *Event) validate(now time.Time) *FieldError {
	c := &vctx{now: now, eventTime: e.Time}
	if ferr := checkMembers("", e.envelope(nil), c); ferr != nil {
		return ferr
	}
	if ferr := e.checkSubject(); ferr != nil {
		return ferr
	}
	if e.Data == nil {
		return fieldErr("data", "required")
	}
	p, ok := e.Data.(payload)
	if !ok || reflect.TypeOf(e.Data) != reflect.TypeOf(newPayload(e.Type)) {
		return fieldErr("data", "does not hold the data type that goes with the event's type")
	}
	if reflect.ValueOf(e.Data).IsNil() {
		return fieldErr("data", "required")
	}
	if ferr := checkMembers("data", p.bindings(), c); ferr != nil {
		return ferr
	}
	return p.crossCheck(c)
}

// DecodeBatch splits a batch body (application/cloudevents-batch+json): a
// JSON array of 1 to MaxBatch events. It checks only the array; the caller
// passes each entry to Decode, so that one bad event does not sink the
// others (a batch is not atomic; docs/openapi.yaml).
func DecodeBatch(b []byte) ([]json.RawMessage, error) {
	const notArray = "a batch must be a JSON array of events"
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fieldErr("", notArray)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fieldErr("", notArray)
	}
	var out []json.RawMessage
	for dec.More() {
		if len(out) == MaxBatch {
			return nil, fieldErr(index("", MaxBatch), "a batch holds at most 1000 events")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fieldErr(index("", len(out)), "malformed JSON")
		}
		out = append(out, raw)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return nil, fieldErr("", "malformed JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fieldErr("", "unexpected data after the batch")
	}
	if len(out) == 0 {
		return nil, fieldErr("", "a batch must not be empty")
	}
	return out, nil
}
