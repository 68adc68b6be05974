// Package console serves the web console: a single-page application
// (TypeScript, React, Ant Design, ECharts; source in web/, built by Vite into
// dist/) embedded into dmsd, so that the one binary serves it at /console/
// on the HTTP listener. The console talks to the public REST API only, as
// any other client; this package adds no endpoint but the static files.
//
// dist/ is committed, so that `go run ./services/cmd/dmsd` needs no npm
// step; `make console` rebuilds it from web/ with the versions pinned in
// web/package-lock.json, and `make console-check` (in make test) fails when
// the committed files are not what the sources build.
package console

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed all:dist
var dist embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// Handler serves the console's files under Prefix. index.html is never
// cached, so that a new dmsd's console is loaded at once; the hashed assets
// are cached for a year. Files go gzip-compressed to clients that take it
// (the script is 1.8 MB, 0.6 MB compressed).
func Handler() http.Handler {
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed directive guarantees dist exists
	}
	h := &handler{files: files, gz: map[string][]byte{}}
	return h
}

type handler struct {
	files fs.FS
	mu    sync.Mutex
	gz    map[string][]byte // compressed files, made on first request
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console serves GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(r.URL.Path, Prefix)), "/")
	if name == "" {
		name = "index.html"
	}
	data, err := fs.ReadFile(h.files, name)
	if err != nil {
		// The console routes in the URL's fragment: any other path is a
		// file that does not exist.
		http.NotFound(w, r)
		return
	}
	if strings.HasPrefix(name, "assets/") {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Add("Vary", "Accept-Encoding")
	if len(data) > 1024 && acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		data = h.compressed(name, data)
	}
	// ServeContent sets Content-Type from the name, answers Range and
	// If-Modified-Since requests; embedded files have no time.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

func (h *handler) compressed(name string, data []byte) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if z, ok := h.gz[name]; ok {
		return z
	}
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = zw.Write(data)
	_ = zw.Close()
	h.gz[name] = b.Bytes()
	return h.gz[name]
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}
