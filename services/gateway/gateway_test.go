package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// The native REST API, through a real server.
func TestNativeREST(t *testing.T) {
	s := testserver.Start(t)
	base := "http://" + s.HTTPAddr
	q := s.CreateQueue(t, "p1", &dmsv1.Queue{DisplayName: "orders"})
	g := s.CreateGroup(t, q, "billing")
	do := func(t *testing.T, method, path, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var decoded map[string]any
		if len(raw) > 0 {
			require.NoError(t, json.Unmarshal(raw, &decoded), string(raw))
		}
		return resp, decoded
	}
	reasonOf := func(body map[string]any) string {
		for _, d := range body["details"].([]any) {
			if info := d.(map[string]any); info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" {
				return info["reason"].(string)
			}
		}
		return ""
	}

	t.Run("a known URL with another method is 405 with Allow", func(t *testing.T) {
		tests := []struct{ method, path, allow string }{
			{http.MethodPut, "/v1/projects/p1/queues", "GET, POST"},
			{http.MethodPut, "/v1/" + q.GetName(), "DELETE, GET, PATCH"}, // PATCH is UpdateQueue
			{http.MethodPost, "/v1/" + g.GetName(), "DELETE, GET"},
			{http.MethodGet, "/v1/" + q.GetName() + "/messages:send", "POST"},
			{http.MethodDelete, "/v1/" + g.GetName() + "/messages:ack", "POST"},
		}
		for _, tt := range tests {
			t.Run(tt.method+" "+tt.path, func(t *testing.T) {
				resp, body := do(t, tt.method, tt.path, "")
				require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%v", body)
				assert.Equal(t, tt.allow, resp.Header.Get("Allow"))
				assert.Equal(t, "METHOD_NOT_ALLOWED", reasonOf(body))
				assert.NotEmpty(t, body["message"])
			})
		}
		resp, body := do(t, http.MethodGet, "/v1/nothing/here", "")
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.Empty(t, resp.Header.Get("Allow"))
		assert.Equal(t, "REQUEST_INVALID", reasonOf(body))
	})

	t.Run("paths outside every API answer in the same JSON shape", func(t *testing.T) {
		tests := []struct {
			method, path string
			status       int
			allow        string
		}{
			{http.MethodGet, "/", http.StatusNotFound, ""},
			{http.MethodGet, "/nothing/here", http.StatusNotFound, ""},
			{http.MethodPost, "/v3/projects", http.StatusNotFound, ""},
			{http.MethodPost, "/openapi.json", http.StatusMethodNotAllowed, "GET, HEAD"},
			{http.MethodDelete, "/healthz", http.StatusMethodNotAllowed, "GET, HEAD"},
		}
		for _, tt := range tests {
			t.Run(tt.method+" "+tt.path, func(t *testing.T) {
				resp, body := do(t, tt.method, tt.path, "")
				require.Equal(t, tt.status, resp.StatusCode, "%v", body)
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				assert.Equal(t, tt.allow, resp.Header.Get("Allow"))
				want := "REQUEST_INVALID"
				if tt.status == http.StatusMethodNotAllowed {
					want = "METHOD_NOT_ALLOWED"
				}
				assert.Equal(t, want, reasonOf(body))
				assert.NotEmpty(t, body["message"])
			})
		}
		// The console and the APIs keep their own answers.
		for _, path := range []string{"/console/", "/openapi.json", "/healthz"} {
			resp, err := http.Get(base + path)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		}
	})

	t.Run("no null where the schema has a string or an object", func(t *testing.T) {
		for _, path := range []string{"/v1/" + q.GetName(), "/v1/" + g.GetName(), "/v1/projects/p1/queues", "/v1/" + q.GetName() + "/groups"} {
			resp, body := do(t, http.MethodGet, path, "")
			require.Equal(t, http.StatusOK, resp.StatusCode, "%v", body)
			assertNoNull(t, path, body)
		}
		_, body := do(t, http.MethodGet, "/v1/"+q.GetName(), "")
		queue := body["queue"].(map[string]any)
		assert.NotContains(t, queue, "nextScheduledTime", "an unset timestamp is left out")
		assert.Equal(t, "0", queue["messageCount"], "zero values are written")
		assert.Equal(t, false, queue["deadLetterEnabled"])
	})

	t.Run("a body that is not the request's JSON has a reason", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, "/v1/"+q.GetName()+"/messages:send", `{"messages":[{"body":12}]}`)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%v", body)
		assert.Equal(t, "REQUEST_INVALID", reasonOf(body))
	})

	t.Run("a resource name with escaped slashes", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, "/v1/"+strings.ReplaceAll(q.GetName(), "/", "%2F"), "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%v", body)
		assert.Equal(t, q.GetId(), body["queue"].(map[string]any)["id"])
	})
}

func assertNoNull(t *testing.T, where string, v any) {
	t.Helper()
	switch v := v.(type) {
	case nil:
		t.Errorf("%s is null", where)
	case map[string]any:
		for k, e := range v {
			assertNoNull(t, where+"."+k, e)
		}
	case []any:
		for _, e := range v {
			assertNoNull(t, where+"[]", e)
		}
	}
}
