package dmsv1compat_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// fuzzRoutes are the DMS v1.0 requests with a JSON body; the fuzzed byte
// picks one.
var fuzzRoutes = []string{"send", "ack", "create queue", "create groups", "dead-letter ack"}

// FuzzDMSRequestBodies sends arbitrary bodies to the DMS v1.0 API of a real
// server. Whatever the body, the answer is never a 5xx, is JSON in UTF-8 and,
// when it is an error, carries a code and a reason; a body that is not UTF-8
// is refused; and a send that is accepted stores every message body as the
// exact JSON text it was sent as.
func FuzzDMSRequestBodies(f *testing.F) {
	srv := testserver.Start(f)
	project := projectID("fuzz")
	base := "http://" + srv.HTTPAddr + "/v1.0/" + project
	httpClient := &http.Client{Timeout: 30 * time.Second}
	checkedQueue := createQueueOrFail(f, srv, project, map[string]any{"name": "checked", "queue_mode": "FIFO", "redrive_policy": "enable", "max_consume_count": 3})
	delayedQueue := createQueueOrFail(f, srv, project, map[string]any{"name": "delayed"})
	group := createGroupOrFail(f, srv, project, checkedQueue, "readers")
	groupName := "projects/" + project + "/queues/" + checkedQueue + "/groups/" + group

	for _, seed := range []struct {
		route uint8
		body  string
	}{
		{0, `{"messages":[{"body":{"a":1},"attributes":{"k":"v","n":1.5},"tags":["t"]}],"returnId":true}`},
		{0, `{"messages":[{"body": "text with spaces" }, {"body":[1, 2.50, 1e400]}]}`},
		{0, `{"messages":[{"body":"\ud83d\ude00 \u00e9","delay_time":1000}]}`},
		{0, "{\"messages\":[{\"body\":\"\xff\"}]}"},
		{0, `{"messages":[{"body":"\ud800"}]}`},
		{1, `{"message":[{"handler":"abc","status":"success"},{"handler":"","status":"fail"}]}`},
		{2, `{"name":"q1","description":"d","queue_mode":"KAFKA_HA","retention_hours":24}`},
		{2, `{"name":"q2","redrive_policy":"enable","max_consume_count":5}`},
		{3, `{"groups":[{"name":"g1"},{"name":"g2"}]}`},
		{4, `{"message":[{"handler":"x"}]}`},
		{0, `not json`},
		{0, ``},
	} {
		f.Add(seed.route, []byte(seed.body))
	}
	consumer := dmsv1.NewConsumerServiceClient(srv.Conn)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		queue := checkedQueue
		expected, check := expectedBodies(body)
		if r == "send" && !check {
			queue = delayedQueue // released later, it would upset the checked queue's order
		}
		path := map[string]string{
			"send":            "/queues/" + queue + "/messages",
			"ack":             "/queues/" + checkedQueue + "/groups/" + group + "/ack",
			"create queue":    "/queues",
			"create groups":   "/queues/" + delayedQueue + "/groups",
			"dead-letter ack": "/queues/" + checkedQueue + "/groups/" + group + "/deadletters/ack",
		}[r]
		req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %q: %d %s", r, body, resp.StatusCode, answer)
		}
		if !json.Valid(answer) || !utf8.Valid(answer) {
			t.Fatalf("%s %q: the answer is not JSON in UTF-8: %q", r, body, answer)
		}
		if resp.StatusCode >= 400 {
			var e dmsError
			if err := json.Unmarshal(answer, &e); err != nil || e.Code == 0 || e.Reason == "" || e.Message == "" {
				t.Fatalf("%s %q: error answer without code, reason or message: %s", r, body, answer)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("%s: a body that is not UTF-8 was accepted: %q -> %d %s", r, body, resp.StatusCode, answer)
		}
		if r != "send" || !check {
			return
		}
		// The checked queue is FIFO and drained after every send, so the
		// messages come back in the order they were sent.
		var got []*dmsv1.ReceivedMessage
		for attempt := 0; len(got) < len(expected) && attempt < 20; attempt++ {
			received, err := consumer.ReceiveMessages(t.Context(), &dmsv1.ReceiveMessagesRequest{
				Group: groupName, MaxMessages: int32(len(expected) - len(got)), WaitTime: durationpb.New(time.Second),
			})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, received.GetMessages()...)
		}
		if len(got) != len(expected) {
			t.Fatalf("send %q was accepted with %d messages, %d came back", body, len(expected), len(got))
		}
		acks := make([]*dmsv1.Ack, len(got))
		for i, m := range got {
			if !bytes.Equal(m.GetMessage().GetBody(), expected[i]) {
				t.Fatalf("message %d of %q was stored as %q, not as sent (%q)", i, body, m.GetMessage().GetBody(), expected[i])
			}
			acks[i] = &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle()}
		}
		if _, err := consumer.AckMessages(t.Context(), &dmsv1.AckMessagesRequest{Group: groupName, Acks: acks}); err != nil {
			t.Fatal(err)
		}
	})
}

// expectedBodies reads a send body as the adapter does and returns the JSON
// text of each message's body; check is false when a message may be
// delayed, which the checked queue must not get.
func expectedBodies(body []byte) (bodies [][]byte, check bool) {
	var req struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil, false
	}
	for _, raw := range req.Messages {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			return nil, false
		}
		if _, delayed := fields["delay_time"]; delayed {
			return nil, false
		}
		bodies = append(bodies, fields["body"])
	}
	return bodies, true
}

func createQueueOrFail(f *testing.F, srv *testserver.Server, project string, spec map[string]any) string {
	var created struct {
		ID string `json:"id"`
	}
	postOrFail(f, "http://"+srv.HTTPAddr+"/v1.0/"+project+"/queues", spec, &created)
	return created.ID
}

func createGroupOrFail(f *testing.F, srv *testserver.Server, project, queueID, name string) string {
	var created struct {
		Groups []struct {
			ID string `json:"id"`
		} `json:"groups"`
	}
	postOrFail(f, "http://"+srv.HTTPAddr+"/v1.0/"+project+"/queues/"+queueID+"/groups", groupsBody(name), &created)
	return created.Groups[0].ID
}

func postOrFail(f *testing.F, url string, body, out any) {
	encoded, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(encoded))
	if err != nil {
		f.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		f.Fatalf("POST %s: %d %s", url, resp.StatusCode, answer)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		f.Fatal(err)
	}
}
