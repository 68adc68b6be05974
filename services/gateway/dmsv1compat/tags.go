package dmsv1compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

// Queue resource tags (DMS §3.14) are the queue's labels in the dms.v1 API.
// The DMS codes 10240035-10240045 are documented only as "queue tag
// validation", each without its meaning; this adapter gives each check one
// of them, and 10240044 (more than 10 tags) and 10240426 (no such key) as
// documented.
const (
	codeTagActionInvalid   = 10240035
	codeTagsEmpty          = 10240036
	codeTagKeyInvalid      = 10240037
	codeTagValueInvalid    = 10240038
	codeTagKeyDuplicated   = 10240039
	codeTagPagingInvalid   = 10240040
	codeTagMatchesInvalid  = 10240041
	codeTagFilterInvalid   = 10240042
	codeTagLimitExceeded   = 10240044
	codeTagKeyNotFound     = 10240426
	maxFilterKeyLength     = 127
	maxFilterValueLength   = 255
	defaultInstanceLimit   = 1000
	maxInstanceLimit       = 1000
	resourceNameMatchField = "resource_name"
)

type tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// tagsOf lists a queue's labels as DMS tags, by key.
func tagsOf(q *dmsv1.Queue) []tag {
	out := make([]tag, 0, len(q.GetLabels()))
	for _, k := range slices.Sorted(maps.Keys(q.GetLabels())) {
		out = append(out, tag{Key: k, Value: q.GetLabels()[k]})
	}
	return out
}

// checkTag applies the label rules with the DMS code that names the field.
func checkTag(t tag) error {
	if err := catalog.ValidateLabelKey(t.Key); err != nil {
		return badRequest(codeTagKeyInvalid, dmsv1.ErrorReason_ERROR_REASON_LABEL_INVALID, err.Error())
	}
	if err := catalog.ValidateLabelValue(t.Key, t.Value); err != nil {
		return badRequest(codeTagValueInvalid, dmsv1.ErrorReason_ERROR_REASON_LABEL_INVALID, err.Error())
	}
	return nil
}

