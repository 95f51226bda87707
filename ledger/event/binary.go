package event

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

const contentTypeAttr = "datacontenttype"

// binaryAttrs are the attributes a binary-mode request may carry as ce-*
// headers, in the order the event contract (docs/schemas/) and CloudEvents list them. datacontenttype
// is the Content-Type header instead (CloudEvents HTTP binding §3.1.1).
func binaryAttrs() []string {
	return []string{
		"specversion", "id", "source", "type", "subject", "time", "traceparent", "tracestate",
	}
}

// DecodeBinary decodes and validates one binary-mode CloudEvent: the
// attributes in ce-* headers (values percent-decoded as the HTTP binding
// requires), Content-Type as datacontenttype, the body as data. A W3C
// traceparent or tracestate header counts when no ce-traceparent or
// ce-tracestate is present. Any other ce-* header is an unknown attribute.
// Errors are *FieldErrors, named as in structured mode.
func DecodeBinary(h http.Header, body []byte, now time.Time) (*Event, error) {
	type value struct {
		v      string
		fromCE bool
	}
	attrs := make(map[string]value)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first error must not depend on map order
	for _, k := range keys {
		lk := strings.ToLower(k)
		var name string
		fromCE := false
		switch {
		case strings.HasPrefix(lk, "ce-"):
			name, fromCE = lk[len("ce-"):], true
			if !slices.Contains(binaryAttrs(), name) {
				if name == contentTypeAttr {
					return nil, fieldErr(name, "in binary mode datacontenttype is the Content-Type header")
				}
				if join("", name) == "" {
					return nil, fieldErr("", unknownAttribute+" (its name is not shown: it is not a schema name)")
				}
				return nil, fieldErr(name, unknownAttribute)
			}
		case lk == "traceparent" || lk == "tracestate":
			name = lk
		case lk == "content-type":
			name = contentTypeAttr
		default:
			continue // an ordinary HTTP header
		}
		vals := h[k]
		prev, seen := attrs[name]
		if len(vals) != 1 || seen && prev.fromCE == fromCE {
			return nil, fieldErr(name, "given more than once")
		}
		if seen && prev.fromCE {
			continue // ce-traceparent wins over traceparent
		}
		v := vals[0]
		if fromCE {
			var ok bool
			if v, ok = percentDecode(v); !ok {
				return nil, fieldErr(name, "malformed percent-encoding or invalid UTF-8")
			}
		}
		attrs[name] = value{v, fromCE}
	}

	root := &node{kind: jObject}
	for _, name := range append(binaryAttrs(), contentTypeAttr) {
		if a, ok := attrs[name]; ok {
			root.keys = append(root.keys, name)
			root.vals = append(root.vals, &node{kind: jString, str: a.v})
		}
	}
	if len(bytes.TrimSpace(body)) > 0 {
		data, ferr := parseDocument(body, "data", 1)
		if ferr != nil {
			return nil, ferr
		}
		root.keys = append(root.keys, "data")
		root.vals = append(root.vals, data)
	}
	return decodeEvent(root, now)
}

// percentDecode undoes the percent-encoding the CloudEvents HTTP binding
// (§3.1.3.2) applies to header values.
func percentDecode(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, utf8.ValidString(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	out := b.String()
	return out, utf8.ValidString(out)
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
