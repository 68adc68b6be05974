package dmsv1compat

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// queueModes are the DMS v1.0 queue_mode values.
var queueModes = map[string]dmsv1.QueueMode{
	"NORMAL":   dmsv1.QueueMode_QUEUE_MODE_NORMAL,
	"FIFO":     dmsv1.QueueMode_QUEUE_MODE_FIFO,
	"KAFKA_HA": dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA,
	"KAFKA_HT": dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT,
	"AMQP":     dmsv1.QueueMode_QUEUE_MODE_AMQP,
}

func queueModeName(mode dmsv1.QueueMode) string {
	if mode == dmsv1.QueueMode_QUEUE_MODE_UNSPECIFIED {
		return "NORMAL"
	}
	return strings.TrimPrefix(mode.String(), "QUEUE_MODE_")
}

func isKafka(mode dmsv1.QueueMode) bool {
	return mode == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA || mode == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT
}

// kafkaTopic is the topic name that DMS tells Kafka clients to use.
func kafkaTopic(projectID, queueID string) string {
	return "k-" + projectID + "-" + queueID
}

// createQueueRequest is the body of POST /v1.0/{project_id}/queues. A zero
// max_consume_count or retention_hours reads as not given, because clients
// with typed models (golangsdk, .NET) send or omit zeros for fields they do
// not set.
type createQueueRequest struct {
	Name            string `json:"name"`
	Description     string `json:"description"`
	QueueMode       string `json:"queue_mode"`
	RedrivePolicy   string `json:"redrive_policy"`
	MaxConsumeCount int32  `json:"max_consume_count"`
	RetentionHours  int    `json:"retention_hours"`
}

type createQueueResponse struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	KafkaTopic string `json:"kafka_topic,omitempty"`
}

