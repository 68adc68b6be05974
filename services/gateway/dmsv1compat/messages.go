package dmsv1compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/message"
)

// DMS v1.0 send limits, tighter than those of the dms.v1 API: ten messages
// whose sizes (message.Size) add up to at most 512 KiB.
const (
	maxMessagesPerSend = 10
	maxSendBatchBytes  = message.MaxBytes
)

type sendRequest struct {
	Messages []json.RawMessage `json:"messages"`
	// The v1.0 docs spell the flag returnId, the v2 SDK return_id; clients of
	// both reach this API.
	ReturnID      bool `json:"returnId"`
	ReturnIDSnake bool `json:"return_id"`
}

type sendResponse struct {
	Messages []sendResult `json:"messages"`
}

// sendResult is one message's outcome. A batch is stored whole or not at
// all, so state is always 0 (stored) with null error fields; clients read
// the fields, so they are there.
type sendResult struct {
	State     int     `json:"state"`
	Error     *string `json:"error"`
	ErrorCode *int    `json:"error_code"`
	ID        string  `json:"id,omitempty"`
}

func (h *handler) sendMessages(w http.ResponseWriter, r *http.Request, t target) error {
	var req sendRequest
	if err := readJSON(w, r, messagesBody, &req); err != nil {
		return err
	}
	// No DMS code is about sending too many messages; 10240014 ("too many
	// messages") is the documented code whose text fits, although DMS
	// documents it for consuming.
	if len(req.Messages) > maxMessagesPerSend {
		return badRequest(codeTooManyMessages, dmsv1.ErrorReason_ERROR_REASON_BATCH_TOO_LARGE,
			fmt.Sprintf("a send request has at most %d messages, not %d", maxMessagesPerSend, len(req.Messages)))
	}
	messages := make([]*dmsv1.Message, len(req.Messages))
	batchBytes := 0
	for i, raw := range req.Messages {
		m, err := parseMessage(raw)
		if err != nil {
			err.message = fmt.Sprintf("messages[%d]: %s", i, err.message)
			return err
		}
		messages[i] = m
		batchBytes += message.Size(m)
	}
	if batchBytes > maxSendBatchBytes {
		return errorFor(dmsv1.ErrorReason_ERROR_REASON_BATCH_TOO_LARGE,
			fmt.Sprintf("The message size is %d, larger than the size limit %d", batchBytes, maxSendBatchBytes))
	}
	resp, err := h.producer.SendMessages(r.Context(), &dmsv1.SendMessagesRequest{Queue: t.queue(), Messages: messages})
	if err != nil {
		return err
	}
	out := sendResponse{Messages: make([]sendResult, len(messages))}
	if req.ReturnID || req.ReturnIDSnake {
		for i, result := range resp.GetResults() {
			if i < len(out.Messages) {
				out.Messages[i].ID = result.GetMessageId()
			}
		}
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// parseMessage translates one DMS message. Its body may be any JSON value
// and is stored as the JSON text it was sent as, so that consumers get back
// the same value (and native consumers the same bytes).
func parseMessage(raw json.RawMessage) (*dmsv1.Message, *apiError) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, invalidMessage("is not a JSON object")
	}
	m := &dmsv1.Message{}
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		value := fields[key]
		isNull := string(value) == "null"
		switch key {
		case "body":
			if isNull {
				continue
			}
			// The body is stored as the exact JSON text that was sent,
			// spacing and escapes included: a message's bytes are never
			// changed on the way through.
			m.Body = value
		case "attributes":
			if isNull {
				continue
			}
			attributes, err := parseAttributes(value)
			if err != nil {
				return nil, err
			}
			m.Attributes = attributes
		case "tags":
			if err := json.Unmarshal(value, &m.Tags); err != nil {
				return nil, invalidMessage("tags is not a list of strings")
			}
		case "delay_time":
			delay, err := parseDelay(value)
			if err != nil {
				return nil, err
			}
			m.Delay = delay
		default:
			return nil, invalidMessage("the message contains the invalid field " + strconv.Quote(key) +
				"; a message has body, attributes, tags and delay_time")
		}
	}
	if m.Body == nil {
		return nil, invalidMessage("body is missing")
	}
	return m, nil
}

