package kafka

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// request is one decoded request of a connection.
type request struct {
	conn          *conn
	key, version  int16
	correlationID int32
	clientID      string
	body          kmsg.Request
	// raw is a bare SASL token (key keyRawSASL, after a SaslHandshake v0).
	raw []byte
}

// api is how the server serves one API key: the versions it advertises in
// ApiVersions, and the handler. A handler returns the response to send, or
// nil to send none (a Produce with acks=0); an error closes the connection,
// which is what Kafka does for a request it cannot answer.
type api struct {
	key      int16
	min, max int16
	handle   func(s *Server, ctx context.Context, r *request) (kmsg.Response, error)
}

// apis is the dispatch table, by API key. Each API lives in its own file,
// named after its key, which registers it with one line.
var apis = map[int16]api{}

// register adds an API to the dispatch table; handle gets the request
// decoded as its own type.
func register[Req kmsg.Request](key, minVersion, maxVersion int16, handle func(s *Server, ctx context.Context, r *request, req Req) (kmsg.Response, error)) {
	if _, dup := apis[key]; dup {
		panic(fmt.Sprintf("kafka: API %s (key %d) registered twice", kmsg.NameForKey(key), key))
	}
	if req := kmsg.RequestForKey(key); req == nil || maxVersion > req.MaxVersion() {
		panic(fmt.Sprintf("kafka: API key %d at version %d is beyond what kmsg decodes", key, maxVersion))
	}
	apis[key] = api{key: key, min: minVersion, max: maxVersion, handle: func(s *Server, ctx context.Context, r *request) (kmsg.Response, error) {
		req, ok := r.body.(Req)
		if !ok {
			return nil, fmt.Errorf("kafka: request of key %d decoded as %T", r.key, r.body)
		}
		return handle(s, ctx, r, req)
	}}
}

// advertised returns the dispatch table in key order, as ApiVersions
// lists it.
func advertised() []api {
	out := make([]api, 0, len(apis))
	for _, a := range apis {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}
