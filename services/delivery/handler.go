package delivery

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/protobuf/types/known/durationpb"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
)

// MaxAcksPerRequest bounds the acks of one AckMessages or AckDeadLetters
// request, and the handles of one ChangeVisibility (the DMS limit).
const MaxAcksPerRequest = 1000

// Handler serves the public ConsumerService and the internal DeliveryService.
type Handler struct {
	dmsv1.UnimplementedConsumerServiceServer
	deliveryv1.UnimplementedDeliveryServiceServer

	engine *Engine
	cache  *catalog.Cache
	// recordConsumers keeps who received each delivery, for message traces.
	recordConsumers bool
}

var (
	_ dmsv1.ConsumerServiceServer      = (*Handler)(nil)
	_ deliveryv1.DeliveryServiceServer = (*Handler)(nil)
)

// NewHandler returns the gRPC handler of the delivery role.
func NewHandler(engine *Engine, cache *catalog.Cache) *Handler {
	return &Handler{engine: engine, cache: cache, recordConsumers: true}
}

// RecordConsumers turns the recording of consumers for message traces on
// or off (on by default).
func (h *Handler) RecordConsumers(on bool) { h.recordConsumers = on }

// consumer names who receives through a call, for message traces: the
// consumer id it gave, or else the principal it acts for (one string per
// receive, in its state record).
func (h *Handler) consumer(ctx context.Context, consumerID string) string {
	if !h.recordConsumers {
		return ""
	}
	if consumerID != "" {
		return consumerID
	}
	if p := authz.FromContext(ctx); p.Kind == authz.User {
		return p.String()
	}
	return ""
}