// invalidMessage is the DMS error for a message that is not made of the
// known fields with values of the right types.
func invalidMessage(message string) *apiError {
	return badRequest(codeMessageFieldsInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID, message)
}

// maxDelayMillis is the DMS limit of delay_time: 7 days.
const maxDelayMillis = 604_800_000

// parseDelay reads delay_time: milliseconds from 0 to 604800000, a fraction
// truncated as DMS does; 0 (or null) means no delay. Kafka queues refuse a
// delay (the server answers DELAY_NOT_ALLOWED, DMS code 10540010).
func parseDelay(value json.RawMessage) (*durationpb.Duration, *apiError) {
	if string(value) == "null" {
		return nil, nil
	}
	var delayMillis float64
	if err := json.Unmarshal(value, &delayMillis); err != nil {
		return nil, invalidMessage("delay_time is not a number")
	}
	if delayMillis < 0 || delayMillis > maxDelayMillis {
		return nil, errorFor(dmsv1.ErrorReason_ERROR_REASON_DELAY_INVALID,
			fmt.Sprintf("delay_time must be 0 to %d milliseconds, got %v", maxDelayMillis, delayMillis))
	}
	ms := int64(delayMillis)
	if ms == 0 {
		return nil, nil
	}
	return durationpb.New(time.Duration(ms) * time.Millisecond), nil
}

// parseAttributes keeps the JSON type of each value: the dms.v1 API has
// strings, integers, other numbers and booleans, and nothing else.
func parseAttributes(value json.RawMessage) (map[string]*dmsv1.AttributeValue, *apiError) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(value, &raw); err != nil {
		return nil, errorFor(dmsv1.ErrorReason_ERROR_REASON_ATTRIBUTE_INVALID, "attributes is not a JSON object")
	}
	attributes := make(map[string]*dmsv1.AttributeValue, len(raw))
	for name, rawValue := range raw {
		v, ok := attributeValue(rawValue)
		if !ok {
			return nil, errorFor(dmsv1.ErrorReason_ERROR_REASON_ATTRIBUTE_INVALID, "attribute "+strconv.Quote(name)+
				" is not a string, number or boolean")
		}
		attributes[name] = v
	}
	return attributes, nil
}

func attributeValue(raw json.RawMessage) (*dmsv1.AttributeValue, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	switch v := v.(type) {
	case string:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_StringValue{StringValue: v}}, true
	case bool:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: v}}, true
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_IntValue{IntValue: i}}, true
		}
		if f, err := v.Float64(); err == nil {
			return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: f}}, true
		}
	}
	return nil, false
}

// consumedMessage is one element of the bare JSON array that consume returns.
type consumedMessage struct {
	Message consumedContent `json:"message"`
	Handler string          `json:"handler"`
}

type consumedContent struct {
	Body       json.RawMessage `json:"body"`
	Attributes map[string]any  `json:"attributes"`
	Tags       []string        `json:"tags"`
}

func (h *handler) consumeMessages(w http.ResponseWriter, r *http.Request, t target) error {
	params, err := consumeParams(r.URL.Query())
	if err != nil {
		return err
	}
	filter, err := tagFilter(r.URL.Query())
	if err != nil {
		return err
	}
	resp, err := h.consumer.ReceiveMessages(r.Context(), &dmsv1.ReceiveMessagesRequest{
		Group:             t.group(),
		MaxMessages:       params.MaxMessages,
		WaitTime:          params.WaitTime,
		VisibilityTimeout: params.VisibilityTimeout,
		TagFilter:         filter,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, consumed(resp.GetMessages()))
	return nil
}

// consumeDeadLetters is 3.11: the same query and answer as consuming
// messages, without tags.
func (h *handler) consumeDeadLetters(w http.ResponseWriter, r *http.Request, t target) error {
	params, err := consumeParams(r.URL.Query())
	if err != nil {
		return err
	}
	params.Group = t.group()
	resp, err := h.consumer.ReceiveDeadLetters(r.Context(), params)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, consumed(resp.GetMessages()))
	return nil
}

