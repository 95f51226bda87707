package event

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrDuration is wrapped by every error from ParseDuration.
var ErrDuration = errors.New("invalid ISO 8601 duration")

// Limits that keep every accepted duration representable and AddTo free of
// overflow: each component has at most 9 integer digits, and a seconds
// fraction at most 18 digits (enough that Duration.String, which prints the
// shortest exact form of the float, always parses back).
const (
	maxDurationDigits = 9
	maxFractionDigits = 18
	maxDurationLen    = 80
)

// Duration is an ISO 8601 duration in the format PnYnMnDTnHnMnS or PnW
// (ISO 8601-1:2019 §5.5.2.4; weeks are not combined with other components,
// as in the basic format). Only the seconds may carry a decimal fraction.
// Negative durations do not exist in ISO 8601 and are not accepted.
type Duration struct {
	Years, Months, Weeks, Days, Hours, Minutes int
	Seconds                                    float64
}

// ParseDuration parses an ISO 8601 duration such as P1Y2M3DT4H5M6S, P2W,
// PT0.5S or P30D. It rejects "P", "PT", a trailing "T", signs, lower-case
// designators, out-of-order or repeated components, fractions on anything
// but seconds, and components too large to add to a time. The error never
// repeats the input.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	if len(s) > maxDurationLen {
		return d, fmt.Errorf("%w: longer than %d bytes", ErrDuration, maxDurationLen)
	}
	rest, ok := strings.CutPrefix(s, "P")
	if !ok {
		return d, fmt.Errorf("%w: must start with P", ErrDuration)
	}
	date, tm, hasT := strings.Cut(rest, "T")
	if date == "" && !hasT {
		return d, fmt.Errorf("%w: no components", ErrDuration)
	}
	if hasT && tm == "" {
		return d, fmt.Errorf("%w: no time components after T", ErrDuration)
	}
	n := 0
	err := components(date, "YMWD", func(des byte, v int, _ float64) {
		n++
		switch des {
		case 'Y':
			d.Years = v
		case 'M':
			d.Months = v
		case 'W':
			d.Weeks = v
		case 'D':
			d.Days = v
		}
	})
	if err != nil {
		return Duration{}, err
	}
	if strings.Contains(date, "W") && (n > 1 || hasT) {
		return Duration{}, fmt.Errorf("%w: weeks cannot be combined with other components", ErrDuration)
	}
	err = components(tm, "HMS", func(des byte, v int, f float64) {
		switch des {
		case 'H':
			d.Hours = v
		case 'M':
			d.Minutes = v
		case 'S':
			d.Seconds = f
		}
	})
	if err != nil {
		return Duration{}, err
	}
	return d, nil
}

// components parses a run of <number><designator> pairs whose designators
// appear in the order given, each at most once.
func components(s, order string, set func(des byte, v int, f float64)) error {
	pos := 0
	for s != "" {
		i := digits(s)
		if i == 0 {
			return fmt.Errorf("%w: expected a number", ErrDuration)
		}
		if i > maxDurationDigits {
			return fmt.Errorf("%w: a component has more than %d digits", ErrDuration, maxDurationDigits)
		}
		whole := s[:i]
		frac := ""
		if i < len(s) && (s[i] == '.' || s[i] == ',') {
			j := digits(s[i+1:])
			if j == 0 || j > maxFractionDigits {
				return fmt.Errorf("%w: a fraction needs 1 to %d digits", ErrDuration, maxFractionDigits)
			}
			frac = s[i+1 : i+1+j]
			i += 1 + j
		}
		if i >= len(s) {
			return fmt.Errorf("%w: a number lacks its designator", ErrDuration)
		}
		des := s[i]
		k := strings.IndexByte(order[pos:], des)
		if k < 0 {
			return fmt.Errorf("%w: unknown, repeated or out-of-order designator", ErrDuration)
		}
		pos += k + 1
		v, err := strconv.Atoi(whole)
		if err != nil {
			return fmt.Errorf("%w: expected a number", ErrDuration)
		}
		f := float64(v)
		if frac != "" {
			if des != 'S' {
				return fmt.Errorf("%w: only seconds may have a fraction", ErrDuration)
			}
			f, err = strconv.ParseFloat(whole+"."+frac, 64)
			if err != nil || f >= 1e9 {
				return fmt.Errorf("%w: seconds out of range", ErrDuration)
			}
		}
		set(des, v, f)
		s = s[i+1:]
	}
	return nil
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// IsZero reports whether every component is zero.
func (d Duration) IsZero() bool { return d == Duration{} }

// AddTo returns t plus d. Years, months, weeks and days are calendar
// arithmetic in t's location (time.AddDate, so P1M from 31 January
// normalises like AddDate does); hours, minutes and seconds are elapsed
// time.
func (d Duration) AddTo(t time.Time) time.Time {
	t = t.AddDate(d.Years, d.Months, 7*d.Weeks+d.Days)
	whole, frac := math.Modf(d.Seconds)
	secs := int64(d.Hours)*3600 + int64(d.Minutes)*60 + int64(whole)
	nanos := int64(math.Round(frac * 1e9))
	// time.Duration overflows after about 292 years of hours; Unix
	// arithmetic does not.
	return time.Unix(t.Unix()+secs, int64(t.Nanosecond())+nanos).In(t.Location())
}

// String formats d in the canonical form ParseDuration accepts: zero
// components left out, "P0D" for the zero duration.
func (d Duration) String() string {
	if d.IsZero() {
		return "P0D"
	}
	var b strings.Builder
	b.WriteByte('P')
	put := func(v int, des byte) {
		if v != 0 {
			b.WriteString(strconv.Itoa(v))
			b.WriteByte(des)
		}
	}
	put(d.Years, 'Y')
	put(d.Months, 'M')
	put(d.Weeks, 'W')
	put(d.Days, 'D')
	if d.Hours != 0 || d.Minutes != 0 || d.Seconds != 0 {
		b.WriteByte('T')
		put(d.Hours, 'H')
		put(d.Minutes, 'M')
		if d.Seconds != 0 {
			b.WriteString(strconv.FormatFloat(d.Seconds, 'f', -1, 64))
			b.WriteByte('S')
		}
	}
	return b.String()
}
