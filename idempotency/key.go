package idempotency

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// errMalformedKey is wrapped by every parseKey error.
var errMalformedKey = errors.New("malformed Idempotency-Key")

// parseKey parses an Idempotency-Key field value. The draft defines it as
// an RFC 9651 structured-field Item whose value is a String: a quoted
// string with \" and \\ as its only escapes, optionally followed by
// parameters, which are validated and ignored. Since clients such as
// Stripe's send keys unquoted, a bare value made of token characters
// (RFC 9110 tchar, ':' and '/'; a UUID, say) is accepted as well.
// Leading and trailing spaces are ignored; anything else is an error.
func parseKey(v string) (string, error) {
	p := sfParser{s: v}
	p.spaces()
	var key string
	var err error
	if p.peek() == '"' {
		key, err = p.str()
	} else {
		key, err = p.bareKey()
	}
	if err == nil {
		err = p.params()
	}
	if err == nil {
		p.spaces()
		if p.i < len(p.s) {
			err = p.fail("unexpected %q", p.s[p.i])
		}
	}
	if err != nil {
		return "", err
	}
	if key == "" {
		return "", fmt.Errorf("%w: empty key", errMalformedKey)
	}
	return key, nil
}

// sfParser is a cursor over a structured field value (RFC 9651 §4.2).
type sfParser struct {
	s string
	i int
}

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) fail(format string, args ...any) error {
	return fmt.Errorf("%w: at offset %d: %s", errMalformedKey, p.i, fmt.Sprintf(format, args...))
}

func (p *sfParser) spaces() {
	for p.peek() == ' ' {
		p.i++
	}
}

// str parses an sf-string; p.peek() is '"'.
func (p *sfParser) str() (string, error) {
	p.i++
	start := p.i
	var b strings.Builder // used only once an escape shows up
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			if start >= 0 { // no escapes: the key is a substring
				return p.s[start : p.i-1], nil
			}
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) || p.s[p.i+1] != '"' && p.s[p.i+1] != '\\' {
				return "", p.fail("bad escape in string")
			}
			if start >= 0 {
				b.WriteString(p.s[start:p.i])
				start = -1
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
			continue
		case c < 0x20 || c >= 0x7f:
			return "", p.fail("byte %#x in string", c)
		}
		if start < 0 {
			b.WriteByte(c)
		}
		p.i++
	}
	return "", p.fail("unterminated string")
}

// bareKey parses the lenient unquoted form: 1*( tchar / ":" / "/" ).
func (p *sfParser) bareKey() (string, error) {
	start := p.i
	for p.i < len(p.s) && isKeyChar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", p.fail("want a quoted string or a token")
	}
	return p.s[start:p.i], nil
}

func isKeyChar(c byte) bool { return isTchar(c) || c == ':' || c == '/' }

// params parses *( ";" *SP key [ "=" bare-item ] ), discarding them.
func (p *sfParser) params() error {
	for p.peek() == ';' {
		p.i++
		p.spaces()
		if c := p.peek(); !('a' <= c && c <= 'z' || c == '*') {
			return p.fail("bad parameter name")
		}
		for isParamKeyChar(p.peek()) {
			p.i++
		}
		if p.peek() == '=' {
			p.i++
			if err := p.bareItem(); err != nil {
				return err
			}
		}
	}
	return nil
}

func isParamKeyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("_-.*", c) >= 0
}

// bareItem validates any RFC 9651 bare item.
func (p *sfParser) bareItem() error {
	switch c := p.peek(); {
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == '"':
		_, err := p.str()
		return err
	case c == '*' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		for p.i++; isKeyChar(p.peek()); p.i++ {
		}
		return nil
	case c == ':':
		for p.i++; p.i < len(p.s) && isBase64(p.s[p.i]); p.i++ {
		}
		if p.peek() != ':' {
			return p.fail("unterminated byte sequence")
		}
		p.i++
		return nil
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return nil
		}
		p.i++
		return p.fail("bad boolean")
	case c == '@':
		p.i++
		return p.number()
	case c == '%':
		return p.displayString()
	}
	return p.fail("bad parameter value")
}

// number validates an sf-integer or sf-decimal.
func (p *sfParser) number() error {
	if p.peek() == '-' {
		p.i++
	}
	start := p.i
	for '0' <= p.peek() && p.peek() <= '9' {
		p.i++
	}
	intDigits := p.i - start
	if intDigits == 0 {
		return p.fail("want a digit")
	}
	if p.peek() != '.' {
		if intDigits > 15 {
			return p.fail("integer too long")
		}
		return nil
	}
	p.i++
	frac := p.i
	for '0' <= p.peek() && p.peek() <= '9' {
		p.i++
	}
	if intDigits > 12 || p.i == frac || p.i-frac > 3 {
		return p.fail("bad decimal")
	}
	return nil
}

// displayString validates an RFC 9651 Display String: %"...", with
// lowercase %xx escapes that decode to UTF-8.
func (p *sfParser) displayString() error {
	if !strings.HasPrefix(p.s[p.i:], `%"`) {
		return p.fail("bad display string")
	}
	p.i += 2
	var buf []byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(buf) {
				return p.fail("display string is not UTF-8")
			}
			return nil
		case c == '%':
			if p.i+2 >= len(p.s) || !isLowerHex(p.s[p.i+1]) || !isLowerHex(p.s[p.i+2]) {
				return p.fail("bad escape in display string")
			}
			buf = append(buf, unhex(p.s[p.i+1])<<4|unhex(p.s[p.i+2]))
			p.i += 3
		case c < 0x20 || c >= 0x7f:
			return p.fail("byte %#x in display string", c)
		default:
			buf = append(buf, c)
			p.i++
		}
	}
	return p.fail("unterminated display string")
}

func isBase64(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '+' || c == '/' || c == '='
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}
