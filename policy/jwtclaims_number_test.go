package policy

import (
	"encoding/json"
	"testing"
	"time"
)

// Number claims compare by exact decimal value: integers beyond 2^53
// written as floats or with an exponent no longer match their float64
// neighbours, while one value written several ways still matches.
func TestNumberEqual(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"1000", "1e3", true},
		{"1000", "1000.0", true},
		{"1000", "10E2", true},
		{"1000", "10000e-1", true},
		{"0.5", "5e-1", true},
		{"0", "-0", true},
		{"0", "0.000e7", true},
		{"-12.50", "-1.25e1", true},
		{"9007199254740993", "9007199254740993.0", true},
		{"9007199254740993", "9007199254740992.0", false},
		{"9007199254740993", "9.007199254740992e15", false},
		{"9007199254740993", "9007199254740993.4", false},
		{"1", "-1", false},
		{"1e100000000", "1e100000001", false},
		{"1e100000000", "10e99999999", true},
	} {
		if got := numberEqual(json.Number(tt.a), json.Number(tt.b)); got != tt.want {
			t.Errorf("numberEqual(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := numberEqual(json.Number(tt.b), json.Number(tt.a)); got != tt.want {
			t.Errorf("numberEqual(%s, %s) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// RequireClaim of a large integer refuses a token whose claim is another
// integer that float64 cannot tell apart (found by the policy review).
func TestJWT_RequireClaimLargeInteger(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustKey(t)(HS256Key(testSecret[:]))
	v := NewJWT(testNetwork, hs).RequireClaim("uid", uint64(9007199254740993))
	for lit, want := range map[string]bool{
		"9007199254740992.0":   false,
		"9.007199254740992e15": false,
		"9007199254740993.4":   false,
		"9007199254740993":     true,
		"9.007199254740993e15": true,
	} {
		claims := map[string]any{"sub": holder.subject(t), "exp": t0.Add(time.Hour).Unix(),
			JWTNetworkClaim: testNetwork.String(), JWTClassClaim: JWTClass.String(), "uid": json.RawMessage(lit)}
		_, err := v.Validate([]byte(hmacJWT(t, "HS256", testSecret[:], claims)), holder.id, t0)
		if (err == nil) != want {
			t.Errorf("uid %s: %v, want accepted %v", lit, err, want)
		}
	}
}
