package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// rightsTable is data.custos.config.rights: how long a rights request may stay
// unanswered, by jurisdiction and right, and which jurisdiction a residence
// falls under. The Rego rules read the same data for the rights_deadline
// obligation.
type rightsTable struct {
	defaultJurisdiction string
	byResidence         map[string]string
	days                map[string]map[string]int
}

func parseRights(v any) (rightsTable, error) {
	t := rightsTable{byResidence: map[string]string{}, days: map[string]map[string]int{}}
	if v == nil {
		return t, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return t, errors.New("not an object")
	}
	if d, present := m["default_jurisdiction"]; present {
		s, ok := d.(string)
		if !ok {
			return t, errors.New("default_jurisdiction is not a string")
		}
		t.defaultJurisdiction = s
	}
	if r, present := m["jurisdiction_by_residence"]; present {
		rm, ok := r.(map[string]any)
		if !ok {
			return t, errors.New("jurisdiction_by_residence is not an object")
		}
		for residence, j := range rm {
			s, ok := j.(string)
			if !ok {
				return t, fmt.Errorf("jurisdiction_by_residence.%s is not a string", residence)
			}
			t.byResidence[residence] = s
		}
	}
	if d, present := m["deadline_days"]; present {
		dm, ok := d.(map[string]any)
		if !ok {
			return t, errors.New("deadline_days is not an object")
		}
		for j, rights := range dm {
			rm, ok := rights.(map[string]any)
			if !ok {
				return t, fmt.Errorf("deadline_days.%s is not an object", j)
			}
			t.days[j] = map[string]int{}
			for right, n := range rm {
				days, err := positiveInt(n)
				if err != nil {
					return t, fmt.Errorf("deadline_days.%s.%s: %w", j, right, err)
				}
				t.days[j][right] = days
			}
		}
	}
	return t, nil
}

func positiveInt(v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	i, err := n.Int64()
	if err != nil || i <= 0 || i > 3660 {
		return 0, errors.New("not a whole number of days between 1 and 3660")
	}
	return int(i), nil
}

// RightsDeadline is how long a request to exercise right may stay unanswered
// for a subject residing in residence (an ISO 3166-1 code), from
// data.custos.config.rights: the residence's jurisdiction, else the default
// jurisdiction; that jurisdiction's deadline for the right, else its
// "default" entry, else the default jurisdiction's. Zero when the set
// configures no deadline at all, which a rights register should treat as due
// at once.
func (s *Set) RightsDeadline(right, residence string) time.Duration {
	t := s.rights
	j, ok := t.byResidence[residence]
	if !ok {
		j = t.defaultJurisdiction
	}
	for _, jurisdiction := range []string{j, t.defaultJurisdiction} {
		for _, key := range []string{right, "default"} {
			if days, ok := t.days[jurisdiction][key]; ok {
				return time.Duration(days) * 24 * time.Hour
			}
		}
	}
	return 0
}

// Jurisdiction is the law that governs a subject residing in residence:
// data.custos.config.rights.jurisdiction_by_residence, else its
// default_jurisdiction (docs/policies.md, "Which law governs a subject's
// transfers").
func (s *Set) Jurisdiction(residence string) string {
	if j, ok := s.rights.byResidence[residence]; ok {
		return j
	}
	return s.rights.defaultJurisdiction
}
