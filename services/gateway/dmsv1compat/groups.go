package dmsv1compat

import (
	"context"
	"net/http"
	"strconv"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// maxGroupsPerQueue is the DMS v1.0 limit on consumer groups per queue.
const maxGroupsPerQueue = 3

type createGroupsRequest struct {
	Groups []groupRef `json:"groups"`
}

type groupRef struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
}

type createGroupsResponse struct {
	Groups []groupRef `json:"groups"`
}

// createGroups creates a batch of groups all or nothing, as DMS does,
// although the queue service creates one group per call: duplicate names and
// the limit are checked against the listed groups first, and since the
// listing may lag behind the catalog, the groups already created are deleted
// again if a later one still fails.
func (h *handler) createGroups(w http.ResponseWriter, r *http.Request, t target) error {
	var req createGroupsRequest
	if err := readJSON(w, r, managementBody, &req); err != nil {
		return err
	}
	if len(req.Groups) == 0 {
		return badRequest(codeBadRequestFormat, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"groups must list at least one consumer group")
	}
	existing, err := h.queues.ListConsumerGroups(r.Context(), &dmsv1.ListConsumerGroupsRequest{Parent: t.queue()})
	if err != nil {
		return err
	}
	taken := make(map[string]bool, maxGroupsPerQueue)
	for _, g := range existing.GetGroups() {
		taken[g.GetDisplayName()] = true
	}
	for _, g := range req.Groups {
		if taken[g.Name] {
			return errorFor(dmsv1.ErrorReason_ERROR_REASON_GROUP_ALREADY_EXISTS,
				"consumer group "+strconv.Quote(g.Name)+" already exists on the queue or is listed twice")
		}
		taken[g.Name] = true
	}
	if total := len(existing.GetGroups()) + len(req.Groups); total > maxGroupsPerQueue {
		return errorFor(dmsv1.ErrorReason_ERROR_REASON_GROUP_QUOTA_EXCEEDED,
			"a queue has at most "+strconv.Itoa(maxGroupsPerQueue)+" consumer groups; it has "+
				strconv.Itoa(len(existing.GetGroups()))+" and the request adds "+strconv.Itoa(len(req.Groups)))
	}

	out := createGroupsResponse{Groups: make([]groupRef, 0, len(req.Groups))}
	for _, g := range req.Groups {
		resp, err := h.queues.CreateConsumerGroup(r.Context(), &dmsv1.CreateConsumerGroupRequest{
			Parent: t.queue(),
			Group:  &dmsv1.ConsumerGroup{DisplayName: g.Name},
		})
		if err != nil {
			h.undoCreateGroups(r.Context(), t, out.Groups)
			return err
		}
		out.Groups = append(out.Groups, groupRef{ID: resp.GetGroup().GetId(), Name: resp.GetGroup().GetDisplayName()})
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// undoCreateGroups deletes the groups of a batch that failed part way. It
// runs even when the client has gone, so that the batch still does not
// half-happen.
func (h *handler) undoCreateGroups(ctx context.Context, t target, created []groupRef) {
	ctx = context.WithoutCancel(ctx)
	for _, g := range created {
		gt := t
		gt.groupID = g.ID
		if _, err := h.queues.DeleteConsumerGroup(ctx, &dmsv1.DeleteConsumerGroupRequest{Name: gt.group()}); err != nil {
			h.logger.ErrorContext(ctx, "cannot undo the creation of a consumer group after its batch failed",
				"group", gt.group(), "error", err)
		}
	}
}

type listGroupsResponse struct {
	QueueID   string `json:"queue_id"`
	QueueName string `json:"queue_name"`
	// Only with include_deadletter=true.
	RedrivePolicy string      `json:"redrive_policy,omitempty"`
	Groups        []groupView `json:"groups"`
}

type groupView struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	ProducedMessages  int64  `json:"produced_messages"`
	ConsumedMessages  int64  `json:"consumed_messages"`
	AvailableMessages int64  `json:"available_messages"`
	// Only with include_deadletter=true.
	ProducedDeadletters  *int64 `json:"produced_deadletters,omitempty"`
	AvailableDeadletters *int64 `json:"available_deadletters,omitempty"`
}

// listGroups lists the groups of a queue. include_messages_num is ignored:
// the counts come with the groups at no extra cost, so they are always
// there.
func (h *handler) listGroups(w http.ResponseWriter, r *http.Request, t target) error {
	includeDeadLetter, err := boolQuery(r, "include_deadletter")
	if err != nil {
		return err
	}
	// The group list does not name its queue, and DMS shows the queue name.
	queue, err := h.queues.GetQueue(r.Context(), &dmsv1.GetQueueRequest{Name: t.queue()})
	if err != nil {
		return err
	}
	resp, err := h.queues.ListConsumerGroups(r.Context(), &dmsv1.ListConsumerGroupsRequest{Parent: t.queue()})
	if err != nil {
		return err
	}
	out := listGroupsResponse{
		QueueID:   queue.GetQueue().GetId(),
		QueueName: queue.GetQueue().GetDisplayName(),
		Groups:    []groupView{},
	}
	if includeDeadLetter {
		out.RedrivePolicy = redrivePolicy(queue.GetQueue())
	}
	for _, g := range page(resp.GetGroups(), r) {
		stats := g.GetStats()
		v := groupView{
			ID:                g.GetId(),
			Name:              g.GetDisplayName(),
			ProducedMessages:  stats.GetProducedMessages(),
			ConsumedMessages:  stats.GetConsumedMessages(),
			AvailableMessages: stats.GetAvailableMessages(),
		}
		if includeDeadLetter {
			produced, available := stats.GetProducedDeadLetters(), stats.GetAvailableDeadLetters()
			v.ProducedDeadletters, v.AvailableDeadletters = &produced, &available
		}
		out.Groups = append(out.Groups, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// page applies DMS paging, which only happens when both page_size and
// current_page are valid; otherwise every group is listed.
func page(groups []*dmsv1.ConsumerGroup, r *http.Request) []*dmsv1.ConsumerGroup {
	size, errSize := strconv.Atoi(r.URL.Query().Get("page_size"))
	current, errCurrent := strconv.Atoi(r.URL.Query().Get("current_page"))
	if errSize != nil || errCurrent != nil || size < 1 || current < 1 {
		return groups
	}
	pages := (len(groups) + size - 1) / size
	if current > pages {
		return nil
	}
	start := (current - 1) * size
	return groups[start : start+min(size, len(groups)-start)]
}

func (h *handler) deleteGroup(w http.ResponseWriter, r *http.Request, t target) error {
	if _, err := h.queues.DeleteConsumerGroup(r.Context(), &dmsv1.DeleteConsumerGroupRequest{Name: t.group()}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
