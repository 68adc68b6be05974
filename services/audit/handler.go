package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/opendms/dms/gen/go/dms/cluster/audit/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// Handler serves dms.v1.AuditService, which any node serves (it reads
// the trail from storage), and dms.cluster.audit.v1.AuditWriterService.
type Handler struct {
	dmsv1.UnimplementedAuditServiceServer
	auditv1.UnimplementedAuditWriterServiceServer
	t *Trail
}

// AppendRecords implements auditv1.AuditWriterServiceServer.
func (h *Handler) AppendRecords(_ context.Context, req *auditv1.AppendRecordsRequest) (*auditv1.AppendRecordsResponse, error) {
	if err := h.t.Accept(req.GetRecords()); err != nil {
		return nil, err
	}
	return &auditv1.AppendRecordsResponse{}, nil
}

// NewHandler returns the handler of a trail.
func NewHandler(t *Trail) *Handler { return &Handler{t: t} }

// Page sizes of ListAuditRecords.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// ListAuditRecords implements dmsv1.AuditServiceServer.
func (h *Handler) ListAuditRecords(ctx context.Context, req *dmsv1.ListAuditRecordsRequest) (*dmsv1.ListAuditRecordsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, errs.Wrapf(errs.ErrPageSizeInvalid, "page_size must not be negative, got %d", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	var from int64
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.ParseInt(tok, 10, 64)
		if err != nil || n < 0 {
			return nil, errs.Wrapf(errs.ErrPageTokenInvalid, "page_token %q is not one ListAuditRecords returned", tok)
		}
		from = n
	}
	if req.GetStartTime() != nil && req.GetEndTime() != nil && !req.GetStartTime().AsTime().Before(req.GetEndTime().AsTime()) {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "start_time must be before end_time")
	}
	if req.GetPageToken() == "" && req.GetStartTime() != nil {
		// Skip what is older by the log's time index: a batch's largest
		// timestamp bounds its records', so none at or after start_time
		// lies before the offset found.
		found, err := h.t.storage.FindOffset(ctx, &storagev1.FindOffsetRequest{Log: logid.Audit(), TimestampMs: req.GetStartTime().AsTime().UnixMilli()})
		if err != nil {
			return nil, err
		}
		from = found.GetOffset()
	}
	resp := &dmsv1.ListAuditRecordsResponse{}
	var decodeErr error
	err := scan(ctx, h.t.storage, from, 0, func(off int64, payload []byte) bool {
		if len(resp.Records) == size {
			resp.NextPageToken = strconv.FormatInt(off, 10)
			return false
		}
		r := &dmsv1.AuditRecord{}
		if err := proto.Unmarshal(payload, r); err != nil {
			decodeErr = errs.Wrapf(errs.ErrInternal, "audit: record %d cannot be decoded (VerifyAuditTrail reports it): %v", off, err)
			return false
		}
		r.Offset = off
		if matches(req, r) {
			resp.Records = append(resp.Records, r)
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func matches(req *dmsv1.ListAuditRecordsRequest, r *dmsv1.AuditRecord) bool {
	t := r.GetTime().AsTime()
	if req.GetStartTime() != nil && t.Before(req.GetStartTime().AsTime()) {
		return false
	}
	if req.GetEndTime() != nil && !t.Before(req.GetEndTime().AsTime()) {
		return false
	}
	if p := req.GetPrincipal(); p != "" && r.GetPrincipal() != p && !strings.HasPrefix(r.GetPrincipal(), p+"@") {
		return false
	}
	if res := strings.TrimSuffix(req.GetResource(), "/"); res != "" && r.GetResource() != res && !strings.HasPrefix(r.GetResource(), res+"/") {
		return false
	}
	if a := req.GetAction(); a != "" && r.GetAction() != a && !strings.HasSuffix(r.GetAction(), "/"+a) {
		return false
	}
	return true
}

// VerifyAuditTrail implements dmsv1.AuditServiceServer.
func (h *Handler) VerifyAuditTrail(ctx context.Context, _ *dmsv1.VerifyAuditTrailRequest) (*dmsv1.VerifyAuditTrailResponse, error) {
	return Verify(ctx, h.t)
}

// Verify walks the trail and reports its first broken link.
func Verify(ctx context.Context, t *Trail) (*dmsv1.VerifyAuditTrailResponse, error) {
	resp := &dmsv1.VerifyAuditTrailResponse{Intact: true, FirstBrokenOffset: -1, FirstOffset: -1}
	var prev []byte
	broken := func(off int64, why string) {
		resp.Intact, resp.FirstBrokenOffset, resp.BrokenReason = false, off, why
	}
	next := int64(0)
	err := scan(ctx, t.storage, 0, 0, func(off int64, payload []byte) bool {
		if resp.FirstOffset < 0 {
			resp.FirstOffset = off
		} else if off != next {
			broken(next, fmt.Sprintf("records %d to %d are missing", next, off-1))
			return false
		}
		next = off + 1
		resp.RecordsChecked++
		r := &dmsv1.AuditRecord{}
		if err := proto.Unmarshal(payload, r); err != nil {
			broken(off, "the record cannot be decoded: "+err.Error())
			return false
		}
		switch {
		case off == resp.GetFirstOffset() && off == 0 && len(r.GetPreviousHash()) != 0:
			broken(off, "the first record of the trail names a previous one")
			return false
		case off != resp.GetFirstOffset() && !bytes.Equal(r.GetPreviousHash(), prev):
			broken(off, fmt.Sprintf("previous_hash %s is not the hash %s of record %d", hex.EncodeToString(r.GetPreviousHash()), hex.EncodeToString(prev), off-1))
			return false
		}
		h := sha256.Sum256(payload)
		prev = h[:]
		return true
	})
	if l, ok := err.(errLost); ok {
		broken(l.first, l.Error())
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if resp.GetIntact() {
		resp.HeadHash = prev
	}
	return resp, nil
}