// ReceiveMessages implements dms.v1.ConsumerService.
func (h *Handler) ReceiveMessages(ctx context.Context, req *dmsv1.ReceiveMessagesRequest) (*dmsv1.ReceiveMessagesResponse, error) {
	opts, err := receiveOptions(req.GetMaxMessages(), req.GetWaitTime(), req.GetVisibilityTimeout())
	if err != nil {
		return nil, err
	}
	opts.Filter = req.GetTagFilter()
	if ps := req.GetPartitions(); len(ps) > 0 {
		opts.Partitions = make(map[int32]bool, len(ps))
		for _, p := range ps {
			opts.Partitions[p] = true
		}
	}
	if err := validateBroadcast(req.GetBroadcast()); err != nil {
		return nil, err
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	opts.Consumer = h.consumer(ctx, req.GetConsumerId())
	msgs, err := h.engine.Receive(ctx, q, g, opts, req.GetConsumerId(), req.GetBroadcast())
	if err != nil {
		return nil, err
	}
	return &dmsv1.ReceiveMessagesResponse{Messages: msgs}, nil
}

// validateBroadcast refuses a start that is no BroadcastStart value, which
// would otherwise be read as the default.
func validateBroadcast(b *dmsv1.BroadcastOptions) error {
	if _, known := dmsv1.BroadcastStart_name[int32(b.GetStart())]; !known {
		return errs.Wrapf(errs.ErrBroadcastStartInvalid, "broadcast start %d is not one of EARLIEST (1), COMMITTED (2) and LATEST (3)", b.GetStart())
	}
	return nil
}

func receiveOptions(maxMessages int32, wait, visibility *durationpb.Duration) (ReceiveOptions, error) {
	opts := ReceiveOptions{MaxMessages: int(maxMessages), WaitTime: wait.AsDuration(), Visibility: visibility.AsDuration()}
	if opts.MaxMessages == 0 {
		opts.MaxMessages = DefaultMaxMessages
	}
	if opts.MaxMessages < 1 || opts.MaxMessages > MaxReceiveMessages {
		return opts, errs.Wrapf(errs.ErrMaxMessagesInvalid, "max_messages must be 1 to %d, got %d", MaxReceiveMessages, opts.MaxMessages)
	}
	if opts.WaitTime < 0 || opts.WaitTime > MaxWaitTime {
		return opts, errs.Wrapf(errs.ErrWaitTimeInvalid, "wait_time must be 0 to %s, got %s", MaxWaitTime, opts.WaitTime)
	}
	if visibility == nil {
		opts.Visibility = DefaultVisibility
	}
	if opts.Visibility < MinVisibility || opts.Visibility > MaxVisibility {
		return opts, errs.Wrapf(errs.ErrVisibilityTimeoutInvalid, "visibility_timeout must be %s to %s, got %s", MinVisibility, MaxVisibility, opts.Visibility)
	}
	return opts, nil
}

func ackRequests(acks []*dmsv1.Ack) ([]AckRequest, error) {
	if n := len(acks); n == 0 || n > MaxAcksPerRequest {
		return nil, errs.Wrapf(errs.ErrBatchTooLarge, "an ack request settles 1 to %d deliveries, got %d", MaxAcksPerRequest, n)
	}
	return ackRequestsOf(acks), nil
}

// AckMessages implements dms.v1.ConsumerService.
func (h *Handler) AckMessages(ctx context.Context, req *dmsv1.AckMessagesRequest) (*dmsv1.AckMessagesResponse, error) {
	results, err := h.ack(ctx, req.GetGroup(), req.GetAcks(), req.GetStopAtFirstFailure(), h.engine.Ack)
	if err != nil {
		return nil, err
	}
	return &dmsv1.AckMessagesResponse{Results: results}, nil
}

// ack resolves the group and settles acks with one of the engine's ack
// operations (messages or dead letters).
func (h *Handler) ack(ctx context.Context, group string, acks []*dmsv1.Ack, stopAtFirstFailure bool,
	settle func(context.Context, *metadatav1.QueueRecord, *metadatav1.GroupRecord, []AckRequest, bool) ([]*dmsv1.AckResult, error)) ([]*dmsv1.AckResult, error) {
	requests, err := ackRequests(acks)
	if err != nil {
		return nil, err
	}
	q, g, err := h.cache.ResolveGroupName(ctx, group)
	if err != nil {
		return nil, err
	}
	return settle(ctx, q, g, requests, stopAtFirstFailure)
}

// ChangeVisibility implements dms.v1.ConsumerService.
func (h *Handler) ChangeVisibility(ctx context.Context, req *dmsv1.ChangeVisibilityRequest) (*dmsv1.ChangeVisibilityResponse, error) {
	if n := len(req.GetReceiptHandles()); n == 0 || n > MaxAcksPerRequest {
		return nil, errs.Wrapf(errs.ErrBatchTooLarge, "a visibility change names 1 to %d receipt handles, got %d", MaxAcksPerRequest, n)
	}
	opts, err := receiveOptions(1, nil, req.GetVisibilityTimeout())
	if err != nil {
		return nil, err
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	results, err := h.engine.ChangeVisibility(ctx, q, g, req.GetReceiptHandles(), opts.Visibility)
	if err != nil {
		return nil, err
	}
	return &dmsv1.ChangeVisibilityResponse{Results: results}, nil
}

// ReceiveDeadLetters implements dms.v1.ConsumerService.
func (h *Handler) ReceiveDeadLetters(ctx context.Context, req *dmsv1.ReceiveDeadLettersRequest) (*dmsv1.ReceiveDeadLettersResponse, error) {
	opts, err := receiveOptions(req.GetMaxMessages(), req.GetWaitTime(), req.GetVisibilityTimeout())
	if err != nil {
		return nil, err
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	opts.Consumer = h.consumer(ctx, "")
	msgs, err := h.engine.ReceiveDeadLetters(ctx, q, g, opts)
	if err != nil {
		return nil, err
	}
	return &dmsv1.ReceiveDeadLettersResponse{Messages: msgs}, nil
}

// ListDeadLetters implements dms.v1.ConsumerService.
func (h *Handler) ListDeadLetters(ctx context.Context, req *dmsv1.ListDeadLettersRequest) (*dmsv1.ListDeadLettersResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = 100
	case limit < 0 || limit > 1000:
		return nil, errs.Wrapf(errs.ErrMaxMessagesInvalid, "limit must be 1 to 1000, got %d", limit)
	}
	f, err := message.NewFilter(req.GetMessageIds(), req.GetTagFilter(), req.GetAttributes(), req.GetStartTime(), req.GetEndTime())
	if err != nil {
		return nil, err
	}
	switch req.GetFailureReason() {
	case "", failureByConsumer, failureTimeout, failureRedeliver:
	default:
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "failure_reason %q is not one of %s, %s and %s", req.GetFailureReason(), failureByConsumer, failureTimeout, failureRedeliver)
	}
	from := int64(0)
	if tok := req.GetPageToken(); tok != "" {
		next, err := message.ParsePageToken(tok, []int32{0})
		if err != nil {
			return nil, err
		}
		from = next[0]
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	list, err := h.engine.ListDeadLetters(ctx, q, g, f, req.GetFailureReason(), from, limit)
	if err != nil {
		return nil, err
	}
	resp := &dmsv1.ListDeadLettersResponse{Messages: list.Messages}
	if list.Next >= 0 {
		resp.NextPageToken = message.PageToken(map[int32]int64{0: list.Next}, []int32{0})
	}
	return resp, nil
}

// AckDeadLetters implements dms.v1.ConsumerService.
func (h *Handler) AckDeadLetters(ctx context.Context, req *dmsv1.AckDeadLettersRequest) (*dmsv1.AckDeadLettersResponse, error) {
	results, err := h.ack(ctx, req.GetGroup(), req.GetAcks(), req.GetStopAtFirstFailure(), h.engine.AckDeadLetters)
	if err != nil {
		return nil, err
	}
	return &dmsv1.AckDeadLettersResponse{Results: results}, nil
}

// RedriveDeadLetters implements dms.v1.ConsumerService.
func (h *Handler) RedriveDeadLetters(ctx context.Context, req *dmsv1.RedriveDeadLettersRequest) (*dmsv1.RedriveDeadLettersResponse, error) {
	if req.GetMaxPerSecond() < 0 || req.GetLimit() < 0 {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "max_per_second and limit must be 0 (the default, 1000) or more, got %d and %d",
			req.GetMaxPerSecond(), req.GetLimit())
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	results, err := h.engine.Redrive(ctx, q, g, RedriveOptions{
		MessageIDs: req.GetMessageIds(), Filter: req.GetTagFilter(),
		MaxPerSecond: int(req.GetMaxPerSecond()), Limit: int(req.GetLimit()),
	})
	if err != nil {
		return nil, err
	}
	return &dmsv1.RedriveDeadLettersResponse{Results: results}, nil
}

// SeekConsumerGroup implements dms.v1.ConsumerService.
func (h *Handler) SeekConsumerGroup(ctx context.Context, req *dmsv1.SeekConsumerGroupRequest) (*dmsv1.SeekConsumerGroupResponse, error) {
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	var target SeekTarget
	switch t := req.GetTarget().(type) {
	case *dmsv1.SeekConsumerGroupRequest_Time:
		at := t.Time.AsTime()
		target.Time = &at
	case *dmsv1.SeekConsumerGroupRequest_Offsets:
		target.Offsets = map[int32]int64{}
		for _, po := range t.Offsets.GetOffsets() {
			target.Offsets[po.GetPartition()] = po.GetOffset()
		}
	case *dmsv1.SeekConsumerGroupRequest_Position:
		target.Position = t.Position
	}
	positions, err := h.engine.Seek(ctx, q, g, target)
	if err != nil {
		return nil, err
	}
	return &dmsv1.SeekConsumerGroupResponse{Positions: positions}, nil
}

// GetGroupStats implements dms.cluster.delivery.v1.DeliveryService.
func (h *Handler) GetGroupStats(ctx context.Context, req *deliveryv1.GetGroupStatsRequest) (*deliveryv1.GetGroupStatsResponse, error) {
	q, err := h.cache.QueueByID(ctx, req.GetQueueId())
	if err != nil {
		return nil, err
	}
	out := &deliveryv1.GetGroupStatsResponse{}
	for _, id := range req.GetGroupIds() {
		g, err := h.cache.ResolveGroup(ctx, q, id)
		if err != nil {
			return nil, err
		}
		s, filter, err := h.engine.Stats(ctx, q, g)
		if err != nil {
			return nil, err
		}
		if filter == nil {
			filter = &dmsv1.TagFilter{}
		}
		out.Stats = append(out.Stats, s)
		out.TagFilters = append(out.TagFilters, filter)
	}
	return out, nil
}

// Subscribe implements dms.v1.ConsumerService over a Session: the first
// request opens it, a loop sends what Next returns, and a reader turns the
// client's credits into grants and its acks and ack ranges into settles.
// When the client closes its side, the reader ends and cancels the loop,
// and the stream ends cleanly. Unsettled deliveries stay in flight until
// their visibility timeout, as the SDK documents.
func (h *Handler) Subscribe(stream dmsv1.ConsumerService_SubscribeServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return errs.Wrapf(errs.ErrRequestInvalid, "the first message of a subscription must carry start")
	}
	opts, err := receiveOptions(0, nil, start.GetVisibilityTimeout())
	if err != nil {
		return err
	}
	if start.GetCredits() < 0 || first.GetCredits() < 0 {
		return errs.Wrapf(errs.ErrRequestInvalid, "credits must be 0 or more, got %d", min(start.GetCredits(), first.GetCredits()))
	}
	q, g, err := h.cache.ResolveGroupName(ctx, start.GetGroup())
	if err != nil {
		return err
	}
	session, err := h.engine.OpenSession(ctx, q, g, SessionOptions{
		Visibility: opts.Visibility,
		Filter:     start.GetTagFilter(),
		Credits:    int(start.GetCredits()) + int(first.GetCredits()),
		Consumer:   h.consumer(ctx, start.GetConsumerId()),
	})
	if err != nil {
		return err
	}
	defer session.Close(context.WithoutCancel(ctx)) // KeepInFlight: writes nothing
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sendMu sync.Mutex // the loop sends messages, the reader ack results
	send := func(resp *dmsv1.SubscribeResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(resp)
	}
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- readSubscription(stream, session, send)
		cancel()
	}()
	for {
		msgs, err := session.Next(ctx)
		if err != nil {
			if ctx.Err() != nil && stream.Context().Err() == nil {
				return <-readerDone
			}
			return err
		}
		if err := send(&dmsv1.SubscribeResponse{Messages: msgs}); err != nil {
			return err
		}
	}
}

