package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// AK/SK request signing as the Huawei Cloud SDKs do it (algorithm
// SDK-HMAC-SHA256; the API Gateway signer of huaweicloud-sdk-go-v3,
// core/auth/signer): the client sends
//
//	X-Sdk-Date: 20060102T150405Z
//	Authorization: SDK-HMAC-SHA256 Access={AK}, SignedHeaders={h1;h2}, Signature={hex}
//
// where Signature = hex(HMAC-SHA256(SK, StringToSign)),
// StringToSign = "SDK-HMAC-SHA256\n" + X-Sdk-Date + "\n" + hex(SHA-256(CanonicalRequest)),
// and CanonicalRequest is
//
//	METHOD \n
//	each path segment percent-encoded (all but A-Z a-z 0-9 _ - ~ .), ending in "/" \n
//	query: key=value pairs, keys lower-cased, sorted by key then value, both encoded, joined by & \n
//	each signed header as name:trimmed-value \n (so a blank line follows the last) \n
//	the signed header names joined by ; \n
//	hex(SHA-256(body)), or the X-Sdk-Content-Sha256 header when given
//
// The SK is the HMAC key as it is (no derivation). A request is accepted
// within ReplayWindow of the server's clock either way.

// SignatureAlgorithm names the scheme in the Authorization header.
const SignatureAlgorithm = "SDK-HMAC-SHA256"

// ReplayWindow is how far X-Sdk-Date may be from the server's clock.
const ReplayWindow = 15 * time.Minute

const sdkDateFormat = "20060102T150405Z"

// IsSigned reports whether a request carries an AK/SK signature.
func IsSigned(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Authorization"), SignatureAlgorithm+" ")
}

// SignedRequest checks the signature of a request whose body is body.
func (a *Authenticator) SignedRequest(r *http.Request, body []byte) (authz.Principal, error) {
	ak, signed, signature, err := parseSignatureHeader(r.Header.Get("Authorization"))
	if err != nil {
		return authz.Principal{}, err
	}
	dateText := r.Header.Get("X-Sdk-Date")
	date, err := time.Parse(sdkDateFormat, dateText)
	if err != nil {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "a signed request needs X-Sdk-Date in the form 20060102T150405Z; it has %q", dateText)
	}
	if skew := a.now().Sub(date); skew > ReplayWindow || skew < -ReplayWindow {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialExpired, "X-Sdk-Date %s is more than %s from the server's time %s", dateText, ReplayWindow, a.now().UTC().Format(sdkDateFormat))
	}
	if !slices.Contains(signed, "x-sdk-date") {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "the signature must cover X-Sdk-Date (SignedHeaders has no x-sdk-date)")
	}
	rec, ok := a.cache.accessKey(ak)
	if !ok {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "access key %s is unknown or revoked", ak)
	}
	sk, err := a.sealer.open(ak, rec.GetSecret(), rec.GetSealingKeyId())
	if err != nil {
		return authz.Principal{}, errs.Wrapf(errs.ErrInternal, "%v", err)
	}
	want := make([]byte, 0, sha256.Size)
	ok = false
	for _, lowerKeys := range queryKeyCases(r.URL) {
		canonical := CanonicalRequest(r, signed, body, lowerKeys)
		want = SignString(sk, StringToSign(canonical, dateText), want[:0])
		if hmac.Equal(want, signature) {
			ok = true
			break
		}
	}
	if !ok {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "the signature of access key %s does not match the request (check the SK, the signed headers, the path and the body)", ak)
	}
	return authz.Principal{Kind: authz.User, UserID: rec.GetUserId(), Method: "access-key"}, nil
}

// queryKeyCases lists the query key spellings to try: the Go SDK v3
// lower-cases keys, the older API Gateway signers (Java, Python) keep
// them; when every key is lower case already both are the same.
func queryKeyCases(u *url.URL) []bool {
	for k := range u.Query() {
		if strings.ToLower(k) != k {
			return []bool{true, false}
		}
	}
	return []bool{true}
}

func parseSignatureHeader(h string) (ak string, signed []string, signature []byte, err error) {
	rest, ok := strings.CutPrefix(h, SignatureAlgorithm+" ")
	if !ok {
		return "", nil, nil, errs.Wrapf(errs.ErrCredentialInvalid, "the Authorization header is not %s", SignatureAlgorithm)
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	ak, sig := fields["Access"], fields["Signature"]
	signature, derr := hex.DecodeString(sig)
	if ak == "" || fields["SignedHeaders"] == "" || derr != nil || len(signature) != sha256.Size {
		return "", nil, nil, errs.Wrapf(errs.ErrCredentialInvalid, "the Authorization header must be `%s Access=AK, SignedHeaders=h1;h2, Signature=hex`", SignatureAlgorithm)
	}
	return ak, strings.Split(fields["SignedHeaders"], ";"), signature, nil
}

// CanonicalRequest is the canonical form of r that the signature covers;
// lowerKeys lower-cases the query keys as the Go SDK does.
func CanonicalRequest(r *http.Request, signedHeaders []string, body []byte, lowerKeys bool) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r.URL.Path))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.Query(), lowerKeys))
	b.WriteByte('\n')
	for _, name := range signedHeaders {
		values := r.Header.Values(name)
		if name == "host" {
			values = []string{r.Host}
		}
		values = slices.Clone(values)
		slices.Sort(values)
		for _, v := range values {
			b.WriteString(name)
			b.WriteByte(':')
			b.WriteString(strings.TrimSpace(v))
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	if sum := r.Header.Get("X-Sdk-Content-Sha256"); sum != "" {
		b.WriteString(sum)
	} else {
		h := sha256.Sum256(body)
		b.WriteString(hex.EncodeToString(h[:]))
	}
	return b.String()
}

func canonicalURI(path string) string {
	segments := strings.Split(path, "/")
	for i, s := range segments {
		segments[i] = sdkEscape(s)
	}
	out := strings.Join(segments, "/")
	if !strings.HasSuffix(out, "/") {
		out += "/"
	}
	return out
}

func canonicalQuery(q url.Values, lowerKeys bool) string {
	merged := map[string][]string{}
	for k, vs := range q {
		if lowerKeys {
			k = strings.ToLower(k)
		}
		merged[k] = append(merged[k], vs...)
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var pairs []string
	for _, k := range keys {
		vs := slices.Clone(merged[k])
		slices.Sort(vs)
		for _, v := range vs {
			pairs = append(pairs, sdkEscape(k)+"="+sdkEscape(v))
		}
	}
	return strings.Join(pairs, "&")
}

// sdkEscape percent-encodes every byte but A-Z a-z 0-9 _ - ~ . in upper
// case hex, as the signer does.
func sdkEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '~' || c == '.' {
			b.WriteByte(c)
			continue
		}
		const hexDigits = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// StringToSign is what the SK signs.
func StringToSign(canonicalRequest, sdkDate string) string {
	sum := sha256.Sum256([]byte(canonicalRequest))
	return SignatureAlgorithm + "\n" + sdkDate + "\n" + hex.EncodeToString(sum[:])
}

// SignString appends HMAC-SHA256(sk, stringToSign) to dst.
func SignString(sk, stringToSign string, dst []byte) []byte {
	h := hmac.New(sha256.New, []byte(sk))
	h.Write([]byte(stringToSign))
	return h.Sum(dst)
}
