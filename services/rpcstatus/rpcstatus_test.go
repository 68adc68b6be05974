package rpcstatus_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// Every domain reason must be a value of the public ErrorReason enum, or
// clients could not rely on it.
func TestEveryReasonIsInTheProtoEnum(t *testing.T) {
	for _, e := range errs.All() {
		_, ok := dmsv1.ErrorReason_value["ERROR_REASON_"+e.Reason]
		require.Truef(t, ok, "reason %s is missing from dms.v1.ErrorReason", e.Reason)
	}
}

func TestStatusCarriesCodeReasonAndMessage(t *testing.T) {
	tests := []struct {
		err    error
		code   codes.Code
		reason string
		msg    string
	}{
		{errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found", "q1"), codes.NotFound, "QUEUE_NOT_FOUND", `queue "q1" not found`},
		{fmt.Errorf("outer: %w", errs.ErrGroupQuotaExceeded), codes.ResourceExhausted, "GROUP_QUOTA_EXCEEDED", "outer: consumer group quota exceeded"},
		{fmt.Errorf("disk on fire"), codes.Internal, "INTERNAL", "internal error: disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			err := rpcstatus.Error(tt.err)
			s, _ := status.FromError(err)
			require.Equal(t, tt.code, s.Code())
			require.Equal(t, tt.msg, s.Message())
			require.Equal(t, tt.reason, rpcstatus.Reason(err))
			// A status passes through another hop unchanged.
			require.Equal(t, err, rpcstatus.Error(err))
		})
	}
}
