// Package dmsv1compat serves the Huawei Cloud DMS "standard queue" REST API
// that existing DMS clients speak, v1.0 and v2 (routes.go: one route table
// under both prefixes), queue resource tags included (tags.go, stored as the
// queues' labels). It is an adapter and nothing more:
// every request becomes calls of the public dms.v1 gRPC API and every answer
// or error is translated back, so it keeps no state of its own.
package dmsv1compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"google.golang.org/grpc"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Config configures the DMS v1.0 REST API.
type Config struct {
	// MaxQueuesPerProject is no longer read: GET
	// /v1.0/{project_id}/quotas/dms asks the queue service for the project's
	// quota in force (QueueService.GetProjectQuotas).
	MaxQueuesPerProject int
}

// defaultQueueQuota is Huawei's default queue quota per project.
const defaultQueueQuota = 30

// NewHandler returns the handler of the DMS v1.0 and v2 REST APIs, which
// calls the dms.v1 services over conn. It routes on the full request path,
// so mount it at "/v1.0/" and "/v2/" (Prefixes) without stripping them.
func NewHandler(conn grpc.ClientConnInterface, cfg Config, logger *slog.Logger) http.Handler {
	if cfg.MaxQueuesPerProject <= 0 {
		cfg.MaxQueuesPerProject = defaultQueueQuota
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		queues:   dmsv1.NewQueueServiceClient(conn),
		producer: dmsv1.NewProducerServiceClient(conn),
		consumer: dmsv1.NewConsumerServiceClient(conn),
		cfg:      cfg,
		logger:   logger,
	}
	mux := http.NewServeMux()
	for _, version := range versions {
		for _, rt := range routes(h) {
			path := rt.path
			if override, ok := version.paths[path]; ok {
				path = override
			}
			mux.HandleFunc(rt.method+" "+version.prefix+"{project_id}"+path, h.serve(rt.endpoint))
		}
	}
	return h.routed(mux)
}

// routed answers what mux has no route for in the DMS error shape: an
// unknown URL with 404 and the DMS code for it, and a known URL with a
// method it does not serve with 405 and the Allow header (RFC 9110 §15.5.6),
// which DMS does not document but every HTTP client understands.
func (h *handler) routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values that Handler does not
			return
		}
		// Without a pattern, mux's answer is its own 404 or 405; only its
		// status and Allow header are kept.
		probe := &statusProbe{header: http.Header{}}
		route.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			h.writeError(w, r, errorFor(dmsv1.ErrorReason_ERROR_REASON_METHOD_NOT_ALLOWED,
				"the DMS API does not serve "+r.Method+" on "+r.URL.Path+"; it serves "+probe.header.Get("Allow")))
			return
		}
		h.writeError(w, r, newError(http.StatusNotFound, codeURLNotFound, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"no DMS API serves "+r.Method+" "+r.URL.Path))
	})
}

// statusProbe is a ResponseWriter that only remembers the status and headers.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

type handler struct {
	queues   dmsv1.QueueServiceClient
	producer dmsv1.ProducerServiceClient
	consumer dmsv1.ConsumerServiceClient
	cfg      Config
	logger   *slog.Logger
}

// endpoint serves one route. The target's ids are already validated; an
// error it returns is written in the DMS error shape.
type endpoint func(w http.ResponseWriter, r *http.Request, t target) error

func (h *handler) serve(e endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := parseTarget(r)
		if err == nil {
			err = e(w, r, t)
		}
		if err != nil {
			h.writeError(w, r, err)
		}
	}
}

// bodyRules says how large a request body may be and which DMS codes tell a
// client that it is too large or not JSON: the message APIs have codes of
// their own for both.
type bodyRules struct {
	maxBytes     int64
	notJSONCode  int
	tooLargeCode int
}

var (
	managementBody = bodyRules{maxBytes: 1 << 20, notJSONCode: codeRequestBodyNotJSON, tooLargeCode: codeRequestBodyNotJSON}
	// A send batch is at most 512 KiB of messages, but JSON escaping of a
	// binary-looking string body can make its text several times larger.
	messagesBody = bodyRules{maxBytes: 8 << 20, notJSONCode: codeMessageBodyNotJSON, tooLargeCode: codeMessageTooLarge}
)

func readJSON(w http.ResponseWriter, r *http.Request, rules bodyRules, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rules.maxBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return badRequest(rules.tooLargeCode, dmsv1.ErrorReason_ERROR_REASON_BATCH_TOO_LARGE,
			"the request body is larger than the limit of "+strconv.FormatInt(rules.maxBytes, 10)+" bytes")
	case err != nil:
		return badRequest(rules.notJSONCode, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"cannot read the request body: "+err.Error())
	}
	if err := checkUnicode(body, rules); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest(rules.notJSONCode, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"the request body is not the expected JSON: "+err.Error())
	}
	return nil
}

func writeJSON(w http.ResponseWriter, httpStatus int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	// Message bodies and texts go back as they came, not with <, > and &
	// escaped for HTML pages that this API never feeds.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a value this package built can get here, so it is a bug here.
		httpStatus = http.StatusInternalServerError
		body.Reset()
		body.WriteString(`{"code":10250002,"message":"cannot encode the response","error_code":"10250002",` +
			`"error_msg":"cannot encode the response","error":{"code":"10250002","message":"cannot encode the response"},` +
			`"reason":"INTERNAL"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body.Bytes())
}
