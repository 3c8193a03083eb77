package catalog

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// Fixed BLAKE3-256 vectors, computed once with a separate program using
// lukechampine.com/blake3 (blake3.Sum256). The vectors of "" and "abc"
// also match the official BLAKE3 test vectors.
const (
	blake3Orders = "d86ec90a21034096602389cb4de70a54e5ee462e590b6b7299a1f49683289b64"
	blake3Empty  = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	blake3MyApp  = "e03989181c8f0a8f6d7dd41c2780886a44dce46ee9419d91d2c2b99851afd811"
	blake3Valid  = "b5f8107ffc4da5efab7269490b6ade7ede05fa9bb15b8e7776c09f2a1f378caf"
	blake3Abc    = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
	// blake3 of the first 63 characters of blake3Orders.
	blake3Orders63 = "e417f20fcc750302798c9c2e61c71d9a3385ea7354857df4778d5820c0a6e874"
	// blake3 of blake3Orders followed by "0" (65 characters).
	blake3Orders65 = "1554b35ef4ed670f45ea15ecb7eb9f5814e5c157c9d88c88f679004e287521d9"
	// blake3 of the first 63 characters of blake3Orders followed by "g"
	// (64 characters, not all hex).
	blake3Orders64g = "ec356ef0f87d5b700368aab2a071f8f6d07201aa8c6ef248c25175ca53f1d641"
	// blake3 of "0x" followed by the first 62 characters of blake3Orders.
	blake3Orders0x = "4bb4c606b62ac9a85fb53f95bb5cecbfe8ed06e90b575e0b5540c2c95d5565f3"
	// blake3(blake3("orders") ‖ "info"), the vector of ID.Derive.
	blake3DeriveOrdersInfo = "2902fd2ba0a383ad9cb86839724fb1f7a64332abd1257fe39f94ac025c17f1b2"
)

func TestIDFromString_Vectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"name is hashed", "orders", blake3Orders},
		{"empty string is hashed", "", blake3Empty},
		{"name with dash", "my-app", blake3MyApp},
		{"tag name", "validator", blake3Valid},
		{"official vector abc", "abc", blake3Abc},
		{"64 lowercase hex decodes", blake3Orders, blake3Orders},
		{"64 uppercase hex decodes", strings.ToUpper(blake3Orders), blake3Orders},
		{"64 mixed-case hex decodes", "D86EC90A21034096602389cb4de70a54e5ee462e590b6b7299a1f49683289B64", blake3Orders},
		{"all-zero hex decodes", strings.Repeat("0", 64), strings.Repeat("0", 64)},
		{"63 hex chars are hashed", blake3Orders[:63], blake3Orders63},
		{"65 hex chars are hashed", blake3Orders + "0", blake3Orders65},
		{"64 chars with a non-hex one are hashed", blake3Orders[:63] + "g", blake3Orders64g},
		{"0x prefix is not hex", "0x" + blake3Orders[:62], blake3Orders0x},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := IDFromString(tt.in)
			if got.String() != tt.want {
				t.Fatalf("IDFromString(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestIDFromString_NameEqualsItsHex(t *testing.T) {
	if IDFromString("orders") != IDFromString(blake3Orders) {
		t.Fatal(`"orders" and the hex of blake3("orders") must name the same ID`)
	}
	if IDFromString("orders") == IDFromString("Orders") {
		t.Fatal("names are case-sensitive: they are hashed, not decoded")
	}
}

func TestHashID_AlwaysHashes(t *testing.T) {
	// HashID does not apply the hex rule: hashing the 64-char hex string
	// gives something other than the decoded bytes.
	if got := HashID([]byte("orders")).String(); got != blake3Orders {
		t.Fatalf("HashID(orders) = %s, want %s", got, blake3Orders)
	}
	if HashID([]byte(blake3Orders)) == IDFromString(blake3Orders) {
		t.Fatal("HashID of a hex string must hash it, not decode it")
	}
}

func TestID_Derive(t *testing.T) {
	got := IDFromString("orders").Derive([]byte("info"))
	if got.String() != blake3DeriveOrdersInfo {
		t.Fatalf("Derive = %s, want %s", got, blake3DeriveOrdersInfo)
	}
	if IDFromString("orders").Derive(nil) == IDFromString("orders") {
		t.Fatal("Derive(nil) must hash, not return the ID itself")
	}
}

func TestID_String(t *testing.T) {
	id := IDFromString("orders")
	s := id.String()
	if len(s) != 64 || s != strings.ToLower(s) {
		t.Fatalf("String() = %q, want 64 lowercase hex chars", s)
	}
	if back := IDFromString(s); back != id {
		t.Fatalf("IDFromString(String()) = %s, want %s", back, id)
	}
	if got, want := id.Short(), blake3Orders[:10]; got != want {
		t.Fatalf("Short() = %q, want %q", got, want)
	}
	if len(ID{}.Short()) != 10 {
		t.Fatalf("Short() of the zero ID = %q, want 10 chars", ID{}.Short())
	}
}

func TestIDFromBytes_Length(t *testing.T) {
	raw, _ := hex.DecodeString(blake3Orders)
	id, err := IDFromBytes(raw)
	if err != nil || id.String() != blake3Orders {
		t.Fatalf("IDFromBytes = %s, %v; want %s", id, err, blake3Orders)
	}
	raw[0] ^= 0xff
	if id.String() != blake3Orders {
		t.Fatal("IDFromBytes must copy its input")
	}
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := IDFromBytes(make([]byte, n)); err == nil {
			t.Errorf("IDFromBytes(%d bytes): want an error", n)
		}
	}
}

func TestID_IsZeroAndCompare(t *testing.T) {
	var zero ID
	if !zero.IsZero() || IDFromString("orders").IsZero() {
		t.Fatal("IsZero is wrong")
	}
	lo := IDFromString(strings.Repeat("0", 63) + "1")
	hi := IDFromString("ff" + strings.Repeat("0", 62))
	if lo.Compare(hi) != -1 || hi.Compare(lo) != 1 || lo.Compare(lo) != 0 || zero.Compare(lo) != -1 {
		t.Fatal("Compare does not order IDs by their bytes")
	}
}

func TestID_TextRoundTrip(t *testing.T) {
	id := IDFromString("orders")
	b, err := id.MarshalText()
	if err != nil || string(b) != blake3Orders {
		t.Fatalf("MarshalText = %q, %v; want %q", b, err, blake3Orders)
	}
	var back ID
	if err := back.UnmarshalText(b); err != nil || back != id {
		t.Fatalf("UnmarshalText(MarshalText()) = %s, %v; want %s", back, err, id)
	}
	// UnmarshalText applies the string rule: names are accepted too.
	var named ID
	if err := named.UnmarshalText([]byte("orders")); err != nil || named != id {
		t.Fatalf("UnmarshalText(orders) = %s, %v; want %s", named, err, id)
	}
}

func TestID_JSON(t *testing.T) {
	type config struct {
		Network NetworkID `json:"network"`
		Tags    []Tag     `json:"tags"`
	}
	var c config
	in := `{"network":"my-app","tags":["validator","` + strings.ToUpper(blake3Orders) + `"]}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.Network.String() != blake3MyApp || c.Tags[0].String() != blake3Valid || c.Tags[1].String() != blake3Orders {
		t.Fatalf("decoded %+v", c)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"network":"` + blake3MyApp + `","tags":["` + blake3Valid + `","` + blake3Orders + `"]}`
	if string(out) != want {
		t.Fatalf("json = %s\nwant   %s", out, want)
	}
}
