package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
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

// parser turns a body into a node tree with the checks a plain decoder does
// not make, each an error naming the path where it occurs: duplicate member
// names, invalid UTF-8 (which decoders replace with U+FFFD or report without
// a path), nesting depth and the number of members or elements. The tokens
// come from jsontext, encoding/json/v2's syntax layer, which allocates
// nothing per token.
type parser struct {
	dec *jsontext.Decoder
	src []byte
}

// parseDocument parses b as exactly one JSON value. path names the value
// in errors ("" for a whole event, "data" for a binary-mode body) and depth
// is the nesting depth of its container.
func parseDocument(b []byte, path string, depth int) (*node, *FieldError) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fieldErr(path, "empty body")
	}
	// Duplicate names and UTF-8 are checked here, so that the error can
	// name the member; jsontext's own checks report a JSON pointer instead.
	p := &parser{
		dec: jsontext.NewDecoder(bytes.NewReader(b), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)),
		src: b,
	}
	n, ferr := p.value(path, depth)
	if ferr != nil {
		return nil, ferr
	}
	if _, err := p.dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, fieldErr("", "unexpected data after the JSON value")
	}
	return n, nil
}

// token reads the next token and returns it with its raw bytes. An error
// says only what kind of problem was found, and where: the decoder's
// messages quote the offending input, which may belong to a personal value.
func (p *parser) token(path string) (jsontext.Token, []byte, *FieldError) {
	start := p.dec.InputOffset()
	tok, err := p.dec.ReadToken()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return jsontext.Token{}, nil, fieldErr(path, "unexpected end of JSON")
		}
		return jsontext.Token{}, nil, fieldErr(path, "malformed JSON")
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
	switch tok.Kind() {
	case '{', '[':
		if depth+1 > MaxDepth {
			return nil, fieldErr(path, "nested deeper than 32 levels")
		}
		if tok.Kind() == '{' {
			return p.object(path, depth+1)
		}
		return p.array(path, depth+1)
	case '"':
		if !utf8.Valid(raw) {
			return nil, fieldErr(path, "not valid UTF-8")
		}
		if loneSurrogate(raw) {
			return nil, fieldErr(path, "has a \\u escape of a lone UTF-16 surrogate, which is no character")
		}
		return &node{kind: jString, str: tok.String()}, nil
	case '0':
		return &node{kind: jNumber, str: tok.String()}, nil
	case 't', 'f':
		return &node{kind: jBool, b: tok.Bool()}, nil
	case 'n':
		return &node{kind: jNull}, nil
	}
	return nil, fieldErr(path, "malformed JSON")
}

func (p *parser) object(path string, depth int) (*node, *FieldError) {
	n := &node{kind: jObject}
	var seen map[string]struct{} // past a few members; fewer are scanned
	for {
		tok, raw, ferr := p.token(path)
		if ferr != nil {
			return nil, ferr
		}
		if tok.Kind() == '}' {
			return n, nil
		}
		if tok.Kind() != '"' {
			return nil, fieldErr(path, "malformed JSON")
		}
		key := tok.String()
		if len(n.keys) == maxEntries {
			return nil, fieldErr(path, "has more than 1000 members")
		}
		if !utf8.Valid(raw) || loneSurrogate(raw) {
			return nil, fieldErr(path, "a member name is not valid UTF-8")
		}
		child := join(path, key)
		dup := false
		if len(n.keys) < 16 {
			dup = slices.Contains(n.keys, key)
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 2*len(n.keys))
				for _, k := range n.keys {
					seen[k] = struct{}{}
				}
			}
			_, dup = seen[key]
			seen[key] = struct{}{}
		}
		if dup {
			if child == path {
				return nil, fieldErr(path, "a member name appears more than once")
			}
			return nil, fieldErr(child, "appears more than once")
		}
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
		if p.dec.PeekKind() == ']' {
			if _, _, ferr := p.token(path); ferr != nil {
				return nil, ferr
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
// loneSurrogate reports whether a raw JSON string holds a \u escape of a
// UTF-16 surrogate that is not half of a pair. Decoders silently turn one
// into U+FFFD, so the value stored would not be the value sent.
func loneSurrogate(raw []byte) bool {
	pending := false // the previous escape was a high surrogate
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			if pending {
				return true
			}
			continue
		}
		if i+1 < len(raw) && raw[i+1] != 'u' {
			if pending {
				return true
			}
			i++ // an escaped character, perhaps a backslash
			continue
		}
		if i+5 >= len(raw) {
			return pending
		}
		v, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		if err != nil {
			return pending
		}
		i += 5
		switch {
		case v >= 0xD800 && v <= 0xDBFF:
			if pending {
				return true
			}
			pending = true
		case v >= 0xDC00 && v <= 0xDFFF:
			if !pending {
				return true
			}
			pending = false
		default:
			if pending {
				return true
			}
		}
	}
	return pending
}

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
