package dmsv1compat

import (
	"fmt"
	"unicode/utf8"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// checkUnicode refuses a request body that is not Unicode text: bytes that
// are not UTF-8, or a \u escape of half a UTF-16 surrogate pair. JSON text
// is UTF-8 (RFC 8259 §8.1), and Go's decoder would silently turn either
// into U+FFFD, so a message would be stored with other bytes than were sent.
func checkUnicode(body []byte, rules bodyRules) error {
	if !utf8.Valid(body) {
		return badRequest(rules.notJSONCode, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			fmt.Sprintf("the request body is not valid UTF-8 (first bad byte at offset %d); JSON text must be UTF-8", firstInvalidUTF8(body)))
	}
	if at := loneSurrogate(body); at >= 0 {
		return badRequest(rules.notJSONCode, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			fmt.Sprintf("the request body has a \\u escape of an unpaired UTF-16 surrogate at offset %d, which is no character", at))
	}
	return nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// loneSurrogate returns the offset of the first \uD800-\uDFFF escape inside a
// JSON string that is not a high surrogate followed by a low one, or -1. It
// is lenient with malformed JSON, which the decoder refuses anyway.
func loneSurrogate(b []byte) int {
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			if i+1 >= len(b) || b[i+1] != 'u' {
				i++ // an escaped character such as \" or \\
				continue
			}
			u, ok := hex4(b, i+2)
			if !ok {
				continue
			}
			switch {
			case u >= 0xD800 && u <= 0xDBFF:
				if low, ok := hex4(b, i+8); ok && i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' && low >= 0xDC00 && low <= 0xDFFF {
					i += 11
					continue
				}
				return i
			case u >= 0xDC00 && u <= 0xDFFF:
				return i
			}
			i += 5
		}
	}
	return -1
}

// hex4 reads four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(b) {
		return 0, false
	}
	var v rune
	for _, c := range b[at : at+4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			v |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}