// readSubscription applies the client's credits and acks until the client
// closes its side. The results of one request's acks go back in one
// response, one per handle and then one per range.
func readSubscription(stream dmsv1.ConsumerService_SubscribeServer, session *Session, send func(*dmsv1.SubscribeResponse) error) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetCredits() > 0 {
			session.Grant(int(req.GetCredits()))
		}
		if len(req.GetAcks()) == 0 && len(req.GetAckRanges()) == 0 {
			continue
		}
		ranges := make([]SettleRange, len(req.GetAckRanges()))
		for i, r := range req.GetAckRanges() {
			ranges[i] = SettleRange{Partition: r.GetPartition(), First: r.GetFirst(), Last: r.GetLast(), Status: dmsv1.AckStatus_ACK_STATUS_SUCCESS}
		}
		handleResults, rangeResults, err := session.Settle(stream.Context(), ackRequestsOf(req.GetAcks()), ranges)
		if err != nil {
			return err
		}
		if err := send(&dmsv1.SubscribeResponse{AckResults: append(handleResults, rangeResults...)}); err != nil {
			return err
		}
	}
}

func ackRequestsOf(acks []*dmsv1.Ack) []AckRequest {
	out := make([]AckRequest, len(acks))
	for i, a := range acks {
		out[i] = AckRequest{Handle: a.GetReceiptHandle(), Status: a.GetStatus()}
	}
	return out
}
