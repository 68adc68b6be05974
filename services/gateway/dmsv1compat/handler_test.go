package dmsv1compat_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// The tests speak DMS v1.0 over HTTP to a real server with every role in
// process, as a DMS client would. Each subtest has a project of its own so
// that counts (queues, quota use) are its own.
//
// Both API versions run the same cases: v2 has v1.0's bodies, status codes
// and error codes, and differs only in the quota path.
func TestDMSV1API(t *testing.T) {
	srv := testserver.Start(t)
	for _, version := range []string{"v1.0", "v2"} {
		t.Run(version, func(t *testing.T) { testDMSAPI(t, srv, version) })
	}
}

func testDMSAPI(t *testing.T, srv *testserver.Server, version string) {
	base := "http://" + srv.HTTPAddr + "/" + version + "/"
	newClient := func(t *testing.T, name string) *client {
		id := projectID(version + "/" + name)
		return &client{t: t, http: &http.Client{}, version: version, root: base, projectID: id, project: base + id, srv: srv}
	}
	t.Run("queues", func(t *testing.T) { testQueues(t, newClient(t, "proj-queues")) })
	t.Run("queue validation", func(t *testing.T) { testQueueValidation(t, newClient(t, "proj-queue-validation")) })
	t.Run("groups", func(t *testing.T) { testGroups(t, newClient(t, "proj-groups")) })
	t.Run("send", func(t *testing.T) { testSend(t, newClient(t, "proj-send")) })
	t.Run("round trip", func(t *testing.T) { testRoundTrip(t, newClient(t, "proj-round-trip")) })
	t.Run("consume", func(t *testing.T) { testConsume(t, newClient(t, "proj-consume")) })
	t.Run("ack", func(t *testing.T) { testAck(t, newClient(t, "proj-ack")) })
	t.Run("quotas", func(t *testing.T) { testQuotas(t, newClient(t, "proj-quotas")) })
	t.Run("routing", func(t *testing.T) { testRouting(t, newClient(t, "proj-routing")) })
	t.Run("tags", func(t *testing.T) { testTags(t, newClient(t, "proj-tags")) })
	t.Run("queue tags", func(t *testing.T) { testQueueTags(t, newClient(t, "proj-queue-tags")) })
	t.Run("dead letters", func(t *testing.T) { testDeadLetters(t, newClient(t, "proj-dead-letters")) })
	t.Run("delay", func(t *testing.T) { testDelay(t, newClient(t, "proj-delay")) })
	t.Run("bytes kept", func(t *testing.T) { testBytesKept(t, newClient(t, "proj-bytes")) })
	t.Run("project ids", func(t *testing.T) { testProjectIDs(t, newClient(t, "proj-ids")) })
}

