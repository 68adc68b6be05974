package catalog

import (
	"strings"
	"unicode/utf8"

	"github.com/opendms/dms/services/errs"
)

// Queue labels follow the rules of Huawei Cloud's tag service, which DMS
// queue tags are: at most 10 per queue, keys of 1 to 36 characters and
// values of up to 43, neither with any of = * < > \ , | / or a control
// character (they separate tags in the consoles' and APIs' filter syntax).
const (
	MaxLabels           = 10
	MaxLabelKeyLength   = 36
	MaxLabelValueLength = 43
	labelForbidden      = "=*<>\\,|/"
)

// ValidateLabelKey checks the key of a queue label.
func ValidateLabelKey(key string) error {
	if n := utf8.RuneCountInString(key); n < 1 || n > MaxLabelKeyLength {
		return errs.Wrapf(errs.ErrLabelInvalid, "label key %q must be 1 to %d characters, got %d", key, MaxLabelKeyLength, n)
	}
	return checkLabelText("key", key)
}

// ValidateLabelValue checks the value of a queue label.
func ValidateLabelValue(key, value string) error {
	if n := utf8.RuneCountInString(value); n > MaxLabelValueLength {
		return errs.Wrapf(errs.ErrLabelInvalid, "the value of label %q must be at most %d characters, got %d", key, MaxLabelValueLength, n)
	}
	return checkLabelText("value of label "+key, value)
}

// ValidateLabels checks a queue's labels, the count included.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return errs.Wrapf(errs.ErrLabelLimitExceeded, "a queue has at most %d labels, not %d", MaxLabels, len(labels))
	}
	for k, v := range labels {
		if err := ValidateLabelKey(k); err != nil {
			return err
		}
		if err := ValidateLabelValue(k, v); err != nil {
			return err
		}
	}
	return nil
}

func checkLabelText(what, s string) error {
	if !utf8.ValidString(s) {
		return errs.Wrapf(errs.ErrLabelInvalid, "label %s is not UTF-8 text", what)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || strings.ContainsRune(labelForbidden, r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return errs.Wrapf(errs.ErrLabelInvalid, "label %s %q has the character %q, which labels cannot have (= * < > \\ , | / and control characters)", what, s, r)
	}
	return nil
}
