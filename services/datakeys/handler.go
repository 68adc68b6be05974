package datakeys

import (
	"context"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

// Handler serves dms.v1.DataKeyService: it only translates.
type Handler struct {
	dmsv1.UnimplementedDataKeyServiceServer
	m *Manager
}

// NewHandler returns the handler of m.
func NewHandler(m *Manager) *Handler { return &Handler{m: m} }

// ListDataKeys implements dmsv1.DataKeyServiceServer.
func (h *Handler) ListDataKeys(ctx context.Context, req *dmsv1.ListDataKeysRequest) (*dmsv1.ListDataKeysResponse, error) {
	if err := catalog.ValidateProject(req.GetProjectId()); err != nil {
		return nil, err
	}
	rec, err := h.m.Record(ctx, req.GetProjectId())
	if err != nil {
		return nil, err
	}
	resp := &dmsv1.ListDataKeysResponse{EncryptionEnabled: h.m.Enabled()}
	all := append(append([]*storagev1.WrappedDataKey(nil), rec.GetDestroyed()...), rec.GetKeys()...)
	for i, k := range all {
		state := dmsv1.DataKeyState_DATA_KEY_STATE_RETIRED
		switch {
		case i < len(rec.GetDestroyed()):
			state = dmsv1.DataKeyState_DATA_KEY_STATE_DESTROYED
		case i == len(all)-1:
			state = dmsv1.DataKeyState_DATA_KEY_STATE_ACTIVE
		}
		resp.Keys = append(resp.Keys, publicKey(k, state))
	}
	return resp, nil
}

// RotateDataKey implements dmsv1.DataKeyServiceServer.
func (h *Handler) RotateDataKey(ctx context.Context, req *dmsv1.RotateDataKeyRequest) (*dmsv1.RotateDataKeyResponse, error) {
	if err := catalog.ValidateProject(req.GetProjectId()); err != nil {
		return nil, err
	}
	k, err := h.m.Rotate(ctx, req.GetProjectId())
	if err != nil {
		return nil, err
	}
	return &dmsv1.RotateDataKeyResponse{Key: publicKey(k, dmsv1.DataKeyState_DATA_KEY_STATE_ACTIVE)}, nil
}

// DestroyDataKeys implements dmsv1.DataKeyServiceServer.
func (h *Handler) DestroyDataKeys(ctx context.Context, req *dmsv1.DestroyDataKeysRequest) (*dmsv1.DestroyDataKeysResponse, error) {
	if err := catalog.ValidateProject(req.GetProjectId()); err != nil {
		return nil, err
	}
	keys, err := h.m.Destroy(ctx, req.GetProjectId())
	resp := &dmsv1.DestroyDataKeysResponse{}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, publicKey(k, dmsv1.DataKeyState_DATA_KEY_STATE_DESTROYED))
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func publicKey(k *storagev1.WrappedDataKey, state dmsv1.DataKeyState) *dmsv1.DataKey {
	return &dmsv1.DataKey{Id: k.GetId(), State: state, CreateTime: k.GetCreateTime(), DestroyTime: k.GetDestroyTime(), KeyProvider: k.GetProvider(), KekId: k.GetKekId()}
}