// projectID gives each subtest a project id of the DMS form, 32 lowercase
// hex digits, derived from a readable name.
func projectID(name string) string {
	sum := md5.Sum([]byte(name))
	return hex.EncodeToString(sum[:])
}

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	groupRE = regexp.MustCompile(`^g-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

const (
	unknownQueueID = "00000000-0000-4000-8000-000000000000"
	unknownGroupID = "g-00000000-0000-4000-8000-000000000000"
)

func testQueues(t *testing.T, c *client) {
	normal := c.createQueue(map[string]any{"name": "orders", "description": "order events"})
	assert.Equal(t, "orders", normal["name"])
	assert.NotContains(t, normal, "kafka_topic")
	normalID := normal["id"].(string)

	kafka := c.createQueue(map[string]any{"name": "clicks", "queue_mode": "KAFKA_HA", "retention_hours": 36})
	kafkaID := kafka["id"].(string)
	assert.Equal(t, "k-"+c.projectID+"-"+kafkaID, kafka["kafka_topic"])

	c.createQueue(map[string]any{
		"name": "payments", "queue_mode": "FIFO", "redrive_policy": "enable", "max_consume_count": 5,
	})
	c.awaitListed("/queues", "queues", 3)

	queueKeys := []string{"created", "description", "eff_date", "group_count", "id", "max_msg_size_byte",
		"name", "produced_messages", "queue_mode", "reservation"}
	withDeadLetterKeys := append(slices.Clone(queueKeys), "max_consume_count", "redrive_policy")

	t.Run("list", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodGet, "/queues", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var list struct {
			Queues []map[string]any `json:"queues"`
			Total  int              `json:"total"`
		}
		require.NoError(t, json.Unmarshal(body, &list))
		require.Equal(t, 3, list.Total)
		require.Len(t, list.Queues, 3)
		for _, q := range list.Queues {
			assert.ElementsMatch(t, queueKeys, keys(q), "queue %v", q["name"])
			assert.Equal(t, q["created"], q["eff_date"])
			assert.Greater(t, q["created"].(float64), float64(1_600_000_000_000), "created is ms since the epoch")
			assert.EqualValues(t, 524288, q["max_msg_size_byte"])
		}
		byName := map[string]map[string]any{}
		for _, q := range list.Queues {
			byName[q["name"].(string)] = q
		}
		assert.Equal(t, "NORMAL", byName["orders"]["queue_mode"])
		assert.EqualValues(t, 4320, byName["orders"]["reservation"])
		assert.Equal(t, "order events", byName["orders"]["description"])
		assert.Equal(t, "KAFKA_HA", byName["clicks"]["queue_mode"])
		assert.EqualValues(t, 36*60, byName["clicks"]["reservation"])
		assert.Equal(t, "FIFO", byName["payments"]["queue_mode"])
	})

	t.Run("list with dead-letter settings", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodGet, "/queues?include_deadletter=true", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var list struct {
			Queues []map[string]any `json:"queues"`
		}
		require.NoError(t, json.Unmarshal(body, &list))
		for _, q := range list.Queues {
			switch q["name"] {
			case "clicks":
				assert.ElementsMatch(t, queueKeys, keys(q), "Kafka queues have no dead letters")
			case "payments":
				assert.ElementsMatch(t, withDeadLetterKeys, keys(q))
				assert.Equal(t, "enable", q["redrive_policy"])
				assert.EqualValues(t, 5, q["max_consume_count"])
			case "orders":
				assert.Equal(t, "disable", q["redrive_policy"])
			}
		}
	})

	t.Run("get", func(t *testing.T) {
		c := c.with(t)
		q := c.getJSONObject("/queues/" + normalID)
		assert.ElementsMatch(t, queueKeys, keys(q))
		assert.Equal(t, normalID, q["id"])
		assert.Equal(t, "orders", q["name"])
		assert.EqualValues(t, 0, q["group_count"])

		k := c.getJSONObject("/queues/" + kafkaID + "?include_deadletter=true")
		assert.Equal(t, "k-"+c.projectID+"-"+kafkaID, k["kafka_topic"])
		assert.NotContains(t, k, "redrive_policy")
	})

	t.Run("get errors", func(t *testing.T) {
		c := c.with(t)
		c.requireError(http.MethodGet, "/queues/"+unknownQueueID, nil, http.StatusNotFound, 10240401)
		c.requireError(http.MethodGet, "/queues/orders", nil, http.StatusBadRequest, 10240015)
		c.requireError(http.MethodGet, "/queues/"+normalID+"?include_deadletter=perhaps", nil, http.StatusBadRequest, 10540014)
	})

	t.Run("delete", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodDelete, "/queues/"+normalID, nil)
		require.Equal(t, http.StatusNoContent, status, string(body))
		require.Empty(t, body)
		c.awaitListed("/queues", "queues", 2)
		c.requireError(http.MethodGet, "/queues/"+normalID, nil, http.StatusNotFound, 10240401)
		c.requireError(http.MethodDelete, "/queues/"+normalID, nil, http.StatusNotFound, 10240401)
		c.requireError(http.MethodDelete, "/queues/not-a-uuid", nil, http.StatusBadRequest, 10240015)
	})
}

func testQueueValidation(t *testing.T, c *client) {
	c.createQueue(map[string]any{"name": "taken"})
	c.awaitListed("/queues", "queues", 1)
	tests := []struct {
		name     string
		body     any
		wantCode int
	}{
		{"body not JSON", `{"name":`, 10240009},
		{"name taken", map[string]any{"name": "taken"}, 10240017},
		{"name with invalid characters", map[string]any{"name": "no spaces"}, 10240007},
		{"name too long", map[string]any{"name": strings.Repeat("n", 65)}, 10240011},
		{"name missing", map[string]any{"description": "x"}, 10240011},
		{"description with <", map[string]any{"name": "d1", "description": "<b>"}, 10240010},
		{"description too long", map[string]any{"name": "d2", "description": strings.Repeat("d", 161)}, 10240013},
		{"unknown queue_mode", map[string]any{"name": "m1", "queue_mode": "TURBO"}, 10540010},
		{"unknown redrive_policy", map[string]any{"name": "r0", "redrive_policy": "sometimes"}, 10540010},
		{"max_consume_count out of range", map[string]any{"name": "r1", "redrive_policy": "enable", "max_consume_count": 101}, 10240022},
		{"retention_hours on NORMAL", map[string]any{"name": "k1", "retention_hours": 24}, 10240028},
		{"retention_hours on FIFO", map[string]any{"name": "k2", "queue_mode": "FIFO", "retention_hours": 24}, 10240028},
		{"retention_hours above 72", map[string]any{"name": "k3", "queue_mode": "KAFKA_HT", "retention_hours": 73}, 10240027},
		{"retention_hours negative", map[string]any{"name": "k4", "queue_mode": "KAFKA_HT", "retention_hours": -1}, 10240027},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.with(t)
			c.requireError(http.MethodPost, "/queues", tt.body, http.StatusBadRequest, tt.wantCode)
		})
	}

	t.Run("invalid project id", func(t *testing.T) {
		c := c.with(t)
		bad := *c
		bad.project = c.root + strings.Repeat("p", 65)
		bad.requireError(http.MethodPost, "/queues", map[string]any{"name": "q"}, http.StatusBadRequest, 10240005)
		bad.project = c.root + "proj.with.dots"
		bad.requireError(http.MethodGet, "/queues", nil, http.StatusBadRequest, 10240005)
	})

	t.Run("nothing was created by the invalid requests", func(t *testing.T) {
		c := c.with(t)
		list := c.getJSONObject("/queues")
		assert.EqualValues(t, 1, list["total"])
	})
}

func testGroups(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "events", "redrive_policy": "enable", "max_consume_count": 3})["id"].(string)
	groups := "/queues/" + queueID + "/groups"

	created := c.createGroups(queueID, "billing", "audit")
	require.Len(t, created, 2)
	for _, g := range created {
		assert.Regexp(t, groupRE, g["id"])
	}
	assert.Equal(t, "billing", created[0]["name"])
	assert.Equal(t, "audit", created[1]["name"])
	c.awaitListed(groups, "groups", 2)

	t.Run("create errors", func(t *testing.T) {
		c := c.with(t)
		tests := []struct {
			name       string
			body       any
			wantStatus int
			wantCode   int
		}{
			{"more than 3 with the existing ones", groupsBody("g3", "g4"), http.StatusBadRequest, 10240019},
			{"more than 3 in one request", groupsBody("g3", "g4", "g5", "g6"), http.StatusBadRequest, 10240019},
			{"name taken", groupsBody("billing"), http.StatusBadRequest, 10240018},
			{"invalid name", groupsBody("no spaces"), http.StatusBadRequest, 10240007},
			{"name too long", groupsBody(strings.Repeat("g", 33)), http.StatusBadRequest, 10240012},
			{"body not JSON", "groups", http.StatusBadRequest, 10240009},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := c.with(t)
				c.requireError(http.MethodPost, groups, tt.body, tt.wantStatus, tt.wantCode)
				// A batch that failed part way was undone, which the
				// listing shows a moment later.
				c.awaitListed(groups, "groups", 2)
			})
		}
		c.requireError(http.MethodPost, "/queues/"+unknownQueueID+"/groups", groupsBody("a"), http.StatusNotFound, 10240401)
		assert.Len(t, c.listGroups(queueID, "")["groups"], 2, "failed batches create nothing")
	})

	t.Run("a batch over the limit or with a name twice creates nothing", func(t *testing.T) {
		c := c.with(t)
		other := c.createQueue(map[string]any{"name": "other"})["id"].(string)
		c.requireError(http.MethodPost, "/queues/"+other+"/groups", groupsBody("a", "b", "c", "d"),
			http.StatusBadRequest, 10240019)
		c.requireError(http.MethodPost, "/queues/"+other+"/groups", groupsBody("a", "twin", "twin"),
			http.StatusBadRequest, 10240018)
		c.awaitListed("/queues/"+other+"/groups", "groups", 0)
		assert.Len(t, c.createGroups(other, "a", "b", "c"), 3, "exactly 3 is allowed")
	})

	t.Run("list", func(t *testing.T) {
		c := c.with(t)
		list := c.listGroups(queueID, "")
		assert.ElementsMatch(t, []string{"groups", "queue_id", "queue_name"}, keys(list))
		assert.Equal(t, queueID, list["queue_id"])
		assert.Equal(t, "events", list["queue_name"])
		got := list["groups"].([]any)
		require.Len(t, got, 2)
		first := got[0].(map[string]any)
		assert.ElementsMatch(t, []string{"available_messages", "consumed_messages", "id", "name", "produced_messages"}, keys(first))
		assert.Equal(t, created[0]["id"], first["id"])

		list = c.listGroups(queueID, "?include_deadletter=true")
		assert.Equal(t, "enable", list["redrive_policy"])
		first = list["groups"].([]any)[0].(map[string]any)
		assert.EqualValues(t, 0, first["produced_deadletters"])
		assert.EqualValues(t, 0, first["available_deadletters"])

		paged := c.listGroups(queueID, "?page_size=1&current_page=2")["groups"].([]any)
		require.Len(t, paged, 1)
		assert.Equal(t, created[1]["id"], paged[0].(map[string]any)["id"])
	})

	t.Run("delete", func(t *testing.T) {
		c := c.with(t)
		auditID := created[1]["id"].(string)
		status, body := c.do(http.MethodDelete, groups+"/"+auditID, nil)
		require.Equal(t, http.StatusNoContent, status, string(body))
		require.Empty(t, body)
		c.awaitListed(groups, "groups", 1)
		c.requireError(http.MethodDelete, groups+"/"+auditID, nil, http.StatusNotFound, 10240405)
		c.requireError(http.MethodDelete, groups+"/billing", nil, http.StatusBadRequest, 10240016)
		c.requireError(http.MethodDelete, "/queues/"+unknownQueueID+"/groups/"+auditID, nil, http.StatusNotFound, 10240401)
	})
}

func testSend(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "inbox"})["id"].(string)
	messages := "/queues/" + queueID + "/messages"
	one := []any{map[string]any{"body": "hi"}}

	t.Run("results", func(t *testing.T) {
		c := c.with(t)
		tests := []struct {
			name   string
			body   map[string]any
			wantID bool
		}{
			{"without id", map[string]any{"messages": one}, false},
			{"returnId", map[string]any{"messages": one, "returnId": true}, true},
			{"return_id", map[string]any{"messages": one, "return_id": true}, true},
			{"returnId false", map[string]any{"messages": one, "returnId": false}, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := c.with(t)
				status, body := c.do(http.MethodPost, messages, tt.body)
				require.Equal(t, http.StatusCreated, status, string(body))
				var resp struct {
					Messages []map[string]any `json:"messages"`
				}
				require.NoError(t, json.Unmarshal(body, &resp))
				require.Len(t, resp.Messages, 1)
				m := resp.Messages[0]
				assert.EqualValues(t, 0, m["state"])
				assert.Contains(t, m, "error")
				assert.Nil(t, m["error"])
				assert.Contains(t, m, "error_code")
				assert.Nil(t, m["error_code"])
				if tt.wantID {
					assert.NotEmpty(t, m["id"])
				} else {
					assert.NotContains(t, m, "id")
				}
			})
		}
	})

	t.Run("a batch of several", func(t *testing.T) {
		c := c.with(t)
		batch := make([]any, 10)
		for i := range batch {
			batch[i] = map[string]any{"body": map[string]any{"n": i}}
		}
		status, body := c.do(http.MethodPost, messages, map[string]any{"messages": batch, "returnId": true})
		require.Equal(t, http.StatusCreated, status, string(body))
		var resp struct {
			Messages []struct {
				ID string `json:"id"`
			} `json:"messages"`
		}
		require.NoError(t, json.Unmarshal(body, &resp))
		require.Len(t, resp.Messages, 10)
		ids := map[string]bool{}
		for _, m := range resp.Messages {
			ids[m.ID] = true
		}
		assert.Len(t, ids, 10, "every message has its own id")
	})

	sentSoFar := c.getJSONObject("/queues/" + queueID)["produced_messages"]
	assert.EqualValues(t, 14, sentSoFar)

	t.Run("errors", func(t *testing.T) {
		c := c.with(t)
		eleven := make([]any, 11)
		for i := range eleven {
			eleven[i] = map[string]any{"body": i}
		}
		tests := []struct {
			name       string
			body       any
			wantStatus int
			wantCode   int
			wantReason string
		}{
			{"not JSON", `{"messages":[`, http.StatusBadRequest, 10540012, "REQUEST_INVALID"},
			{"unknown field", batchOf(map[string]any{"body": 1, "priority": 5}), http.StatusBadRequest, 10540001, ""},
			{"body missing", batchOf(map[string]any{"attributes": map[string]any{"a": "b"}}), http.StatusBadRequest, 10540001, ""},
			{"body null", batchOf(map[string]any{"body": nil}), http.StatusBadRequest, 10540001, ""},
			{"message not an object", map[string]any{"messages": []any{"just text"}}, http.StatusBadRequest, 10540001, ""},
			{"attribute is an object", batchOf(map[string]any{"body": 1, "attributes": map[string]any{"a": map[string]any{}}}), http.StatusBadRequest, 10540001, ""},
			{"attribute is a list", batchOf(map[string]any{"body": 1, "attributes": map[string]any{"a": []int{1}}}), http.StatusBadRequest, 10540001, ""},
			{"attribute is null", batchOf(map[string]any{"body": 1, "attributes": map[string]any{"a": nil}}), http.StatusBadRequest, 10540001, ""},
			{"attributes not an object", batchOf(map[string]any{"body": 1, "attributes": []string{"a"}}), http.StatusBadRequest, 10540001, ""},
			{"tags not strings", batchOf(map[string]any{"body": 1, "tags": []int{1}}), http.StatusBadRequest, 10540001, ""},
			{"invalid tag", batchOf(map[string]any{"body": 1, "tags": []string{"no spaces"}}), http.StatusBadRequest, 10240004, ""},
			{"more than 3 tags", batchOf(map[string]any{"body": 1, "tags": []string{"a", "b", "c", "d"}}), http.StatusBadRequest, 10240004, ""},
			{"more than 10 messages", map[string]any{"messages": eleven}, http.StatusBadRequest, 10240014, ""},
			{"one message too large", batchOf(map[string]any{"body": strings.Repeat("x", 600<<10)}), http.StatusBadRequest, 10540011, ""},
			{"batch too large", batchOf(
				map[string]any{"body": strings.Repeat("x", 300<<10)},
				map[string]any{"body": strings.Repeat("y", 300<<10)},
			), http.StatusBadRequest, 10540011, ""},
			{"delay_time over 7 days", batchOf(map[string]any{"body": 1, "delay_time": 604800001}), http.StatusBadRequest, 10540010, "DELAY_INVALID"},
			{"negative delay_time", batchOf(map[string]any{"body": 1, "delay_time": -1}), http.StatusBadRequest, 10540010, "DELAY_INVALID"},
			{"delay_time not a number", batchOf(map[string]any{"body": 1, "delay_time": "soon"}), http.StatusBadRequest, 10540001, ""},
			{"valid then invalid", batchOf(map[string]any{"body": 1}, map[string]any{"body": 2, "extra": true}), http.StatusBadRequest, 10540001, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := c.with(t)
				e := c.requireError(http.MethodPost, messages, tt.body, tt.wantStatus, tt.wantCode)
				if tt.wantReason != "" {
					assert.Equal(t, tt.wantReason, e.Reason)
				}
			})
		}
		c.requireError(http.MethodPost, "/queues/"+unknownQueueID+"/messages", batchOf(map[string]any{"body": 1}),
			http.StatusNotFound, 10240401)
		assert.Equal(t, sentSoFar, c.getJSONObject("/queues/" + queueID)["produced_messages"],
			"a batch with an invalid message stores none of it")
	})

	t.Run("delay_time 0 is no delay", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodPost, messages, batchOf(map[string]any{"body": 1, "delay_time": 0}))
		require.Equal(t, http.StatusCreated, status, string(body))
	})

	t.Run("a Kafka queue refuses delay_time", func(t *testing.T) {
		c := c.with(t)
		kafkaID := c.createQueue(map[string]any{"name": "kafka-delay", "queue_mode": "KAFKA_HA"})["id"].(string)
		e := c.requireError(http.MethodPost, "/queues/"+kafkaID+"/messages",
			batchOf(map[string]any{"body": 1, "delay_time": 60000}), http.StatusBadRequest, 10540010)
		assert.Equal(t, "DELAY_NOT_ALLOWED", e.Reason)
		status, body := c.do(http.MethodPost, "/queues/"+kafkaID+"/messages", batchOf(map[string]any{"body": 1, "delay_time": 0}))
		require.Equal(t, http.StatusCreated, status, "a delay of 0 is no delay: %s", body)
	})
}

// testDelay sends a message with delay_time and checks that it is consumed
// at its time and not before (on the server's real clock).
func testDelay(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "later"})["id"].(string)
	groupID := c.createGroups(queueID, "readers")[0]["id"].(string)
	sent := time.Now()
	status, body := c.do(http.MethodPost, "/queues/"+queueID+"/messages",
		map[string]any{"messages": []any{map[string]any{"body": map[string]any{"n": 1}, "delay_time": 2500.9}}, "returnId": true})
	require.Equal(t, http.StatusCreated, status, string(body))
	status, body = c.do(http.MethodGet, "/queues/"+queueID+"/groups/"+groupID+"/messages?time_wait=1", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	assert.Equal(t, "[]", strings.TrimSpace(string(body)), "not consumable before its delay")
	got := c.consumeAtLeast(queueID, groupID, 1)
	assert.GreaterOrEqual(t, time.Since(sent), 2500*time.Millisecond, "consumed only after delay_time")
	assert.JSONEq(t, `{"n":1}`, string(got[0].Message.Body))
}

// testRoundTrip checks that a consumer gets back the JSON values that a
// producer sent, whatever their type.
func testRoundTrip(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "values"})["id"].(string)
	groupID := c.createGroups(queueID, "reader")[0]["id"].(string)
	sent := []string{
		`{"foo":"123=","nested":{"list":[1,2.5,"x",null,true]}}`,
		`"plain <text> & more"`,
		`42.5`,
		`-7`,
		`[1,"two"]`,
		`true`,
	}
	batch := make([]any, len(sent))
	for i, body := range sent {
		batch[i] = map[string]any{"body": json.RawMessage(body)}
	}
	batch[0] = map[string]any{
		"body":       json.RawMessage(sent[0]),
		"attributes": map[string]any{"s": "value", "i": 7, "f": 1.5, "b": true, "big": 1e30},
		"tags":       []string{"t1", "t-2"},
	}
	status, body := c.do(http.MethodPost, "/queues/"+queueID+"/messages", map[string]any{"messages": batch})
	require.Equal(t, http.StatusCreated, status, string(body))

	// A NORMAL queue need not keep the order, so bodies are matched by value.
	byBody := map[string]consumed{}
	for _, m := range c.consumeAtLeast(queueID, groupID, len(sent)) {
		assert.NotEmpty(t, m.Handler)
		byBody[canonicalJSON(t, m.Message.Body)] = m
	}
	require.Len(t, byBody, len(sent))
	for _, body := range sent {
		require.Contains(t, byBody, canonicalJSON(t, []byte(body)))
	}
	withExtras, plain := byBody[canonicalJSON(t, []byte(sent[0]))], byBody[canonicalJSON(t, []byte(sent[1]))]
	assert.JSONEq(t, `{"s":"value","i":7,"f":1.5,"b":true,"big":1e30}`, string(withExtras.Message.Attributes))
	assert.Equal(t, []string{"t1", "t-2"}, withExtras.Message.Tags)
	assert.JSONEq(t, `{}`, string(plain.Message.Attributes))
	assert.Equal(t, []string{}, plain.Message.Tags)
}

func testConsume(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "work"})["id"].(string)
	groupID := c.createGroups(queueID, "workers")[0]["id"].(string)
	consume := "/queues/" + queueID + "/groups/" + groupID + "/messages"

	t.Run("nothing to consume is a bare empty array", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodGet, consume+"?time_wait=1", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		assert.Equal(t, "[]", strings.TrimSpace(string(body)))
	})

	t.Run("messages come as a bare array", func(t *testing.T) {
		c := c.with(t)
		status, body := c.do(http.MethodPost, "/queues/"+queueID+"/messages",
			batchOf(map[string]any{"body": "job", "attributes": map[string]any{"k": "v"}}))
		require.Equal(t, http.StatusCreated, status, string(body))
		status, body = c.do(http.MethodGet, consume+"?max_msgs=1&time_wait=5&ack_wait=15", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var got []map[string]any
		require.NoError(t, json.Unmarshal(body, &got), "a bare array: %s", body)
		require.Len(t, got, 1)
		assert.ElementsMatch(t, []string{"message", "handler"}, keys(got[0]))
		message := got[0]["message"].(map[string]any)
		assert.ElementsMatch(t, []string{"body", "attributes", "tags"}, keys(message))
		assert.Equal(t, "job", message["body"])
		assert.Equal(t, map[string]any{"k": "v"}, message["attributes"])

		// The delivery is invisible to the group until it is acked.
		status, body = c.do(http.MethodGet, consume+"?time_wait=1", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		assert.Equal(t, "[]", strings.TrimSpace(string(body)))
	})

	t.Run("parameter errors", func(t *testing.T) {
		c := c.with(t)
		tests := []struct {
			query      string
			wantCode   int
			wantReason string
		}{
			{"max_msgs=0", 10240014, ""},
			{"max_msgs=11", 10240014, ""},
			{"max_msgs=ten", 10240014, ""},
			{"time_wait=0", 10240021, ""},
			{"time_wait=61", 10240021, ""},
			{"ack_wait=14", 10542206, ""},
			{"ack_wait=301", 10542206, ""},
			{"tag=t1&tag_type=xor", 10540014, "TAG_FILTER_INVALID"},
			{"tag=a%20b", 10240004, "TAG_INVALID"},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				c := c.with(t)
				e := c.requireError(http.MethodGet, consume+"?"+tt.query, nil, http.StatusBadRequest, tt.wantCode)
				if tt.wantReason != "" {
					assert.Equal(t, tt.wantReason, e.Reason)
				}
			})
		}
	})

	t.Run("unknown group or queue", func(t *testing.T) {
		c := c.with(t)
		c.requireError(http.MethodGet, "/queues/"+queueID+"/groups/"+unknownGroupID+"/messages", nil, http.StatusNotFound, 10240405)
		c.requireError(http.MethodGet, "/queues/"+queueID+"/groups/workers/messages", nil, http.StatusBadRequest, 10240016)
		c.requireError(http.MethodGet, "/queues/"+unknownQueueID+"/groups/"+groupID+"/messages", nil, http.StatusNotFound, 10240401)
	})
}

func testAck(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "tasks"})["id"].(string)
	groupID := c.createGroups(queueID, "doers")[0]["id"].(string)
	ackPath := "/queues/" + queueID + "/groups/" + groupID + "/ack"
	ack := func(c *client, entries ...map[string]any) (success, fail int) {
		c.t.Helper()
		status, body := c.do(http.MethodPost, ackPath, map[string]any{"message": entries})
		require.Equal(c.t, http.StatusOK, status, string(body))
		var resp map[string]int
		require.NoError(c.t, json.Unmarshal(body, &resp))
		require.ElementsMatch(c.t, []string{"success", "fail"}, keys(resp))
		return resp["success"], resp["fail"]
	}
	entry := func(handler, status string) map[string]any {
		if status == "" {
			return map[string]any{"handler": handler}
		}
		return map[string]any{"handler": handler, "status": status}
	}

	status, body := c.do(http.MethodPost, "/queues/"+queueID+"/messages",
		batchOf(map[string]any{"body": 1}, map[string]any{"body": 2}, map[string]any{"body": 3}))
	require.Equal(t, http.StatusCreated, status, string(body))
	got := c.consumeAtLeast(queueID, groupID, 3)
	first, second, third := got[0].Handler, got[1].Handler, got[2].Handler

	t.Run("acks stop at the first that fails", func(t *testing.T) {
		c := c.with(t)
		success, fail := ack(c, entry(first, "success"), entry("bogus-handler", "success"), entry(second, "success"))
		assert.Equal(t, 1, success)
		assert.Equal(t, 2, fail)
		// The third entry was not applied, so it can still be acked; the
		// first was, so acking it again fails.
		success, fail = ack(c, entry(second, ""))
		assert.Equal(t, 1, success, "status defaults to success")
		assert.Equal(t, 0, fail)
		success, fail = ack(c, entry(first, "success"))
		assert.Equal(t, 0, success)
		assert.Equal(t, 1, fail)
	})

	t.Run("a fail ack counts as failed and ends evaluation", func(t *testing.T) {
		c := c.with(t)
		success, fail := ack(c, entry(third, "fail"))
		assert.Equal(t, 0, success)
		assert.Equal(t, 1, fail)
		redelivered := c.consumeAtLeast(queueID, groupID, 1)
		assert.JSONEq(t, string(got[2].Message.Body), string(redelivered[0].Message.Body),
			"a failed message is consumable again at once")
		success, fail = ack(c, entry(redelivered[0].Handler, "success"))
		assert.Equal(t, 1, success)
		assert.Equal(t, 0, fail)
	})

	t.Run("consumed counts", func(t *testing.T) {
		c := c.with(t)
		g := c.listGroups(queueID, "")["groups"].([]any)[0].(map[string]any)
		assert.EqualValues(t, 3, g["produced_messages"])
		assert.EqualValues(t, 3, g["consumed_messages"])
		assert.EqualValues(t, 0, g["available_messages"])
	})

	t.Run("errors", func(t *testing.T) {
		c := c.with(t)
		c.requireError(http.MethodPost, ackPath, map[string]any{"message": []any{entry(first, "maybe")}},
			http.StatusBadRequest, 10540003)
		c.requireError(http.MethodPost, ackPath, `{"message":`, http.StatusBadRequest, 10540012)
		c.requireError(http.MethodPost, "/queues/"+queueID+"/groups/"+unknownGroupID+"/ack",
			map[string]any{"message": []any{entry(first, "")}}, http.StatusNotFound, 10240405)
		success, fail := ack(c)
		assert.Equal(t, 0, success+fail)
	})
}

func testQuotas(t *testing.T, c *client) {
	quota := func() map[string]any {
		t.Helper()
		path := "/quotas/dms"
		if c.version == "v2" {
			path = "/quotas"
		}
		body := c.getJSONObject(path)
		resources := body["quotas"].(map[string]any)["resources"].([]any)
		require.Len(t, resources, 1)
		return resources[0].(map[string]any)
	}
	before := quota()
	assert.Equal(t, "queue", before["type"])
	assert.EqualValues(t, 0, before["used"])
	assert.EqualValues(t, 0, before["min"])
	assert.Greater(t, before["quota"], float64(0))
	assert.GreaterOrEqual(t, before["max"], before["quota"])

	c.createQueue(map[string]any{"name": "q1"})
	c.createQueue(map[string]any{"name": "q2"})
	c.awaitListed("/queues", "queues", 2)
	assert.EqualValues(t, 2, quota()["used"])
}

func testRouting(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "routes"})["id"].(string)
	groupID := c.createGroups(queueID, "g")[0]["id"].(string)
	tests := []struct {
		method, path string
	}{
		{http.MethodGet, "/nothing-here"},
		{http.MethodGet, "/queues/" + queueID + "/nothing-here"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			c := c.with(t)
			c.requireError(tt.method, tt.path, nil, http.StatusNotFound, 10240406)
		})
	}

	// A URL the API has, with a method it does not serve there: 405 and the
	// methods it does serve, in the DMS error shape.
	notAllowed := []struct {
		method, path string
		wantAllow    []string
	}{
		{http.MethodPut, "/queues/" + queueID, []string{"GET", "HEAD", "DELETE"}},
		{http.MethodPost, "/queues/" + queueID, []string{"GET", "HEAD", "DELETE"}},
		{http.MethodPatch, "/queues", []string{"GET", "HEAD", "POST"}},
		{http.MethodDelete, "/queues/" + queueID + "/groups/" + groupID + "/deadletters", []string{"GET", "HEAD"}},
		{http.MethodGet, "/queues/" + queueID + "/groups/" + groupID + "/ack", []string{"POST"}},
	}
	for _, tt := range notAllowed {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			c := c.with(t)
			req, err := http.NewRequest(tt.method, c.project+tt.path, nil)
			require.NoError(t, err)
			resp, err := c.http.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
			assert.ElementsMatch(t, tt.wantAllow, strings.Split(resp.Header.Get("Allow"), ", "))
			e := c.requireError(tt.method, tt.path, nil, http.StatusMethodNotAllowed, 10240406)
			assert.Equal(t, "METHOD_NOT_ALLOWED", e.Reason)
		})
	}

	t.Run("GET and DELETE with Content-Type and no body", func(t *testing.T) {
		c := c.with(t)
		for _, req := range []struct {
			method, path string
			want         int
		}{
			{http.MethodGet, "/queues", http.StatusOK},
			{http.MethodGet, "/queues/" + queueID, http.StatusOK},
			{http.MethodGet, "/queues/" + queueID + "/groups", http.StatusOK},
			{http.MethodDelete, "/queues/" + queueID + "/groups/" + groupID, http.StatusNoContent},
			{http.MethodDelete, "/queues/" + queueID, http.StatusNoContent},
		} {
			r, err := http.NewRequest(req.method, c.project+req.path, nil)
			require.NoError(t, err)
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-Auth-Token", "any-token")
			resp, err := c.http.Do(r)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, req.want, resp.StatusCode, "%s %s: %s", req.method, req.path, body)
		}
	})
}

// client is a minimal DMS v1.0 client. Like the real ones, it sends
// Content-Type: application/json on every request, GET and DELETE included.
type client struct {
	t         *testing.T
	http      *http.Client
	version   string // v1.0 or v2
	root      string // http://host:port/v1.0/
	projectID string
	project   string // root + project id
	srv       *testserver.Server
}

// with returns the client for use in a subtest, so that its failures are
// reported there.
func (c *client) with(t *testing.T) *client {
	copied := *c
	copied.t = t
	return &copied
}

// do sends body (a string is sent as is, anything else as JSON) to a path
// under the project and returns the status and the response body.
func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var payload io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		payload = strings.NewReader(b)
	default:
		encoded, err := json.Marshal(b)
		require.NoError(c.t, err)
		payload = bytes.NewReader(encoded)
	}
	req, err := http.NewRequest(method, c.project+path, payload)
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	if len(respBody) > 0 {
		assert.Equal(c.t, "application/json", resp.Header.Get("Content-Type"), "%s %s", method, path)
	}
	return resp.StatusCode, respBody
}

// dmsError is the DMS error body, in all the shapes it is given in.
type dmsError struct {
	Code      int    `json:"code"`
	Message   string `json:"message"`
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
	Error     struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Reason string `json:"reason"`
}

func (c *client) requireError(method, path string, body any, wantStatus, wantCode int) dmsError {
	c.t.Helper()
	status, respBody := c.do(method, path, body)
	require.Equal(c.t, wantStatus, status, "%s %s: %s", method, path, respBody)
	var e dmsError
	require.NoError(c.t, json.Unmarshal(respBody, &e), string(respBody))
	code := fmt.Sprint(wantCode)
	require.Equal(c.t, wantCode, e.Code, string(respBody))
	assert.Equal(c.t, code, e.ErrorCode)
	assert.Equal(c.t, code, e.Error.Code)
	assert.NotEmpty(c.t, e.Message)
	assert.Equal(c.t, e.Message, e.ErrorMsg)
	assert.Equal(c.t, e.Message, e.Error.Message)
	assert.NotEmpty(c.t, e.Reason)
	return e
}

func (c *client) getJSONObject(path string) map[string]any {
	c.t.Helper()
	status, body := c.do(http.MethodGet, path, nil)
	require.Equal(c.t, http.StatusOK, status, string(body))
	var v map[string]any
	require.NoError(c.t, json.Unmarshal(body, &v))
	return v
}

func (c *client) createQueue(body map[string]any) map[string]any {
	c.t.Helper()
	status, respBody := c.do(http.MethodPost, "/queues", body)
	require.Equal(c.t, http.StatusCreated, status, string(respBody))
	var v map[string]any
	require.NoError(c.t, json.Unmarshal(respBody, &v))
	require.Regexp(c.t, uuidRE, v["id"])
	return v
}

func (c *client) createGroups(queueID string, names ...string) []map[string]any {
	c.t.Helper()
	status, body := c.do(http.MethodPost, "/queues/"+queueID+"/groups", groupsBody(names...))
	require.Equal(c.t, http.StatusCreated, status, string(body))
	var resp struct {
		Groups []map[string]any `json:"groups"`
	}
	require.NoError(c.t, json.Unmarshal(body, &resp))
	require.Len(c.t, resp.Groups, len(names))
	return resp.Groups
}

// awaitListed waits until the list at path has n entries under key. The
// server answers lists from a catalog cache that follows etcd, so a list
// right after a create or delete may lag behind it, much as DMS documents
// a short "being created" window.
func (c *client) awaitListed(path, key string, n int) {
	c.t.Helper()
	var last string
	ok := assert.Eventually(c.t, func() bool {
		resp, err := c.http.Get(c.project + path)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		last = string(body)
		var v map[string]json.RawMessage
		var list []any
		return json.Unmarshal(body, &v) == nil && json.Unmarshal(v[key], &list) == nil && len(list) == n
	}, 5*time.Second, 10*time.Millisecond)
	require.True(c.t, ok, "waiting for %d %s at %s; last answer: %s", n, key, path, last)
}

func (c *client) listGroups(queueID, query string) map[string]any {
	c.t.Helper()
	return c.getJSONObject("/queues/" + queueID + "/groups" + query)
}

type consumed struct {
	Message struct {
		Body       json.RawMessage `json:"body"`
		Attributes json.RawMessage `json:"attributes"`
		Tags       []string        `json:"tags"`
	} `json:"message"`
	Handler string `json:"handler"`
}

// consumeAtLeast consumes until n messages came. A NORMAL queue serves one
// partition per call, so it may take a few calls; each waits for messages
// on the server rather than sleeping here.
func (c *client) consumeAtLeast(queueID, groupID string, n int) []consumed {
	c.t.Helper()
	var got []consumed
	for attempt := 0; attempt < 10 && len(got) < n; attempt++ {
		status, body := c.do(http.MethodGet,
			"/queues/"+queueID+"/groups/"+groupID+"/messages?time_wait=2&max_msgs=10", nil)
		require.Equal(c.t, http.StatusOK, status, string(body))
		var batch []consumed
		require.NoError(c.t, json.Unmarshal(body, &batch))
		got = append(got, batch...)
	}
	require.GreaterOrEqual(c.t, len(got), n, "consumed messages")
	return got
}

func groupsBody(names ...string) map[string]any {
	groups := make([]map[string]any, len(names))
	for i, name := range names {
		groups[i] = map[string]any{"name": name}
	}
	return map[string]any{"groups": groups}
}

func batchOf(messages ...map[string]any) map[string]any {
	return map[string]any{"messages": messages}
}

func keys[V any](m map[string]V) []string {
	return slices.Collect(maps.Keys(m))
}

// canonicalJSON makes equal JSON values equal strings.
func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(raw, &v), string(raw))
	canonical, err := json.Marshal(v)
	require.NoError(t, err)
	return string(canonical)
}

func testTags(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "tagged", "queue_mode": "FIFO"})["id"].(string)
	groups := c.createGroups(queueID, "either", "both")
	status, body := c.do(http.MethodPost, "/queues/"+queueID+"/messages", batchOf(
		map[string]any{"body": "red", "tags": []string{"red"}},
		map[string]any{"body": "red-big", "tags": []string{"red", "big"}},
		map[string]any{"body": "plain"},
	))
	require.Equal(t, http.StatusCreated, status, string(body))
	bodies := func(path string) []string {
		status, body := c.do(http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var got []consumed
		require.NoError(t, json.Unmarshal(body, &got))
		var out []string
		for _, m := range got {
			var s string
			require.NoError(t, json.Unmarshal(m.Message.Body, &s))
			out = append(out, s)
		}
		return out
	}
	base := "/queues/" + queueID + "/groups/"
	assert.Equal(t, []string{"red", "red-big"}, bodies(base+groups[0]["id"].(string)+"/messages?time_wait=1&tag=red&tag=big"))
	assert.Equal(t, []string{"red-big"}, bodies(base+groups[1]["id"].(string)+"/messages?time_wait=1&tag=red&tag=big&tag_type=and"))
	e := c.requireError(http.MethodGet, base+groups[1]["id"].(string)+"/messages?time_wait=1&tag=red", nil, http.StatusBadRequest, 10540014)
	assert.Equal(t, "TAG_FILTER_CONFLICT", e.Reason, "a group keeps one tag rule")
}

func testDeadLetters(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "poison", "redrive_policy": "enable", "max_consume_count": 1})["id"].(string)
	groupID := c.createGroups(queueID, "g")[0]["id"].(string)
	plainID := c.createQueue(map[string]any{"name": "plain"})["id"].(string)
	plainGroup := c.createGroups(plainID, "g")[0]["id"].(string)
	base := "/queues/" + queueID + "/groups/" + groupID
	status, body := c.do(http.MethodPost, "/queues/"+queueID+"/messages", batchOf(map[string]any{"body": "bad"}))
	require.Equal(t, http.StatusCreated, status, string(body))

	msgs := c.consumeAtLeast(queueID, groupID, 1)
	status, body = c.do(http.MethodPost, base+"/ack", map[string]any{"message": []map[string]string{{"handler": msgs[0].Handler, "status": "fail"}}})
	require.Equal(t, http.StatusOK, status, string(body))
	assert.JSONEq(t, `{"success":0,"fail":1}`, string(body))

	status, body = c.do(http.MethodGet, base+"/deadletters?time_wait=5", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var dead []consumed
	require.NoError(t, json.Unmarshal(body, &dead))
	require.Len(t, dead, 1)
	assert.JSONEq(t, `"bad"`, string(dead[0].Message.Body))

	groups := c.listGroups(queueID, "?include_deadletter=true")["groups"].([]any)
	first := groups[0].(map[string]any)
	assert.EqualValues(t, 1, first["produced_deadletters"])
	assert.EqualValues(t, 1, first["available_deadletters"])

	status, body = c.do(http.MethodPost, base+"/ack", map[string]any{"message": []map[string]string{{"handler": dead[0].Handler}}})
	require.Equal(t, http.StatusOK, status, string(body))
	assert.JSONEq(t, `{"success":0,"fail":1}`, string(body), "a dead-letter handler does not ack a message")
	status, body = c.do(http.MethodPost, base+"/deadletters/ack", map[string]any{"message": []map[string]string{{"handler": dead[0].Handler, "status": "success"}}})
	require.Equal(t, http.StatusOK, status, string(body))
	assert.JSONEq(t, `{"success":1,"fail":0}`, string(body))

	c.requireError(http.MethodGet, "/queues/"+plainID+"/groups/"+plainGroup+"/deadletters", nil, http.StatusBadRequest, 10540010)
}

// testBytesKept checks that a message's bytes are never changed on the way
// through: a body is stored as the exact JSON text that was sent, and a
// request that is not Unicode text is refused rather than repaired.
func testBytesKept(t *testing.T, c *client) {
	queueID := c.createQueue(map[string]any{"name": "exact"})["id"].(string)
	groupID := c.createGroups(queueID, "reader")[0]["id"].(string)
	messages := "/queues/" + queueID + "/messages"

	t.Run("a body is stored as sent", func(t *testing.T) {
		c := c.with(t)
		// Spacing, key order, escapes, a surrogate pair and a number that a
		// float64 would round: each would change if the body were decoded
		// and encoded again.
		const body = "{ \"b\" : [1, 2.50, 12345678901234567890] ,\n\t\"a\":\"\\u00e9 é \\ud83d\\ude00 \\/ <&>\" }"
		status, resp := c.do(http.MethodPost, messages, `{"messages":[{"body":`+body+`}]}`)
		require.Equal(t, http.StatusCreated, status, string(resp))
		received, err := dmsv1.NewConsumerServiceClient(c.srv.Conn).ReceiveMessages(t.Context(), &dmsv1.ReceiveMessagesRequest{
			Group: "projects/" + c.projectID + "/queues/" + queueID + "/groups/" + groupID, WaitTime: durationpb.New(5 * time.Second),
		})
		require.NoError(t, err)
		require.Len(t, received.GetMessages(), 1)
		assert.Equal(t, body, string(received.GetMessages()[0].GetMessage().GetBody()), "the stored bytes are the sent JSON text")
	})

	t.Run("text that is not Unicode is refused", func(t *testing.T) {
		c := c.with(t)
		before := c.getJSONObject("/queues/" + queueID)["produced_messages"]
		tests := []struct{ name, body string }{
			{"invalid UTF-8 in a body string", "{\"messages\":[{\"body\":\"caf\xe9\"}]}"},
			{"invalid UTF-8 in an object body", "{\"messages\":[{\"body\":{\"k\":\"\xff\xfe\"}}]}"},
			{"invalid UTF-8 in an attribute", "{\"messages\":[{\"body\":1,\"attributes\":{\"a\":\"\xc3\"}}]}"},
			{"invalid UTF-8 in a tag", "{\"messages\":[{\"body\":1,\"tags\":[\"t\x80\"]}]}"},
			{"a lone high surrogate", `{"messages":[{"body":"\ud800x"}]}`},
			{"a lone low surrogate", `{"messages":[{"body":1,"attributes":{"a":"\udc00"}}]}`},
			{"a high surrogate at the end", `{"messages":[{"body":"\ud83d"}]}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := c.with(t)
				e := c.requireError(http.MethodPost, messages, tt.body, http.StatusBadRequest, 10540012)
				assert.Equal(t, "REQUEST_INVALID", e.Reason)
				assert.True(t, utf8.ValidString(e.Message), "the answer itself is valid UTF-8")
			})
		}
		c.requireError(http.MethodPost, "/queues", "{\"name\":\"q\xff\"}", http.StatusBadRequest, 10240009)
		c.requireError(http.MethodPost, "/queues/"+queueID+"/groups/"+groupID+"/ack",
			"{\"message\":[{\"handler\":\"h\xff\"}]}", http.StatusBadRequest, 10540012)
		assert.Equal(t, before, c.getJSONObject("/queues/" + queueID)["produced_messages"], "nothing was stored")
	})
}

// testProjectIDs checks that the DMS surface takes only project ids of the
// DMS form, 32 lowercase hex digits, while the native API takes more.
func testProjectIDs(t *testing.T, c *client) {
	for _, bad := range []string{"abc", "proj-ids", strings.Repeat("a", 31), strings.Repeat("a", 33),
		"0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdeg"} {
		t.Run(bad, func(t *testing.T) {
			c := c.with(t)
			c.project = c.root + bad
			e := c.requireError(http.MethodGet, "/queues", nil, http.StatusBadRequest, 10240005)
			assert.Equal(t, "PROJECT_INVALID", e.Reason)
			c.requireError(http.MethodPost, "/queues", map[string]any{"name": "q"}, http.StatusBadRequest, 10240005)
		})
	}
	_, err := dmsv1.NewQueueServiceClient(c.srv.Conn).ListQueues(t.Context(), &dmsv1.ListQueuesRequest{Parent: "projects/abc"})
	require.NoError(t, err, "the native API takes project ids of 1 to 64 characters of [A-Za-z0-9_-]")
}
