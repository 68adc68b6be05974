package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// route is one path template of the public REST API with the methods that
// serve it, read from the OpenAPI document, which protoc-gen-openapiv2 made
// from the same http annotations as grpc-gateway's routes.
type route struct {
	path    *regexp.Regexp
	methods []string
}

// routesOf reads the path templates of an OpenAPI (Swagger 2.0) document: a
// path parameter matches its declared pattern (resource names span several
// segments), or one segment when it declares none.
func routesOf(document []byte) ([]route, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name    string `json:"name"`
				In      string `json:"in"`
				Pattern string `json:"pattern"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
		return nil, fmt.Errorf("gateway: reading the OpenAPI document: %w", err)
	}
	var routes []route
	for template, operations := range doc.Paths {
		patterns := map[string]string{}
		var methods []string
		for method, op := range operations {
			methods = append(methods, strings.ToUpper(method))
			for _, p := range op.Parameters {
				if p.In == "path" && p.Pattern != "" {
					patterns[p.Name] = p.Pattern
				}
			}
		}
		var expr strings.Builder
		expr.WriteString("^")
		for rest := template; rest != ""; {
			open := strings.IndexByte(rest, '{')
			if open < 0 {
				expr.WriteString(regexp.QuoteMeta(rest))
				break
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 {
				return nil, fmt.Errorf("gateway: OpenAPI path %q has an unclosed parameter", template)
			}
			expr.WriteString(regexp.QuoteMeta(rest[:open]))
			pattern, ok := patterns[rest[open+1:open+end]]
			if !ok {
				pattern = "[^/]+"
			}
			expr.WriteString("(?:" + pattern + ")")
			rest = rest[open+end+1:]
		}
		expr.WriteString("$")
		re, err := regexp.Compile(expr.String())
		if err != nil {
			return nil, fmt.Errorf("gateway: OpenAPI path %q: %w", template, err)
		}
		sort.Strings(methods)
		routes = append(routes, route{path: re, methods: methods})
	}
	return routes, nil
}

// allowed lists the methods that serve path, sorted.
func allowed(routes []route, path string) []string {
	var methods []string
	for _, r := range routes {
		if r.path.MatchString(path) {
			methods = append(methods, r.methods...)
		}
	}
	slices.Sort(methods)
	return slices.Compact(methods)
}

// routingErrors answers requests that no route takes in the error shape of
// the API, with a stable reason: a known URL with another method is 405 with
// the Allow header (RFC 9110 §15.5.6), not grpc-gateway's 501.
func routingErrors(routes []route) runtime.RoutingErrorHandlerFunc {
	return func(ctx context.Context, mux *runtime.ServeMux, marshaler runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
		var err error
		switch httpStatus {
		case http.StatusMethodNotAllowed:
			methods := allowed(routes, r.URL.Path)
			w.Header().Set("Allow", strings.Join(methods, ", "))
			err = errs.Wrapf(errs.ErrMethodNotAllowed, "%s is not served on %s; it serves %s", r.Method, r.URL.Path, strings.Join(methods, ", "))
		case http.StatusNotFound:
			err = errs.Wrapf(errs.ErrRequestInvalid, "no API serves %s %s", r.Method, r.URL.Path)
		default:
			err = errs.Wrapf(errs.ErrRequestInvalid, "%s %s: %s", r.Method, r.URL.Path, http.StatusText(httpStatus))
		}
		runtime.DefaultHTTPErrorHandler(ctx, mux, marshaler, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: rpcstatus.Error(err)})
	}
}

// withReason gives errors that grpc-gateway raises itself (a body that is
// not the request's JSON, a query parameter of the wrong type) the stable
// reason that errors of the services carry.
func withReason(ctx context.Context, mux *runtime.ServeMux, marshaler runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if rpcstatus.Reason(err) == "" {
		if s, ok := status.FromError(err); ok && s.Code() == codes.InvalidArgument {
			err = rpcstatus.Error(errs.Wrapf(errs.ErrRequestInvalid, "%s", s.Message()))
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, marshaler, w, r, err)
}
