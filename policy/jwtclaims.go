package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// registeredClaims are the registered claims Validate judges; nil means
// absent.
type registeredClaims struct {
	iss, sub      *string
	aud           []string
	exp, nbf, iat *time.Time
}

func parseRegisteredClaims(m jwt.MapClaims) (registeredClaims, error) {
	var c registeredClaims
	var err error
	str := func(name string) (*string, error) {
		v, ok := m[name]
		if !ok {
			return nil, nil
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a string", ErrTicketMalformed, name)
		}
		return &s, nil
	}
	date := func(name string) (*time.Time, error) {
		v, ok := m[name]
		if !ok {
			return nil, nil
		}
		t, ok := numericDate(v)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a date", ErrTicketMalformed, name)
		}
		return &t, nil
	}
	if c.iss, err = str("iss"); err != nil {
		return c, err
	}
	if c.sub, err = str("sub"); err != nil {
		return c, err
	}
	if c.exp, err = date("exp"); err != nil {
		return c, err
	}
	if c.nbf, err = date("nbf"); err != nil {
		return c, err
	}
	if c.iat, err = date("iat"); err != nil {
		return c, err
	}
	switch a := m["aud"].(type) {
	case nil:
		if _, ok := m["aud"]; ok {
			return c, fmt.Errorf("%w: aud is null", ErrTicketMalformed)
		}
	case string:
		c.aud = []string{a}
	case []any:
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return c, fmt.Errorf("%w: aud holds a non-string", ErrTicketMalformed)
			}
			c.aud = append(c.aud, s)
		}
	default:
		return c, fmt.Errorf("%w: aud is neither a string nor an array", ErrTicketMalformed)
	}
	return c, nil
}

// numericDate decodes a JWT NumericDate (unix seconds, possibly
// fractional) decoded as a json.Number.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		if i < -maxNumericDate || i > maxNumericDate {
			return time.Time{}, false
		}
		return time.Unix(i, 0), true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < -maxNumericDate || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// normalizeJSON returns v as encoding/json would decode its encoding, with
// numbers as json.Number.
func normalizeJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	if err := d.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// jsonEqual compares two decoded JSON values (numbers as json.Number).
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numberEqual(x, y)
	case []any:
		y, ok := b.([]any)
		return ok && slices.EqualFunc(x, y, jsonEqual)
	case map[string]any:
		y, ok := b.(map[string]any)
		return ok && maps.EqualFunc(x, y, jsonEqual)
	}
	return false
}

// numberEqual compares JSON numbers by their exact decimal value, so
// 1e3, 1000 and 1000.0 are equal and integers beyond 2^53 stay apart (as
// float64 they did not: 9007199254740992.0 matched 9007199254740993).
func numberEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, okA := canonNumber(string(a))
	y, okB := canonNumber(string(b))
	return okA && okB && x.neg == y.neg && x.digits == y.digits && x.exp.Cmp(y.exp) == 0
}

// canonical is a decimal number as ±digits × 10^exp, digits without
// leading or trailing zeros (zero: no digits, exponent 0, not negative).
type canonical struct {
	neg    bool
	digits string
	exp    *big.Int
}

// canonNumber parses a JSON number (-?int(.frac)?([eE][+-]?digits)?)
// without evaluating it: a huge exponent costs its digits, nothing more.
func canonNumber(s string) (canonical, bool) {
	c := canonical{exp: new(big.Int)}
	if strings.HasPrefix(s, "-") {
		c.neg, s = true, s[1:]
	}
	mant := s
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		if _, ok := c.exp.SetString(s[i+1:], 10); !ok {
			return c, false
		}
		mant = s[:i]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return c, false
	}
	c.exp.Sub(c.exp, big.NewInt(int64(len(frac))))
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return canonical{exp: new(big.Int)}, true
	}
	trimmed := strings.TrimRight(digits, "0")
	c.exp.Add(c.exp, big.NewInt(int64(len(digits)-len(trimmed))))
	c.digits = trimmed
	return c, true
}
