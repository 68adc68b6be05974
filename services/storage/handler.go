package storage

import (
	"context"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
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
	res, err := h.engine.Read(ctx, req.GetLog(), req.GetOffset(), maxBytes, req.GetMaxWait().AsDuration())
	if err != nil {
		return nil, err
	}
	return &storagev1.ReadResponse{Records: res.Records, StartOffset: res.StartOffset, NextOffset: res.NextOffset}, nil
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
func (h *Handler) DeleteLogs(_ context.Context, req *storagev1.DeleteLogsRequest) (*storagev1.DeleteLogsResponse, error) {
	for _, name := range req.GetLogs() {
		if err := h.engine.DeleteLog(name); err != nil {
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

// TrimLog implements dms.cluster.storage.v1.StorageService.
func (h *Handler) TrimLog(ctx context.Context, req *storagev1.TrimLogRequest) (*storagev1.TrimLogResponse, error) {
	start, err := h.engine.TrimLog(ctx, req.GetLog(), req.GetBeforeOffset())
	if err != nil {
		return nil, err
	}
	return &storagev1.TrimLogResponse{StartOffset: start}, nil
}
