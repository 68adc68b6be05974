package console_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/opendms/dms/services/console"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// The embedded index.html names its script; the script is served, whole
// or compressed, with the caching each kind of file needs.
func TestHandlerServesTheBuiltConsole(t *testing.T) {
	h := console.Handler()
	res := get(t, h, http.MethodGet, "/console/")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "text/html") || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("/console/: %d %v", res.StatusCode, res.Header)
	}
	script := regexp.MustCompile(`src="(/console/assets/[^"]+\.js)"`).FindStringSubmatch(string(body))
	if script == nil {
		t.Fatalf("index.html names no script under /console/assets/:\n%s", body)
	}

	plain := get(t, h, http.MethodGet, script[1])
	plainBody, _ := io.ReadAll(plain.Body)
	if plain.StatusCode != http.StatusOK || !strings.Contains(plain.Header.Get("Content-Type"), "javascript") ||
		!strings.Contains(plain.Header.Get("Cache-Control"), "immutable") || plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("%s: %d %v", script[1], plain.StatusCode, plain.Header)
	}
	zipped := get(t, h, http.MethodGet, script[1], "Accept-Encoding", "br, gzip;q=0.9")
	if zipped.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("%s with Accept-Encoding gzip: %v", script[1], zipped.Header)
	}
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if string(unzipped) != string(plainBody) || len(plainBody) < 1000 {
		t.Fatalf("compressed script is %d bytes unzipped, plain %d", len(unzipped), len(plainBody))
	}
}

func TestHandlerRefuses(t *testing.T) {
	h := console.Handler()
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/console/nothing-here.js", http.StatusNotFound},
		{http.MethodGet, "/console/../../etc/passwd", http.StatusNotFound},
		{http.MethodPost, "/console/", http.StatusMethodNotAllowed},
	} {
		if res := get(t, h, tc.method, tc.path); res.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
		}
	}
}
