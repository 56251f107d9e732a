package idempotency

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	valid := map[string]string{
		`"8e03978e-40d5-43e8-bc93-6894a57f9324"`: "8e03978e-40d5-43e8-bc93-6894a57f9324",
		`8e03978e-40d5-43e8-bc93-6894a57f9324`:   "8e03978e-40d5-43e8-bc93-6894a57f9324",
		`KG5LxwFBepaKHyUD`:                       "KG5LxwFBepaKHyUD",
		`"with space and ; , ="`:                 "with space and ; , =",
		`"esc \"quote\" and \\ backslash"`:       `esc "quote" and \ backslash`,
		`  "padded"  `:                           "padded",
		`"k";a`:                                  "k",
		`"k"; a=1;b=-2.5;c="s";d=tok/en:x;e=:aGk=:;f=?0;g=@1700000000;h=%"caf%c3%a9";*i=*`: "k",
		`bare;v=1`:     "bare",
		`urn:uuid:abc`: "urn:uuid:abc",
	}
	for in, want := range valid {
		got, err := parseKey(in)
		if err != nil || got != want {
			t.Errorf("parseKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	invalid := []string{
		``, `   `, `""`, `"unterminated`, `"bad \n escape"`, `"trailing\"`, "\"tab\there\"",
		`"é"`, `"a" "b"`, `"a", "b"`, `a b`, `a,b`, `(x)`, `"x";`, `"x";A=1`, `"x";a=`,
		`"x";a=1.2345`, `"x";a=1234567890123.5`, `"x";a=1234567890123456`, `"x";a=-`,
		`"x";a=?2`, `"x";a=:abc`, `"x";a=%"%c3"`, `"x";a=%"%C3%A9"`, `"x";a=%x`, `"x";a=(`,
		`"x";a=@x`, `"x";a=%"unterminated`,
	}
	for _, in := range invalid {
		if got, err := parseKey(in); !errors.Is(err, errMalformedKey) {
			t.Errorf("parseKey(%q) = %q, %v; want errMalformedKey", in, got, err)
		}
	}
}

// quote serializes k as an sf-string (RFC 9651 §4.1.6).
func quote(k string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(k) + `"`
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`"k"`, `k`, `"a\"b";p=1`, `"x";a=%"caf%c3%a9"`, `"x";a=1.5;b=:aGk=:`, `(`, `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		k, err := parseKey(in)
		if err != nil {
			if !errors.Is(err, errMalformedKey) {
				t.Fatalf("error %v does not wrap errMalformedKey", err)
			}
			return
		}
		if k == "" {
			t.Fatal("empty key accepted")
		}
		for i := range len(k) {
			if k[i] < 0x20 || k[i] >= 0x7f {
				t.Fatalf("key %q holds byte %#x", k, k[i])
			}
		}
		if again, err := parseKey(quote(k)); err != nil || again != k {
			t.Fatalf("quoted key %q parses as %q, %v", quote(k), again, err)
		}
	})
}
