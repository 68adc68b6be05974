package kafka

// ApiVersions (key 18): versions 0-4.
//
// Lists every API of the dispatch table with the versions it serves. A
// request at a version above 4 is answered at v0 with UNSUPPORTED_VERSION
// and the full list, so that the client retries at one it finds there.
// The client software name and version (v3+) are not checked.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.ApiVersions.Int16(), 0, 4, (*Server).apiVersions) }

func (s *Server) apiVersions(_ context.Context, r *request, req *kmsg.ApiVersionsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if a := apis[r.key]; r.version < a.min || r.version > a.max {
		resp.Version = 0
		resp.ErrorCode = kerr.UnsupportedVersion.Code
	}
	for _, a := range advertised() {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key, a.min, a.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp, nil
}