// consumeParams reads max_msgs, time_wait and ack_wait with the DMS ranges
// and defaults.
func consumeParams(query url.Values) (*dmsv1.ReceiveDeadLettersRequest, error) {
	maxMsgs, err := intQuery(query, "max_msgs", 10, 1, 10, dmsv1.ErrorReason_ERROR_REASON_MAX_MESSAGES_INVALID)
	if err != nil {
		return nil, err
	}
	timeWait, err := intQuery(query, "time_wait", 3, 1, 60, dmsv1.ErrorReason_ERROR_REASON_WAIT_TIME_INVALID)
	if err != nil {
		return nil, err
	}
	ackWait, err := intQuery(query, "ack_wait", 30, 15, 300, dmsv1.ErrorReason_ERROR_REASON_VISIBILITY_TIMEOUT_INVALID)
	if err != nil {
		return nil, err
	}
	return &dmsv1.ReceiveDeadLettersRequest{
		MaxMessages:       int32(maxMsgs),
		WaitTime:          durationpb.New(time.Duration(timeWait) * time.Second),
		VisibilityTimeout: durationpb.New(time.Duration(ackWait) * time.Second),
	}, nil
}

// tagFilter reads the repeated tag parameter and tag_type (and|or, default
// or).
func tagFilter(query url.Values) (*dmsv1.TagFilter, error) {
	tags := query["tag"]
	match := dmsv1.TagMatch_TAG_MATCH_ANY
	switch strings.ToLower(query.Get("tag_type")) {
	case "", "or":
	case "and":
		match = dmsv1.TagMatch_TAG_MATCH_ALL
	default:
		return nil, badRequest(codeURLParamsInvalid, dmsv1.ErrorReason_ERROR_REASON_TAG_FILTER_INVALID,
			"tag_type "+strconv.Quote(query.Get("tag_type"))+" is neither and nor or")
	}
	if len(tags) == 0 {
		return nil, nil
	}
	return &dmsv1.TagFilter{Tags: tags, Match: match}, nil
}

func consumed(msgs []*dmsv1.ReceivedMessage) []consumedMessage {
	out := make([]consumedMessage, 0, len(msgs))
	for _, received := range msgs {
		m := received.GetMessage()
		tags := m.GetTags()
		if tags == nil {
			tags = []string{}
		}
		out = append(out, consumedMessage{
			Message: consumedContent{
				Body:       bodyJSON(m.GetBody()),
				Attributes: attributesJSON(m.GetAttributes()),
				Tags:       tags,
			},
			Handler: received.GetReceiptHandle(),
		})
	}
	return out
}

// intQuery reads an optional integer query parameter within [lo, hi].
func intQuery(query url.Values, name string, def, lo, hi int, reason dmsv1.ErrorReason) (int, error) {
	raw := query.Get(name)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < lo || v > hi {
		return 0, errorFor(reason,
			fmt.Sprintf("%s %q is not an integer between %d and %d", name, raw, lo, hi))
	}
	return v, nil
}

// bodyJSON gives back a body as the JSON value it was sent as. Bodies sent
// through other APIs need not be JSON: text becomes a JSON string and other
// bytes a base64 JSON string.
func bodyJSON(body []byte) json.RawMessage {
	// JSON text is UTF-8; a native producer may have sent JSON-looking
	// bytes that are not.
	if json.Valid(body) && utf8.Valid(body) {
		return body
	}
	var encoded []byte
	if utf8.Valid(body) {
		encoded, _ = json.Marshal(string(body))
	} else {
		encoded, _ = json.Marshal(body) // []byte marshals as base64
	}
	return encoded
}

