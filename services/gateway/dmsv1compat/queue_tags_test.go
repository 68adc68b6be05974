package dmsv1compat_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testQueueTags covers the queue resource tags of §3.14, each call with its
// answer and its refusals.
func testQueueTags(t *testing.T, c *client) {
	orders := c.createQueue(map[string]any{"name": "orders"})["id"].(string)
	billing := c.createQueue(map[string]any{"name": "billing"})["id"].(string)
	audit := c.createQueue(map[string]any{"name": "audit-log"})["id"].(string)
	c.awaitListed("/queues", "queues", 3)

	tagsOf := func(queueID string) map[string]string {
		c.t.Helper()
		body := c.getJSONObject("/queue/" + queueID + "/tags")
		out := map[string]string{}
		for _, raw := range body["tags"].([]any) {
			tg := raw.(map[string]any)
			require.ElementsMatch(c.t, []string{"key", "value"}, keys(tg))
			out[tg["key"].(string)] = tg["value"].(string)
		}
		return out
	}
	noContent := func(method, path string, body any) {
		c.t.Helper()
		status, respBody := c.do(method, path, body)
		require.Equal(c.t, http.StatusNoContent, status, "%s %s: %s", method, path, respBody)
		require.Empty(c.t, respBody)
	}
	action := func(act string, tags ...map[string]any) map[string]any {
		return map[string]any{"action": act, "tags": tags}
	}
	kv := func(k, v string) map[string]any { return map[string]any{"key": k, "value": v} }

	assert.Empty(t, tagsOf(orders))
	noContent(http.MethodPost, "/queue/"+orders+"/tags", map[string]any{"tag": kv("env", "dev")})
	noContent(http.MethodPost, "/queue/"+orders+"/tags/action", action("create", kv("team", "shop"), kv("env", "prod")))
	assert.Equal(t, map[string]string{"env": "prod", "team": "shop"}, tagsOf(orders), "create replaces a value")
	noContent(http.MethodPost, "/queue/"+billing+"/tags/action", action("create", kv("env", "dev"), kv("cost", "")))
	noContent(http.MethodPost, "/queue/"+audit+"/tags", map[string]any{"tag": kv("env", "test")})

	t.Run("project tags", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodGet, "/queue/tags", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		assert.JSONEq(t, `{"tags":[{"key":"cost","values":[""]},{"key":"env","values":["dev","prod","test"]},{"key":"team","values":["shop"]}]}`, string(body))
	})

	t.Run("filter", func(t *testing.T) {
		c := c.with(t)
		tests := []struct {
			name string
			body map[string]any
			want []string // queue names, in creation order
		}{
			{"everything", map[string]any{"action": "filter"}, []string{"orders", "billing", "audit-log"}},
			{"tags: every key", map[string]any{"action": "filter", "tags": []any{map[string]any{"key": "env", "values": []string{"dev", "prod"}}, map[string]any{"key": "team", "values": []string{}}}}, []string{"orders"}},
			{"tags: any value", map[string]any{"action": "filter", "tags": []any{map[string]any{"key": "env", "values": []string{}}}}, []string{"orders", "billing", "audit-log"}},
			{"tags_any", map[string]any{"action": "filter", "tags_any": []any{map[string]any{"key": "team", "values": []string{"shop"}}, map[string]any{"key": "cost", "values": []string{}}}}, []string{"orders", "billing"}},
			{"not_tags", map[string]any{"action": "filter", "not_tags": []any{map[string]any{"key": "env", "values": []string{"dev"}}}}, []string{"orders", "audit-log"}},
			{"not_tags_any", map[string]any{"action": "filter", "not_tags_any": []any{map[string]any{"key": "team"}, map[string]any{"key": "cost"}}}, []string{"audit-log"}},
			{"name match", map[string]any{"action": "filter", "matches": []any{kv("resource_name", "ill")}}, []string{"billing"}},
			{"paging", map[string]any{"action": "filter", "limit": "1", "offset": "1"}, []string{"billing"}},
			{"paging with numbers", map[string]any{"action": "filter", "limit": 2, "offset": 2}, []string{"audit-log"}},
			{"offset past the end", map[string]any{"action": "filter", "offset": "9"}, []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := c.with(t)
				status, body := c.do(http.MethodPost, "/queue/resource_instances/action", tt.body)
				require.Equal(t, http.StatusOK, status, string(body))
				var resp struct {
					Resources []struct {
						ResourceID     string            `json:"resource_id"`
						ResourceName   string            `json:"resource_name"`
						ResourceDetail map[string]any    `json:"resource_detail"`
						Tags           []json.RawMessage `json:"tags"`
					} `json:"resources"`
					TotalCount int `json:"total_count"`
				}
				require.NoError(t, json.Unmarshal(body, &resp))
				names := []string{}
				for _, r := range resp.Resources {
					names = append(names, r.ResourceName)
					assert.Equal(t, r.ResourceID, r.ResourceDetail["id"])
					assert.Len(t, r.Tags, len(tagsOf(r.ResourceID)))
				}
				assert.Equal(t, tt.want, names)
				if tt.body["limit"] == nil && tt.body["offset"] == nil {
					assert.Equal(t, len(tt.want), resp.TotalCount)
				}
			})
		}
		status, body := c.do(http.MethodPost, "/queue/resource_instances/action",
			map[string]any{"action": "count", "tags": []any{map[string]any{"key": "env", "values": []string{"dev", "test"}}}})
		require.Equal(t, http.StatusOK, status, string(body))
		assert.JSONEq(t, `{"total_count":2}`, string(body))
	})

	t.Run("delete", func(t *testing.T) {
		c := c.with(t)
		noContent(http.MethodDelete, "/queue/"+orders+"/tags/team", nil)
		assert.Equal(t, map[string]string{"env": "prod"}, tagsOf(orders))
		e := c.requireError(http.MethodDelete, "/queue/"+orders+"/tags/team", nil, http.StatusNotFound, 10240426)
		assert.Equal(t, "LABEL_NOT_FOUND", e.Reason)
		// A batch delete with a value removes the key only with that value;
		// keys the queue does not have are no error.
		noContent(http.MethodPost, "/queue/"+billing+"/tags/action", action("delete", kv("env", "prod"), kv("nope", "x"), map[string]any{"key": "cost"}))
		assert.Equal(t, map[string]string{"env": "dev"}, tagsOf(billing))
		noContent(http.MethodPost, "/queue/"+billing+"/tags/action", action("delete", kv("env", "dev")))
		assert.Empty(t, tagsOf(billing))
	})

	t.Run("refusals", func(t *testing.T) {
		c := c.with(t)
		eleven := make([]map[string]any, 11)
		for i := range eleven {
			eleven[i] = kv("k"+strings.Repeat("x", i), "v")
		}
		tests := []struct {
			name         string
			method, path string
			body         any
			status, code int
		}{
			{"body not JSON", http.MethodPost, "/queue/" + orders + "/tags", "{", 400, 10240009},
			{"no tag", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{}, 400, 10240036},
			{"empty key", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{"tag": kv("", "v")}, 400, 10240037},
			{"key of 37", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{"tag": kv(strings.Repeat("k", 37), "v")}, 400, 10240037},
			{"key with =", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{"tag": kv("a=b", "v")}, 400, 10240037},
			{"key with a control character", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{"tag": kv("a\tb", "v")}, 400, 10240037},
			{"value of 44", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{"tag": kv("k", strings.Repeat("v", 44))}, 400, 10240038},
			{"value with /", http.MethodPost, "/queue/" + orders + "/tags", map[string]any{"tag": kv("k", "a/b")}, 400, 10240038},
			{"unknown action", http.MethodPost, "/queue/" + orders + "/tags/action", action("update", kv("k", "v")), 400, 10240035},
			{"no tags", http.MethodPost, "/queue/" + orders + "/tags/action", action("create"), 400, 10240036},
			{"key twice", http.MethodPost, "/queue/" + orders + "/tags/action", action("create", kv("k", "1"), kv("k", "2")), 400, 10240039},
			{"more than 10", http.MethodPost, "/queue/" + orders + "/tags/action", action("create", eleven...), 400, 10240044},
			{"unknown queue", http.MethodPost, "/queue/" + unknownQueueID + "/tags", map[string]any{"tag": kv("k", "v")}, 404, 10240401},
			{"bad queue id", http.MethodGet, "/queue/orders/tags", nil, 400, 10240015},
			{"unknown queue's tags", http.MethodGet, "/queue/" + unknownQueueID + "/tags", nil, 404, 10240401},
			{"filter action", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "list"}, 400, 10240035},
			{"limit 0", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "filter", "limit": "0"}, 400, 10240040},
			{"limit 1001", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "filter", "limit": "1001"}, 400, 10240040},
			{"offset -1", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "filter", "offset": "-1"}, 400, 10240040},
			{"match key", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "filter", "matches": []any{kv("resource_id", "x")}}, 400, 10240041},
			{"filter key of 128", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "filter", "tags": []any{map[string]any{"key": strings.Repeat("k", 128)}}}, 400, 10240042},
			{"filter value of 256", http.MethodPost, "/queue/resource_instances/action", map[string]any{"action": "filter", "tags_any": []any{map[string]any{"key": "k", "values": []string{strings.Repeat("v", 256)}}}}, 400, 10240042},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := c.with(t)
				c.requireError(tt.method, tt.path, tt.body, tt.status, tt.code)
			})
		}
		assert.Equal(t, map[string]string{"env": "prod"}, tagsOf(orders), "refused changes change nothing")
		// Ten tags are allowed: the limit counts what the queue would have.
		noContent(http.MethodPost, "/queue/"+orders+"/tags/action", action("create", eleven[:9]...))
		assert.Len(t, tagsOf(orders), 10)
		c.requireError(http.MethodPost, "/queue/"+orders+"/tags", map[string]any{"tag": kv("one-more", "v")}, 400, 10240044)
	})
}
