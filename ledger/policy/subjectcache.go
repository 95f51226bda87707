package policy

import (
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// subjectCacheSize bounds how many subjects' converted states a set keeps:
// a few KiB each (about 15 KiB with five consents), so tens of MiB at most.
const subjectCacheSize = 4096

// subjectCache keeps the last converted state of recently decided subjects,
// by pseudonym. An entry is used only when the state it was made from is
// equal to the state asked for, field by field, so a stale entry is never
// used, whatever changed the state (an append, a later birthday, an
// erasure); the key only says which entry to compare with.
type subjectCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*cachedSubject
}

type cachedSubject struct {
	st SubjectState // a deep copy: the caller's slices may change later
	v  ast.Value
}

func newSubjectCache(max int) *subjectCache {
	return &subjectCache{max: max, m: make(map[string]*cachedSubject)}
}

// get returns the converted st of the subject with pseudonym p, converting
// it with convert unless the cache holds it. Events without a subject are
// not cached.
func (c *subjectCache) get(p string, st *SubjectState, convert func(*SubjectState) ast.Value) ast.Value {
	if p == "" {
		return convert(st)
	}
	c.mu.Lock()
	e := c.m[p]
	c.mu.Unlock()
	if e != nil && equalSubject(&e.st, st) {
		return e.v
	}
	v := convert(st)
	e = &cachedSubject{st: cloneSubject(st), v: v}
	c.mu.Lock()
	if len(c.m) >= c.max {
		// Dropping everything at once is simpler than an LRU and costs one
		// conversion per subject afterwards.
		clear(c.m)
	}
	c.m[p] = e
	c.mu.Unlock()
	return v
}

func equalSubject(a, b *SubjectState) bool {
	if a.Registered != b.Registered || a.Residence != b.Residence || a.Erased != b.Erased || a.LastSeq != b.LastSeq || a.StateSeq != b.StateSeq ||
		(a.Age == nil) != (b.Age == nil) || (a.Age != nil && *a.Age != *b.Age) ||
		!slices.Equal(a.ErasedCategories, b.ErasedCategories) || len(a.Consents) != len(b.Consents) {
		return false
	}
	for i := range a.Consents {
		if !equalConsent(&a.Consents[i], &b.Consents[i]) {
			return false
		}
	}
	return true
}

func equalConsent(a, b *ConsentState) bool {
	return a.ConsentID == b.ConsentID && a.NoticeVersion == b.NoticeVersion &&
		slices.Equal(a.Purposes, b.Purposes) && slices.Equal(a.Categories, b.Categories) &&
		slices.Equal(a.Destinations, b.Destinations) && slices.Equal(a.Recipients, b.Recipients) &&
		slices.Equal(a.Cookies, b.Cookies) && a.Guardian == b.Guardian && a.RisksInformed == b.RisksInformed && a.GrantedAt.Equal(b.GrantedAt) &&
		equalTime(a.Expires, b.Expires) && a.Withdrawn == b.Withdrawn && equalTime(a.WithdrawnAt, b.WithdrawnAt) &&
		slices.Equal(a.WithdrawnScope.Purposes, b.WithdrawnScope.Purposes) &&
		slices.Equal(a.WithdrawnScope.Destinations, b.WithdrawnScope.Destinations) &&
		slices.Equal(a.WithdrawnScope.Cookies, b.WithdrawnScope.Cookies) &&
		slices.Equal(a.WithdrawnScope.Categories, b.WithdrawnScope.Categories)
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func cloneSubject(st *SubjectState) SubjectState {
	out := *st
	if st.Age != nil {
		age := *st.Age
		out.Age = &age
	}
	out.ErasedCategories = slices.Clone(st.ErasedCategories)
	out.Consents = make([]ConsentState, len(st.Consents))
	for i, c := range st.Consents {
		c.Purposes, c.Categories, c.Destinations = slices.Clone(c.Purposes), slices.Clone(c.Categories), slices.Clone(c.Destinations)
		c.Recipients, c.Cookies = slices.Clone(c.Recipients), slices.Clone(c.Cookies)
		c.WithdrawnScope.Purposes, c.WithdrawnScope.Destinations = slices.Clone(c.WithdrawnScope.Purposes), slices.Clone(c.WithdrawnScope.Destinations)
		c.WithdrawnScope.Cookies, c.WithdrawnScope.Categories = slices.Clone(c.WithdrawnScope.Cookies), slices.Clone(c.WithdrawnScope.Categories)
		if c.Expires != nil {
			t := *c.Expires
			c.Expires = &t
		}
		if c.WithdrawnAt != nil {
			t := *c.WithdrawnAt
			c.WithdrawnAt = &t
		}
		out.Consents[i] = c
	}
	return out
}
