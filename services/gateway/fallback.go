package gateway

import (
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// fallbackPattern catches what no other route of the server's mux takes.
const fallbackPattern = "/"

// probedMethods are the methods that fallback asks the mux about to tell
// 404 from 405.
var probedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// fallback answers the requests that no route of mux takes (a path outside
// every API, or a method that the path's route does not serve) in the
// native API's JSON error shape, as grpc-gateway's routing errors are,
// rather than net/http's plain-text "404 page not found".
func fallback(mux *http.ServeMux, gw *runtime.ServeMux) http.Handler {
	marshaler := &runtime.JSONPb{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var methods []string
		for _, m := range probedMethods {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != fallbackPattern {
				methods = append(methods, m)
			}
		}
		status := http.StatusNotFound
		err := errs.Wrapf(errs.ErrRequestInvalid, "no API serves %s %s", r.Method, r.URL.Path)
		if len(methods) > 0 {
			slices.Sort(methods)
			status = http.StatusMethodNotAllowed
			w.Header().Set("Allow", strings.Join(methods, ", "))
			err = errs.Wrapf(errs.ErrMethodNotAllowed, "%s is not served on %s; it serves %s", r.Method, r.URL.Path, strings.Join(methods, ", "))
		}
		runtime.DefaultHTTPErrorHandler(r.Context(), gw, marshaler, w, r, &runtime.HTTPStatusError{HTTPStatus: status, Err: rpcstatus.Error(err)})
	})
}