func attributesJSON(attributes map[string]*dmsv1.AttributeValue) map[string]any {
	out := make(map[string]any, len(attributes))
	for name, v := range attributes {
		switch kind := v.GetKind().(type) {
		case *dmsv1.AttributeValue_StringValue:
			out[name] = kind.StringValue
		case *dmsv1.AttributeValue_IntValue:
			out[name] = kind.IntValue
		case *dmsv1.AttributeValue_BoolValue:
			out[name] = kind.BoolValue
		case *dmsv1.AttributeValue_DoubleValue:
			// JSON has no NaN or infinity, which other APIs can send.
			if math.IsNaN(kind.DoubleValue) || math.IsInf(kind.DoubleValue, 0) {
				out[name] = strconv.FormatFloat(kind.DoubleValue, 'g', -1, 64)
			} else {
				out[name] = kind.DoubleValue
			}
		}
	}
	return out
}

type ackRequest struct {
	Message []ackEntry `json:"message"`
}

type ackEntry struct {
	Handler string `json:"handler"`
	Status  string `json:"status"`
}

type ackResponse struct {
	Success int `json:"success"`
	Fail    int `json:"fail"`
}

// ackMessages applies the DMS rule that acks count in order: the server
// stops at the first ack that is a fail or cannot be applied, and that one
// and all after it are counted as failed.
func (h *handler) ackMessages(w http.ResponseWriter, r *http.Request, t target) error {
	return h.ack(w, r, func(acks []*dmsv1.Ack) ([]*dmsv1.AckResult, error) {
		resp, err := h.consumer.AckMessages(r.Context(), &dmsv1.AckMessagesRequest{Group: t.group(), Acks: acks, StopAtFirstFailure: true})
		return resp.GetResults(), err
	})
}

// ackDeadLetters is 3.12: the same body, answer and in-order rule.
func (h *handler) ackDeadLetters(w http.ResponseWriter, r *http.Request, t target) error {
	return h.ack(w, r, func(acks []*dmsv1.Ack) ([]*dmsv1.AckResult, error) {
		resp, err := h.consumer.AckDeadLetters(r.Context(), &dmsv1.AckDeadLettersRequest{Group: t.group(), Acks: acks, StopAtFirstFailure: true})
		return resp.GetResults(), err
	})
}

func (h *handler) ack(w http.ResponseWriter, r *http.Request, send func([]*dmsv1.Ack) ([]*dmsv1.AckResult, error)) error {
	var req ackRequest
	if err := readJSON(w, r, messagesBody, &req); err != nil {
		return err
	}
	acks := make([]*dmsv1.Ack, len(req.Message))
	for i, entry := range req.Message {
		status, err := ackStatus(entry.Status)
		if err != nil {
			err.message = fmt.Sprintf("message[%d]: %s", i, err.message)
			return err
		}
		acks[i] = &dmsv1.Ack{ReceiptHandle: entry.Handler, Status: status}
	}
	if len(acks) == 0 {
		writeJSON(w, http.StatusOK, ackResponse{})
		return nil
	}
	results, err := send(acks)
	if err != nil {
		return err
	}
	succeeded := 0
	for succeeded < len(acks) && succeeded < len(results) &&
		results[succeeded].GetApplied() && acks[succeeded].GetStatus() == dmsv1.AckStatus_ACK_STATUS_SUCCESS {
		succeeded++
	}
	// The DMS answer has counts only; why an ack was refused is in the log
	// (and in the native API's per-handle results).
	for i, result := range results {
		if !result.GetApplied() && result.GetReason() != dmsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			h.logger.DebugContext(r.Context(), "dms ack not applied", "path", r.URL.Path, "index", i,
				"reason", reasonName(result.GetReason()), "error", result.GetErrorMessage())
		}
	}
	writeJSON(w, http.StatusOK, ackResponse{Success: succeeded, Fail: len(acks) - succeeded})
	return nil
}

// ackStatus reads a DMS ack status; clients leave it out to mean success.
func ackStatus(s string) (dmsv1.AckStatus, *apiError) {
	switch strings.ToLower(s) {
	case "", "success":
		return dmsv1.AckStatus_ACK_STATUS_SUCCESS, nil
	case "fail":
		return dmsv1.AckStatus_ACK_STATUS_FAIL, nil
	}
	return 0, errorFor(dmsv1.ErrorReason_ERROR_REASON_ACK_STATUS_INVALID,
		"status "+strconv.Quote(s)+" is neither success nor fail")
}