func (h *handler) createQueue(w http.ResponseWriter, r *http.Request, t target) error {
	var req createQueueRequest
	if err := readJSON(w, r, managementBody, &req); err != nil {
		return err
	}
	queue, err := req.toQueue()
	if err != nil {
		return err
	}
	resp, err := h.queues.CreateQueue(r.Context(), &dmsv1.CreateQueueRequest{Parent: t.project(), Queue: queue})
	if err != nil {
		return err
	}
	created := resp.GetQueue()
	out := createQueueResponse{ID: created.GetId(), Name: created.GetDisplayName()}
	if isKafka(created.GetMode()) {
		out.KafkaTopic = kafkaTopic(t.projectID, created.GetId())
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// toQueue checks what only DMS v1.0 restricts and leaves the rest (names,
// description, max_consume_count) to the queue service.
func (req createQueueRequest) toQueue() (*dmsv1.Queue, error) {
	queue := &dmsv1.Queue{
		DisplayName:     req.Name,
		Description:     req.Description,
		MaxConsumeCount: req.MaxConsumeCount,
		Mode:            dmsv1.QueueMode_QUEUE_MODE_NORMAL,
	}
	if req.QueueMode != "" {
		mode, ok := queueModes[strings.ToUpper(req.QueueMode)]
		if !ok {
			return nil, badRequest(codeBadRequestFormat, dmsv1.ErrorReason_ERROR_REASON_QUEUE_MODE_INVALID,
				"queue_mode "+strconv.Quote(req.QueueMode)+" is not one of NORMAL, FIFO, KAFKA_HA, KAFKA_HT, AMQP")
		}
		queue.Mode = mode
	}
	switch strings.ToLower(req.RedrivePolicy) {
	case "", "disable":
	case "enable":
		queue.DeadLetterEnabled = true
	default:
		return nil, badRequest(codeBadRequestFormat, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			"redrive_policy "+strconv.Quote(req.RedrivePolicy)+" is neither enable nor disable")
	}
	if req.RetentionHours != 0 {
		if !isKafka(queue.Mode) {
			return nil, badRequest(codeRetentionNotKafka, dmsv1.ErrorReason_ERROR_REASON_RETENTION_INVALID,
				"retention_hours can only be set on KAFKA_HA and KAFKA_HT queues; "+
					queueModeName(queue.Mode)+" queues keep messages for 72 hours")
		}
		if req.RetentionHours < 1 || req.RetentionHours > 72 {
			return nil, errorFor(dmsv1.ErrorReason_ERROR_REASON_RETENTION_INVALID,
				"retention_hours "+strconv.Itoa(req.RetentionHours)+" is not between 1 and 72")
		}
		queue.Retention = durationpb.New(time.Duration(req.RetentionHours) * time.Hour)
	}
	return queue, nil
}

// queueView is the DMS v1.0 queue object. Timestamps are ms-epoch numbers,
// as in every DMS example and client, although the docs say string.
type queueView struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Description      string `json:"description"`
	QueueMode        string `json:"queue_mode"`
	Reservation      int64  `json:"reservation"`
	Created          int64  `json:"created"`
	EffDate          int64  `json:"eff_date"`
	MaxMsgSizeByte   int32  `json:"max_msg_size_byte"`
	ProducedMessages int64  `json:"produced_messages"`
	GroupCount       int32  `json:"group_count"`
	// Only with include_deadletter=true, and never for Kafka queues.
	RedrivePolicy   string `json:"redrive_policy,omitempty"`
	MaxConsumeCount *int32 `json:"max_consume_count,omitempty"`
	// Only from GET of one Kafka queue.
	KafkaTopic string `json:"kafka_topic,omitempty"`
}

// defaultRetention is what the queue service keeps messages for when a
// queue does not say.
const defaultRetention = 72 * time.Hour

func newQueueView(q *dmsv1.Queue, includeDeadLetter bool) queueView {
	retention := defaultRetention
	if q.GetRetention() != nil {
		retention = q.GetRetention().AsDuration()
	}
	created := q.GetCreateTime().AsTime().UnixMilli()
	v := queueView{
		ID:               q.GetId(),
		Name:             q.GetDisplayName(),
		Description:      q.GetDescription(),
		QueueMode:        queueModeName(q.GetMode()),
		Reservation:      int64(retention / time.Minute),
		Created:          created,
		EffDate:          created,
		MaxMsgSizeByte:   q.GetMaxMessageBytes(),
		ProducedMessages: q.GetMessageCount(),
		GroupCount:       q.GetGroupCount(),
	}
	if includeDeadLetter && !isKafka(q.GetMode()) {
		v.RedrivePolicy = redrivePolicy(q)
		maxConsumeCount := q.GetMaxConsumeCount()
		v.MaxConsumeCount = &maxConsumeCount
	}
	return v
}

func redrivePolicy(q *dmsv1.Queue) string {
	if q.GetDeadLetterEnabled() {
		return "enable"
	}
	return "disable"
}

type listQueuesResponse struct {
	Queues []queueView `json:"queues"`
	Total  int         `json:"total"`
}

func (h *handler) listQueues(w http.ResponseWriter, r *http.Request, t target) error {
	includeDeadLetter, err := boolQuery(r, "include_deadletter")
	if err != nil {
		return err
	}
	out := listQueuesResponse{Queues: []queueView{}}
	req := &dmsv1.ListQueuesRequest{Parent: t.project()}
	// Page size 0 asks for all queues, but the server may still page.
	for {
		resp, err := h.queues.ListQueues(r.Context(), req)
		if err != nil {
			return err
		}
		for _, q := range resp.GetQueues() {
			out.Queues = append(out.Queues, newQueueView(q, includeDeadLetter))
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	out.Total = len(out.Queues)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) getQueue(w http.ResponseWriter, r *http.Request, t target) error {
	includeDeadLetter, err := boolQuery(r, "include_deadletter")
	if err != nil {
		return err
	}
	resp, err := h.queues.GetQueue(r.Context(), &dmsv1.GetQueueRequest{Name: t.queue()})
	if err != nil {
		return err
	}
	v := newQueueView(resp.GetQueue(), includeDeadLetter)
	if isKafka(resp.GetQueue().GetMode()) {
		v.KafkaTopic = kafkaTopic(t.projectID, resp.GetQueue().GetId())
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *handler) deleteQueue(w http.ResponseWriter, r *http.Request, t target) error {
	if _, err := h.queues.DeleteQueue(r.Context(), &dmsv1.DeleteQueueRequest{Name: t.queue()}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type quotasResponse struct {
	Quotas struct {
		Resources []quotaResource `json:"resources"`
	} `json:"quotas"`
}

type quotaResource struct {
	Type  string `json:"type"`
	Quota int    `json:"quota"`
	Used  int    `json:"used"`
	Min   int    `json:"min"`
	Max   int    `json:"max"`
}

// maxQueueQuota is the highest queue quota an operator may give a
// project (UpdateProjectQuotas), DMS's "max".
const maxQueueQuota = 10000

// quotas reports the project's queue quota in force (its own, or the
// server's default) and how many queues it has.
func (h *handler) quotas(w http.ResponseWriter, r *http.Request, t target) error {
	resp, err := h.queues.GetProjectQuotas(r.Context(), &dmsv1.GetProjectQuotasRequest{Name: t.project()})
	if err != nil {
		return err
	}
	var out quotasResponse
	out.Quotas.Resources = []quotaResource{{
		Type:  "queue",
		Quota: int(resp.GetQuotas().GetMaxQueues()),
		Used:  int(resp.GetQueuesUsed()),
		Min:   0,
		Max:   maxQueueQuota,
	}}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// boolQuery reads an optional boolean query parameter; absent is false.
func boolQuery(r *http.Request, name string) (bool, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		return false, badRequest(codeURLParamsInvalid, dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID,
			name+" "+strconv.Quote(raw)+" is neither true nor false")
	}
	return v, nil
}
