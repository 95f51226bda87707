package event

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// Size limits of the event contract (docs/schemas/) strings. Identifiers are short so they can serve
// as keys; free text is bounded so one event stays small.
const (
	MaxIDBytes    = 256
	MaxTextBytes  = 4096
	MaxFields     = 64
	MaxFieldBytes = 4096
	maxAge        = 150
	maxTraceState = 512
	futureSkew    = 24 * time.Hour
)

// Each check returns "" when the value is fine, otherwise a message that
// does not contain the value.

// vctx is what value checks may depend on besides the value.
type vctx struct {
	now       time.Time // when the event is being checked
	eventTime time.Time // the event's own time attribute
}

func checkID(s string) string {
	switch {
	case len(s) > MaxIDBytes:
		return "must be at most " + strconv.Itoa(MaxIDBytes) + " bytes"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "must be printable, without control characters"
		}
	}
	return ""
}

func checkText(s string) string {
	switch {
	case len(s) > MaxTextBytes:
		return "must be at most " + strconv.Itoa(MaxTextBytes) + " bytes"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return "must not contain control characters other than tab and line breaks"
		}
	}
	return ""
}

func checkSpecVersion(s string) string {
	if s != SpecVersion {
		return `must be "1.0"`
	}
	return ""
}

// checkSource wants a URI-reference (RFC 3986 §4.1), which is what
// CloudEvents requires of source: only the characters RFC 3986 allows,
// percent signs starting an escape, and a reference net/url can parse.
func checkSource(s string) string {
	const msg = "must be a URI-reference (RFC 3986)"
	if m := checkID(s); m != "" {
		return m
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return msg
			}
		default:
			return msg
		}
	}
	if _, err := url.Parse(s); err != nil {
		return msg
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func checkType(s string) string {
	switch {
	case IsInternalType(s):
		return "custos.* types are written by Custos itself; emitters may not send them"
	case !IsType(s):
		return "unknown event type"
	}
	return ""
}

func checkEventTime(t, now time.Time) string {
	if t.After(now.Add(futureSkew)) {
		return "must not be more than 24 hours in the future"
	}
	return ""
}

// checkContentType accepts application/json, optionally with
// charset=utf-8, the only encoding JSON may have between systems (RFC 8259
// §8.1).
func checkContentType(s string) string {
	const msg = `must be "application/json"`
	mt, params, err := mime.ParseMediaType(s)
	if err != nil || mt != "application/json" {
		return msg
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return msg
		}
	}
	return ""
}

// checkTraceParent accepts a W3C Trace Context version-00 traceparent.
func checkTraceParent(s string) string {
	const msg = "must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>, lower case"
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return msg
	}
	version, traceID, parentID, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	for _, part := range []string{version, traceID, parentID, flags} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return msg
			}
		}
	}
	if version != "00" || strings.Trim(traceID, "0") == "" || strings.Trim(parentID, "0") == "" {
		return msg
	}
	return ""
}

func checkTraceState(s string) string {
	if len(s) > maxTraceState {
		return "must be at most " + strconv.Itoa(maxTraceState) + " bytes"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "must be printable ASCII"
		}
	}
	return ""
}

// parseTime parses an RFC 3339 time, with or without fractional seconds.
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// checkBirthDate wants a real calendar date, not in the future and not
// implying an age over maxAge. "Future" is judged in the earliest time zone
// (UTC+14), so a child born today anywhere is accepted.
func checkBirthDate(s string, c *vctx) string {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil || len(s) != len(time.DateOnly) {
		return "must be a date in the form YYYY-MM-DD"
	}
	if d.Add(-14 * time.Hour).After(c.now) {
		return "must not be in the future"
	}
	if d.Before(c.now.AddDate(-maxAge-1, 0, 0)) {
		return "must not make the subject older than " + strconv.Itoa(maxAge)
	}
	return ""
}

func checkRetention(s string, _ *vctx) string {
	d, err := ParseDuration(s)
	if err != nil {
		return "must be an ISO 8601 duration such as P30D or P1Y6M"
	}
	if d.IsZero() {
		return "must be longer than zero"
	}
	return ""
}

func checkRegion(s string, _ *vctx) string {
	if !ValidRegion(s) {
		return "must be an officially assigned ISO 3166-1 alpha-2 code in upper case"
	}
	return ""
}

func idCheck(s string, _ *vctx) string   { return checkID(s) }
func textCheck(s string, _ *vctx) string { return checkText(s) }

// languageCheck accepts a well-formed BCP 47 language tag.
func languageCheck(s string, _ *vctx) string {
	if _, err := language.Parse(s); err != nil {
		return "must be a BCP 47 language tag such as zh-CN or en"
	}
	return ""
}

// term builds the check for one vocabulary.
func term(valid func(string) bool, what string) func(string, *vctx) string {
	return func(s string, _ *vctx) string {
		if !valid(s) {
			return "not a known " + what
		}
		return ""
	}
}

// fieldName reports whether s may name a personal value in fields.
func fieldName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// checkFieldValue wants a JSON string, number or boolean of at most
// MaxFieldBytes (a string's decoded length).
func checkFieldValue(raw json.RawMessage) string {
	const msg = "must be a JSON string, number or boolean"
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		return msg
	}
	switch c := trimmed[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(trimmed, &s); err != nil {
			return msg
		}
		if !utf8.Valid(trimmed) {
			return "must be valid UTF-8"
		}
		if len(s) > MaxFieldBytes {
			return "must be at most " + strconv.Itoa(MaxFieldBytes) + " bytes"
		}
	case c == 't' || c == 'f' || c == '-' || c >= '0' && c <= '9':
		if len(trimmed) > MaxFieldBytes {
			return "must be at most " + strconv.Itoa(MaxFieldBytes) + " bytes"
		}
	default:
		return msg
	}
	return ""
}