// addTag is POST .../queue/{queue_id}/tags: one tag, added or given a new
// value.
func (h *handler) addTag(w http.ResponseWriter, r *http.Request, t target) error {
	var req struct {
		Tag *tag `json:"tag"`
	}
	if err := readJSON(w, r, managementBody, &req); err != nil {
		return err
	}
	if req.Tag == nil {
		return badRequest(codeTagsEmpty, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID, `the body has no "tag" object`)
	}
	if err := checkTag(*req.Tag); err != nil {
		return err
	}
	if _, err := h.queues.UpdateQueueLabels(r.Context(), &dmsv1.UpdateQueueLabelsRequest{
		Name: t.queue(), Set: map[string]string{req.Tag.Key: req.Tag.Value},
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteTag is DELETE .../queue/{queue_id}/tags/{key}; a key the queue does
// not have is 404 with 10240426.
func (h *handler) deleteTag(w http.ResponseWriter, r *http.Request, t target) error {
	key := r.PathValue("key")
	if err := catalog.ValidateLabelKey(key); err != nil {
		return badRequest(codeTagKeyInvalid, dmsv1.ErrorReason_ERROR_REASON_LABEL_INVALID, err.Error())
	}
	if _, err := h.queues.UpdateQueueLabels(r.Context(), &dmsv1.UpdateQueueLabelsRequest{
		Name: t.queue(), Remove: []string{key},
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tagsAction is POST .../queue/{queue_id}/tags/action: create or delete a
// batch of tags in one change. A delete tag with a value removes the key
// only while it has that value; one without removes it whatever its value.
// Deleting a key the queue does not have is no error, as in the tag service.
func (h *handler) tagsAction(w http.ResponseWriter, r *http.Request, t target) error {
	var req struct {
		Action string            `json:"action"`
		Tags   []json.RawMessage `json:"tags"`
	}
	if err := readJSON(w, r, managementBody, &req); err != nil {
		return err
	}
	if req.Action != "create" && req.Action != "delete" {
		return badRequest(codeTagActionInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"action "+strconv.Quote(req.Action)+" is neither create nor delete")
	}
	if len(req.Tags) == 0 {
		return badRequest(codeTagsEmpty, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID, "tags must list at least one tag")
	}
	type actionTag struct {
		Key   string  `json:"key"`
		Value *string `json:"value"`
	}
	tags := make([]actionTag, len(req.Tags))
	seen := map[string]bool{}
	for i, raw := range req.Tags {
		if err := json.Unmarshal(raw, &tags[i]); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return badRequest(codeTagsEmpty, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
				fmt.Sprintf("tags[%d] is not an object with a key and a value", i))
		}
		tg := tag{Key: tags[i].Key}
		if tags[i].Value != nil {
			tg.Value = *tags[i].Value
		}
		if err := checkTag(tg); err != nil {
			err.(*apiError).message = fmt.Sprintf("tags[%d]: %s", i, err.(*apiError).message)
			return err
		}
		if seen[tg.Key] {
			return badRequest(codeTagKeyDuplicated, dmsv1.ErrorReason_ERROR_REASON_LABEL_INVALID,
				fmt.Sprintf("tags[%d]: key %q is listed twice", i, tg.Key))
		}
		seen[tg.Key] = true
	}
	update := &dmsv1.UpdateQueueLabelsRequest{Name: t.queue(), AllowMissing: true}
	if req.Action == "create" {
		update.Set = map[string]string{}
		for _, tg := range tags {
			update.Set[tg.Key] = stringOr(tg.Value, "")
		}
	} else {
		var current map[string]string
		for _, tg := range tags {
			if tg.Value != nil {
				if current == nil {
					resp, err := h.queues.GetQueue(r.Context(), &dmsv1.GetQueueRequest{Name: t.queue()})
					if err != nil {
						return err
					}
					current = resp.GetQueue().GetLabels()
				}
				if v, ok := current[tg.Key]; !ok || v != *tg.Value {
					continue
				}
			}
			update.Remove = append(update.Remove, tg.Key)
		}
	}
	if _, err := h.queues.UpdateQueueLabels(r.Context(), update); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func stringOr(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

type tagsResponse struct {
	Tags []tag `json:"tags"`
}

// queueTags is GET .../queue/{queue_id}/tags.
func (h *handler) queueTags(w http.ResponseWriter, r *http.Request, t target) error {
	resp, err := h.queues.GetQueue(r.Context(), &dmsv1.GetQueueRequest{Name: t.queue()})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tagsResponse{Tags: tagsOf(resp.GetQueue())})
	return nil
}

type keyValues struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// projectTags is GET .../queue/tags: every key used on the project's
// queues with the values it has, for a console's tag pickers.
func (h *handler) projectTags(w http.ResponseWriter, r *http.Request, t target) error {
	queues, err := h.allQueues(r.Context(), t)
	if err != nil {
		return err
	}
	values := map[string]map[string]bool{}
	for _, q := range queues {
		for k, v := range q.GetLabels() {
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][v] = true
		}
	}
	out := struct {
		Tags []keyValues `json:"tags"`
	}{Tags: []keyValues{}}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		out.Tags = append(out.Tags, keyValues{Key: k, Values: slices.Sorted(maps.Keys(values[k]))})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// allQueues lists every queue of the project, page by page.
func (h *handler) allQueues(ctx context.Context, t target) ([]*dmsv1.Queue, error) {
	var out []*dmsv1.Queue
	req := &dmsv1.ListQueuesRequest{Parent: t.project()}
	for {
		resp, err := h.queues.ListQueues(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetQueues()...)
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

type instancesRequest struct {
	Action     string            `json:"action"`
	Limit      json.RawMessage   `json:"limit"`
	Offset     json.RawMessage   `json:"offset"`
	Tags       []keyValues       `json:"tags"`
	TagsAny    []keyValues       `json:"tags_any"`
	NotTags    []keyValues       `json:"not_tags"`
	NotTagsAny []keyValues       `json:"not_tags_any"`
	Matches    []json.RawMessage `json:"matches"`
}

type instance struct {
	ResourceID     string    `json:"resource_id"`
	ResourceName   string    `json:"resource_name"`
	ResourceDetail queueView `json:"resource_detail"`
	Tags           []tag     `json:"tags"`
}

// resourceInstances is POST .../queue/resource_instances/action, the tag
// service's filter: a queue is found when it has every tag of tags (a key
// with several values matching any of them, a key with none any value), at
// least one of tags_any, not all of not_tags, none of not_tags_any, and a
// name containing the resource_name match. count answers the number only.
func (h *handler) resourceInstances(w http.ResponseWriter, r *http.Request, t target) error {
	var req instancesRequest
	if err := readJSON(w, r, managementBody, &req); err != nil {
		return err
	}
	if req.Action != "filter" && req.Action != "count" {
		return badRequest(codeTagActionInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"action "+strconv.Quote(req.Action)+" is neither filter nor count")
	}
	limit, err := pagingNumber(req.Limit, "limit", defaultInstanceLimit, 1, maxInstanceLimit)
	if err != nil {
		return err
	}
	offset, err := pagingNumber(req.Offset, "offset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	for name, filter := range map[string][]keyValues{"tags": req.Tags, "tags_any": req.TagsAny, "not_tags": req.NotTags, "not_tags_any": req.NotTagsAny} {
		if err := checkFilter(name, filter); err != nil {
			return err
		}
	}
	nameMatch, err := resourceNameMatch(req.Matches)
	if err != nil {
		return err
	}
	queues, err := h.allQueues(r.Context(), t)
	if err != nil {
		return err
	}
	var found []*dmsv1.Queue
	for _, q := range queues {
		labels := q.GetLabels()
		if (len(req.Tags) == 0 || hasAll(labels, req.Tags)) &&
			(len(req.TagsAny) == 0 || hasAny(labels, req.TagsAny)) &&
			(len(req.NotTags) == 0 || !hasAll(labels, req.NotTags)) &&
			(len(req.NotTagsAny) == 0 || !hasAny(labels, req.NotTagsAny)) &&
			strings.Contains(q.GetDisplayName(), nameMatch) {
			found = append(found, q)
		}
	}
	if req.Action == "count" {
		writeJSON(w, http.StatusOK, struct {
			TotalCount int `json:"total_count"`
		}{len(found)})
		return nil
	}
	out := struct {
		Resources  []instance `json:"resources"`
		TotalCount int        `json:"total_count"`
	}{Resources: []instance{}, TotalCount: len(found)}
	if offset < len(found) {
		for _, q := range found[offset:min(len(found), offset+limit)] {
			out.Resources = append(out.Resources, instance{
				ResourceID: q.GetId(), ResourceName: q.GetDisplayName(),
				ResourceDetail: newQueueView(q, false), Tags: tagsOf(q),
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func hasTag(labels map[string]string, kv keyValues) bool {
	v, ok := labels[kv.Key]
	return ok && (len(kv.Values) == 0 || slices.Contains(kv.Values, v))
}

func hasAll(labels map[string]string, filter []keyValues) bool {
	for _, kv := range filter {
		if !hasTag(labels, kv) {
			return false
		}
	}
	return true
}

func hasAny(labels map[string]string, filter []keyValues) bool {
	for _, kv := range filter {
		if hasTag(labels, kv) {
			return true
		}
	}
	return false
}

// checkFilter applies the tag service's search limits, wider than those of
// the tags themselves: keys of 1 to 127 characters, values of up to 255,
// each key once.
func checkFilter(name string, filter []keyValues) error {
	seen := map[string]bool{}
	for i, kv := range filter {
		problem := ""
		switch n := utf8.RuneCountInString(kv.Key); {
		case n < 1 || n > maxFilterKeyLength:
			problem = fmt.Sprintf("key must be 1 to %d characters, got %d", maxFilterKeyLength, n)
		case seen[kv.Key]:
			problem = fmt.Sprintf("key %q is listed twice", kv.Key)
		}
		for _, v := range kv.Values {
			if utf8.RuneCountInString(v) > maxFilterValueLength {
				problem = fmt.Sprintf("a value of key %q is longer than %d characters", kv.Key, maxFilterValueLength)
			}
		}
		if problem != "" {
			return badRequest(codeTagFilterInvalid, dmsv1.ErrorReason_ERROR_REASON_LABEL_INVALID, fmt.Sprintf("%s[%d]: %s", name, i, problem))
		}
		seen[kv.Key] = true
	}
	return nil
}

// resourceNameMatch reads matches, whose only key is resource_name: the
// queue name must contain its value.
func resourceNameMatch(matches []json.RawMessage) (string, error) {
	name := ""
	for i, raw := range matches {
		var m struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || m.Key != resourceNameMatchField {
			return "", badRequest(codeTagMatchesInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
				fmt.Sprintf(`matches[%d] is not {"key": "resource_name", "value": "..."}`, i))
		}
		if utf8.RuneCountInString(m.Value) > maxFilterValueLength {
			return "", badRequest(codeTagMatchesInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
				fmt.Sprintf("matches[%d]: the value is longer than %d characters", i, maxFilterValueLength))
		}
		name = m.Value
	}
	return name, nil
}

// pagingNumber reads limit or offset, which the tag service documents as
// strings of digits; numbers are taken too.
func pagingNumber(raw json.RawMessage, name string, def, lo, hi int) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return def, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, badRequest(codeTagPagingInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			fmt.Sprintf("%s %s is not an integer from %d to %d", name, raw, lo, hi))
	}
	return v, nil
}
