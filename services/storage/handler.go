package storage

import (
	"context"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// defaultReadBytes bounds a read when the request names no budget.
const defaultReadBytes = 1 << 20

// Handler serves the StorageService over the engine.
type Handler struct {
	storagev1.UnimplementedStorageServiceServer
	engine *Engine
}

var _ storagev1.StorageServiceServer = (*Handler)(nil)

// NewHandler returns the gRPC handler of the storage role.
func NewHandler(engine *Engine) *Handler { return &Handler{engine: engine} }

// Append implements dms.cluster.storage.v1.StorageService.
func (h *Handler) Append(ctx context.Context, req *storagev1.AppendRequest) (*storagev1.AppendResponse, error) {
	return h.engine.Append(ctx, req)
}

// Read implements dms.cluster.storage.v1.StorageService.
func (h *Handler) Read(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	maxBytes := int(req.GetMaxBytes())
	if maxBytes <= 0 {
		maxBytes = defaultReadBytes
	}
	res, err := h.engine.Read(ctx, req.GetLog(), req.GetOffset(), ReadOptions{
		MaxBytes: maxBytes, MaxWait: req.GetMaxWait().AsDuration(), RawBatches: req.GetRawBatches(),
		LeaderEpoch: req.GetLeaderEpoch(), WriterEpoch: req.GetWriterEpoch(),
	})
	if err != nil {
		return nil, err
	}
	return &storagev1.ReadResponse{Records: res.Records, Batches: res.Batches, StartOffset: res.StartOffset, NextOffset: res.NextOffset, Lost: res.Lost}, nil
}

// GetLogInfo implements dms.cluster.storage.v1.StorageService.
func (h *Handler) GetLogInfo(ctx context.Context, req *storagev1.GetLogInfoRequest) (*storagev1.GetLogInfoResponse, error) {
	out := &storagev1.GetLogInfoResponse{}
	for _, name := range req.GetLogs() {
		info, err := h.engine.Info(ctx, name)
		if err != nil {
			return nil, err
		}
		out.Logs = append(out.Logs, info)
	}
	return out, nil
}

// DeleteLogs implements dms.cluster.storage.v1.StorageService.
func (h *Handler) DeleteLogs(ctx context.Context, req *storagev1.DeleteLogsRequest) (*storagev1.DeleteLogsResponse, error) {
	for _, id := range req.GetLogs() {
		if err := logid.Validate(id); err != nil {
			return nil, err
		}
		if !logid.IsInternal(id) {
			return nil, errs.Wrapf(errs.ErrResourceNameInvalid, "storage: %s is a queue partition; it is deleted with its queue", logid.Describe(id))
		}
		if err := h.engine.checkWriter(ctx, id, req.GetWriterEpoch()); err != nil {
			return nil, err
		}
		if err := h.engine.DeleteLog(id); err != nil {
			return nil, err
		}
	}
	return &storagev1.DeleteLogsResponse{}, nil
}

// FindOffset implements dms.cluster.storage.v1.StorageService.
func (h *Handler) FindOffset(ctx context.Context, req *storagev1.FindOffsetRequest) (*storagev1.FindOffsetResponse, error) {
	offset, err := h.engine.FindOffset(ctx, req.GetLog(), req.GetTimestampMs())
	if err != nil {
		return nil, err
	}
	return &storagev1.FindOffsetResponse{Offset: offset}, nil
}

// Fetch implements dms.cluster.storage.v1.StorageService.
func (h *Handler) Fetch(ctx context.Context, req *storagev1.FetchRequest) (*storagev1.FetchResponse, error) {
	return h.engine.Fetch(ctx, req)
}

// OffsetForLeaderEpoch implements dms.cluster.storage.v1.StorageService.
func (h *Handler) OffsetForLeaderEpoch(ctx context.Context, req *storagev1.OffsetForLeaderEpochRequest) (*storagev1.OffsetForLeaderEpochResponse, error) {
	return h.engine.OffsetForLeaderEpoch(ctx, req)
}

// TrimLog implements dms.cluster.storage.v1.StorageService.
func (h *Handler) TrimLog(ctx context.Context, req *storagev1.TrimLogRequest) (*storagev1.TrimLogResponse, error) {
	start, err := h.engine.TrimLog(ctx, req.GetLog(), req.GetBeforeOffset(), req.GetWriterEpoch())
	if err != nil {
		return nil, err
	}
	return &storagev1.TrimLogResponse{StartOffset: start}, nil
}
