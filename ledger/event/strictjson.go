package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of JSON objects and arrays accepted in an
// event, counting the event object itself as depth 1. No valid event comes
// near it; the limit keeps hostile bodies cheap to refuse.
const MaxDepth = 32

// maxEntries bounds the members of one object and the elements of one
// array. The longest list a valid event can hold is a consent's
// destinations (249 regions), so the bound only stops bodies built to
// make the parser allocate.
const maxEntries = 1000

type jsonKind uint8

const (
	jNull jsonKind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

// node is one parsed JSON value. Objects keep their members in document
// order so that errors can name the first bad member.
type node struct {
	kind jsonKind
	str  string   // a string's value, or a number's literal as written
	b    bool     // a boolean's value
	keys []string // object member names
	vals []*node  // object member values, or array elements
}

// parser turns a body into a node tree with the checks encoding/json does
// not make: duplicate member names, nesting depth and invalid UTF-8 (which
// encoding/json silently replaces with U+FFFD) are errors naming the path
// where they occur.
type parser struct {
	dec *json.Decoder
	src []byte
}

// parseDocument parses b as exactly one JSON value. path names the value
// in errors ("" for a whole event, "data" for a binary-mode body) and depth
// is the nesting depth of its container.
func parseDocument(b []byte, path string, depth int) (*node, *FieldError) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fieldErr(path, "empty body")
	}
	p := &parser{dec: json.NewDecoder(bytes.NewReader(b)), src: b}
	p.dec.UseNumber()
	n, ferr := p.value(path, depth)
	if ferr != nil {
		return nil, ferr
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fieldErr("", "unexpected data after the JSON value")
	}
	return n, nil
}

func (p *parser) token(path string) (json.Token, []byte, *FieldError) {
	start := p.dec.InputOffset()
	tok, err := p.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, fieldErr(path, "unexpected end of JSON")
		}
		// encoding/json's syntax errors quote the offending character,
		// which may belong to a personal value: say only where.
		return nil, nil, fieldErr(path, "malformed JSON")
	}
	// Between start and the end of the token lie only white space and the
	// structural ':' or ',', so the span is the token's raw bytes for the
	// purposes of a UTF-8 check.
	return tok, p.src[start:p.dec.InputOffset()], nil
}

func (p *parser) value(path string, depth int) (*node, *FieldError) {
	tok, raw, ferr := p.token(path)
	if ferr != nil {
		return nil, ferr
	}
	switch t := tok.(type) {
	case json.Delim:
		if t != '{' && t != '[' {
			return nil, fieldErr(path, "malformed JSON")
		}
		if depth+1 > MaxDepth {
			return nil, fieldErr(path, "nested deeper than 32 levels")
		}
		if t == '{' {
			return p.object(path, depth+1)
		}
		return p.array(path, depth+1)
	case string:
		if !utf8.Valid(raw) {
			return nil, fieldErr(path, "not valid UTF-8")
		}
		return &node{kind: jString, str: t}, nil
	case json.Number:
		return &node{kind: jNumber, str: string(t)}, nil
	case bool:
		return &node{kind: jBool, b: t}, nil
	case nil:
		return &node{kind: jNull}, nil
	}
	return nil, fieldErr(path, "malformed JSON")
}

func (p *parser) object(path string, depth int) (*node, *FieldError) {
	n := &node{kind: jObject}
	seen := make(map[string]struct{})
	for {
		tok, raw, ferr := p.token(path)
		if ferr != nil {
			return nil, ferr
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return n, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fieldErr(path, "malformed JSON")
		}
		if len(n.keys) == maxEntries {
			return nil, fieldErr(path, "has more than 1000 members")
		}
		if !utf8.Valid(raw) {
			return nil, fieldErr(path, "a member name is not valid UTF-8")
		}
		child := join(path, key)
		if _, dup := seen[key]; dup {
			if child == path {
				return nil, fieldErr(path, "a member name appears more than once")
			}
			return nil, fieldErr(child, "appears more than once")
		}
		seen[key] = struct{}{}
		v, ferr := p.value(child, depth)
		if ferr != nil {
			return nil, ferr
		}
		n.keys = append(n.keys, key)
		n.vals = append(n.vals, v)
	}
}

func (p *parser) array(path string, depth int) (*node, *FieldError) {
	n := &node{kind: jArray}
	for {
		if !p.dec.More() {
			tok, _, ferr := p.token(path)
			if ferr != nil {
				return nil, ferr
			}
			if d, ok := tok.(json.Delim); !ok || d != ']' {
				return nil, fieldErr(path, "malformed JSON")
			}
			return n, nil
		}
		if len(n.vals) == maxEntries {
			return nil, fieldErr(path, "has more than 1000 elements")
		}
		v, ferr := p.value(index(path, len(n.vals)), depth)
		if ferr != nil {
			return nil, ferr
		}
		n.vals = append(n.vals, v)
	}
}

// rawScalar returns the JSON text of a string, number or boolean node:
// strings re-encoded canonically (without HTML escaping, so the stored
// value is what was sent), numbers exactly as written.
func rawScalar(n *node) json.RawMessage {
	switch n.kind {
	case jNumber:
		return json.RawMessage(n.str)
	case jBool:
		if n.b {
			return json.RawMessage("true")
		}
		return json.RawMessage("false")
	case jString:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(n.str) // a string always encodes
		return json.RawMessage(bytes.TrimRight(buf.Bytes(), "\n"))
	}
	return nil
}
