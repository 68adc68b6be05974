package dmsv1compat

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// A reason added to the proto must be given a DMS code here, or DMS clients
// would see it as an internal error.
func TestEveryErrorReasonIsMapped(t *testing.T) {
	for value, name := range dmsv1.ErrorReason_name {
		if dmsv1.ErrorReason(value) == dmsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		_, ok := dmsErrors[dmsv1.ErrorReason(value)]
		require.True(t, ok, "%s has no entry in dmsErrors", name)
	}
}

func TestFromGRPC(t *testing.T) {
	withReason := func(code codes.Code, reason string) error {
		st, err := status.New(code, "queue q does not exist").WithDetails(
			&errdetails.ErrorInfo{Reason: reason, Domain: "dms.opendms.io"})
		require.NoError(t, err)
		return st.Err()
	}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   int
		wantReason string
	}{
		{"reason from ErrorInfo", withReason(codes.NotFound, "QUEUE_NOT_FOUND"), http.StatusNotFound, 10240401, "QUEUE_NOT_FOUND"},
		{"unknown reason", withReason(codes.Internal, "SOMETHING_NEW"), http.StatusInternalServerError, 10250002, "INTERNAL"},
		{"no ErrorInfo, unavailable", status.Error(codes.Unavailable, "connection refused"), http.StatusServiceUnavailable, 10250002, "UNAVAILABLE"},
		{"not a gRPC error", http.ErrAbortHandler, http.StatusInternalServerError, 10250002, "INTERNAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromGRPC(tt.err)
			require.Equal(t, tt.wantStatus, got.httpStatus)
			require.Equal(t, tt.wantCode, got.code)
			require.Equal(t, tt.wantReason, reasonName(got.reason))
			require.NotEmpty(t, got.message)
		})
	}
}
