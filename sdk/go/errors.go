package dms

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every DMS error.
const ErrorDomain = "dms.opendms.io"

// Reason is the stable, machine-readable reason of a DMS error: the name of a
// dms.v1.ErrorReason value without its ERROR_REASON_ prefix. Programs should
// branch on reasons (or on codes), never on messages. A newer server may send
// reasons this package has no constant for; they arrive unchanged.
type Reason string

// The reasons a DMS server sends, as listed in proto/dms/v1/error_reason.proto.
const (
	ReasonInternal                 Reason = "INTERNAL"
	ReasonResourceNameInvalid      Reason = "RESOURCE_NAME_INVALID"
	ReasonProjectInvalid           Reason = "PROJECT_INVALID"
	ReasonQueueNotFound            Reason = "QUEUE_NOT_FOUND"
	ReasonGroupNotFound            Reason = "GROUP_NOT_FOUND"
	ReasonQueueAlreadyExists       Reason = "QUEUE_ALREADY_EXISTS"
	ReasonGroupAlreadyExists       Reason = "GROUP_ALREADY_EXISTS"
	ReasonQueueQuotaExceeded       Reason = "QUEUE_QUOTA_EXCEEDED"
	ReasonGroupQuotaExceeded       Reason = "GROUP_QUOTA_EXCEEDED"
	ReasonQueueNameInvalid         Reason = "QUEUE_NAME_INVALID"
	ReasonQueueNameLengthInvalid   Reason = "QUEUE_NAME_LENGTH_INVALID"
	ReasonGroupNameInvalid         Reason = "GROUP_NAME_INVALID"
	ReasonGroupNameLengthInvalid   Reason = "GROUP_NAME_LENGTH_INVALID"
	ReasonDescriptionInvalid       Reason = "DESCRIPTION_INVALID"
	ReasonDescriptionTooLong       Reason = "DESCRIPTION_TOO_LONG"
	ReasonQueueModeInvalid         Reason = "QUEUE_MODE_INVALID"
	ReasonPartitionCountInvalid    Reason = "PARTITION_COUNT_INVALID"
	ReasonRetentionInvalid         Reason = "RETENTION_INVALID"
	ReasonMaxConsumeCountInvalid   Reason = "MAX_CONSUME_COUNT_INVALID"
	ReasonMessageTooLarge          Reason = "MESSAGE_TOO_LARGE"
	ReasonBatchTooLarge            Reason = "BATCH_TOO_LARGE"
	ReasonBatchEmpty               Reason = "BATCH_EMPTY"
	ReasonTagInvalid               Reason = "TAG_INVALID"
	ReasonAttributeInvalid         Reason = "ATTRIBUTE_INVALID"
	ReasonMaxMessagesInvalid       Reason = "MAX_MESSAGES_INVALID"
	ReasonWaitTimeInvalid          Reason = "WAIT_TIME_INVALID"
	ReasonVisibilityTimeoutInvalid Reason = "VISIBILITY_TIMEOUT_INVALID"
	ReasonReceiptHandleInvalid     Reason = "RECEIPT_HANDLE_INVALID"
	ReasonReceiptHandleMismatch    Reason = "RECEIPT_HANDLE_MISMATCH"
	ReasonReceiptHandleExpired     Reason = "RECEIPT_HANDLE_EXPIRED"
	ReasonAckStatusInvalid         Reason = "ACK_STATUS_INVALID"
	ReasonPageTokenInvalid         Reason = "PAGE_TOKEN_INVALID"
	ReasonStorageFull              Reason = "STORAGE_FULL"
	ReasonUnavailable              Reason = "UNAVAILABLE"
	ReasonNotImplemented           Reason = "NOT_IMPLEMENTED"
	ReasonRequestInvalid           Reason = "REQUEST_INVALID"
	// ReasonTagFilterConflict: the tag filter differs from the one the
	// consumer group keeps, or is malformed.
	ReasonTagFilterConflict Reason = "TAG_FILTER_CONFLICT"
	// ReasonReceiptHandleKindMismatch: a dead-letter receipt handle was
	// used to settle a message, or a message's handle to settle a dead
	// letter.
	ReasonReceiptHandleKindMismatch Reason = "RECEIPT_HANDLE_KIND_MISMATCH"
	// ReasonDeadLettersDisabled: the queue does not keep dead letters.
	ReasonDeadLettersDisabled Reason = "DEAD_LETTERS_DISABLED"
	// ReasonMessageExpired: the message is no longer retained (for
	// example, a dead letter whose original message passed the queue's
	// retention cannot be redriven).
	ReasonMessageExpired Reason = "MESSAGE_EXPIRED"
	// ReasonSeekTargetInvalid: the seek target is malformed or names a
	// partition the queue lacks.
	ReasonSeekTargetInvalid Reason = "SEEK_TARGET_INVALID"
	// ReasonConsumerIDRequired: broadcast consumption needs a consumer id.
	ReasonConsumerIDRequired Reason = "CONSUMER_ID_REQUIRED"
	// ReasonDelayInvalid: a delay or deliver time is out of range (0 to 7
	// days ahead), or both are set.
	ReasonDelayInvalid Reason = "DELAY_INVALID"
	// ReasonDelayNotAllowed: the queue's mode takes no scheduled messages
	// (only normal and FIFO queues do).
	ReasonDelayNotAllowed Reason = "DELAY_NOT_ALLOWED"
	// ReasonScheduleIDInvalid: a schedule id is malformed.
	ReasonScheduleIDInvalid Reason = "SCHEDULE_ID_INVALID"
	// ReasonScheduleNotFound: no scheduled message of the queue has the
	// schedule id: it was cancelled or rescheduled, or never existed.
	ReasonScheduleNotFound Reason = "SCHEDULE_NOT_FOUND"
	// ReasonScheduleAlreadyReleased: the scheduled message was released to
	// consumers already (or is being released).
	ReasonScheduleAlreadyReleased Reason = "SCHEDULE_ALREADY_RELEASED"
	// ReasonNotEnoughReplicas: too few in-sync replicas of the partition are
	// alive to store the message durably; nothing was stored. Retryable.
	ReasonNotEnoughReplicas Reason = "NOT_ENOUGH_REPLICAS"
	// ReasonNotLeader: the node asked no longer leads the partition or owns
	// the consumer group; nothing was applied. Retryable.
	ReasonNotLeader Reason = "NOT_LEADER"
	// ReasonFenced: the request came through a replaced leader or owner and
	// was refused.
	ReasonFenced Reason = "FENCED"
	// ReasonReplicationInvalid: the replication factor cannot be satisfied
	// by the cluster's nodes.
	ReasonReplicationInvalid Reason = "REPLICATION_INVALID"
	// ReasonOutOfOrderSequence: an idempotent producer's batch does not
	// follow its last one (Kafka producers).
	ReasonOutOfOrderSequence Reason = "OUT_OF_ORDER_SEQUENCE"
	// ReasonProducerFenced: the producer's epoch was replaced (Kafka
	// producers).
	ReasonProducerFenced Reason = "PRODUCER_FENCED"
	// ReasonMethodNotAllowed: the REST URL exists but not with the HTTP
	// method used.
	ReasonMethodNotAllowed Reason = "METHOD_NOT_ALLOWED"
	// ReasonPageSizeInvalid: a page size is negative.
	ReasonPageSizeInvalid Reason = "PAGE_SIZE_INVALID"
	// ReasonBroadcastStartInvalid: a broadcast start is not one of the
	// known values.
	ReasonBroadcastStartInvalid Reason = "BROADCAST_START_INVALID"
	// ReasonTagFilterInvalid: a tag filter's match is not one of the known
	// values.
	ReasonTagFilterInvalid Reason = "TAG_FILTER_INVALID"
	// ReasonUnauthenticated: the server has authentication on and the call
	// carried no credential (see WithToken).
	ReasonUnauthenticated Reason = "UNAUTHENTICATED"
	// ReasonCredentialInvalid: the token is unknown, malformed or revoked.
	ReasonCredentialInvalid Reason = "CREDENTIAL_INVALID"
	// ReasonCredentialExpired: the token expired; get a new one.
	ReasonCredentialExpired Reason = "CREDENTIAL_EXPIRED"
	// ReasonPermissionDenied: no role or policy allows the call.
	ReasonPermissionDenied Reason = "PERMISSION_DENIED"
	// ReasonProjectScopeMismatch: the token is scoped to another project.
	ReasonProjectScopeMismatch Reason = "PROJECT_SCOPE_MISMATCH"
	// ReasonIdentityNotFound: no account, project, user or key has the id.
	ReasonIdentityNotFound Reason = "IDENTITY_NOT_FOUND"
	// ReasonIdentityAlreadyExists: the account, project or user exists.
	ReasonIdentityAlreadyExists Reason = "IDENTITY_ALREADY_EXISTS"
	// ReasonIdentityInvalid: a malformed identity request.
	ReasonIdentityInvalid Reason = "IDENTITY_INVALID"
	// ReasonEncryptionNotConfigured: encryption at rest is off, so there
	// are no data keys to manage.
	ReasonEncryptionNotConfigured Reason = "ENCRYPTION_NOT_CONFIGURED"
	// ReasonDataKeysInUse: a project's data keys cannot be destroyed while
	// it still has queues.
	ReasonDataKeysInUse Reason = "DATA_KEYS_IN_USE"
	// ReasonProjectNotEmpty: a project cannot be deleted while it still
	// has queues; delete them first.
	ReasonProjectNotEmpty Reason = "PROJECT_NOT_EMPTY"
	// ReasonMessageNotFound: no message of the queue has the id.
	ReasonMessageNotFound Reason = "MESSAGE_NOT_FOUND"
	// ReasonRateLimited: the project sends faster than its quota allows;
	// nothing was stored, send again later.
	ReasonRateLimited Reason = "RATE_LIMITED"
	// ReasonStorageQuotaExceeded: the project's queues hold as many bytes
	// as its quota allows; nothing was stored.
	ReasonStorageQuotaExceeded Reason = "STORAGE_QUOTA_EXCEEDED"
	// ReasonLabelInvalid: a queue label key or value is malformed.
	ReasonLabelInvalid Reason = "LABEL_INVALID"
	// ReasonLabelLimitExceeded: the queue would have more labels than allowed.
	ReasonLabelLimitExceeded Reason = "LABEL_LIMIT_EXCEEDED"
	// ReasonLabelNotFound: the queue has no label with the key.
	ReasonLabelNotFound Reason = "LABEL_NOT_FOUND"
)

// Error is a failed call to DMS: the gRPC code, the stable reason the server
// attached (empty when it attached none, for example when the server could
// not be reached) and the server's message. Every method of this package that
// calls the server returns its failures as *Error; use errors.As to get one,
// or the helpers ReasonOf, IsNotFound, IsAlreadyExists and IsRetryable.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the stable reason from the google.rpc.ErrorInfo detail of
	// domain ErrorDomain.
	Reason Reason
	// Message says what went wrong, for people.
	Message string
	// Metadata is the ErrorInfo metadata, if the server sent any.
	Metadata map[string]string

	// cause is the context error when the call ended because its context
	// did, so that errors.Is(err, context.Canceled) holds.
	cause error
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("dms: %s (%s): %s", e.Reason, e.Code, e.Message)
	}
	return fmt.Sprintf("dms: %s: %s", e.Code, e.Message)
}

// Unwrap returns the context error when the call ended because its context
// was canceled or timed out.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus returns the error as a gRPC status, so that status.FromError and
// status.Code work on it; the reason travels as an ErrorInfo detail.
func (e *Error) GRPCStatus() *status.Status {
	s := status.New(e.Code, e.Message)
	if e.Reason == "" {
		return s
	}
	if withInfo, err := s.WithDetails(&errdetails.ErrorInfo{Reason: string(e.Reason), Domain: ErrorDomain, Metadata: e.Metadata}); err == nil {
		return withInfo
	}
	return s
}

// fromRPC converts the error of a gRPC call into an *Error. ctx is the call's
// context: when it is done the context error becomes the cause.
func fromRPC(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: s.Code(), Message: s.Message()}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			e.Reason = Reason(info.GetReason())
			e.Metadata = info.GetMetadata()
			break
		}
	}
	if (e.Code == codes.Canceled || e.Code == codes.DeadlineExceeded) && ctx.Err() != nil {
		e.cause = ctx.Err()
	}
	return e
}

// ReasonOf returns the stable reason of err, or "" when err is not an *Error
// or carries no reason.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// CodeOf returns the gRPC code of err: OK for nil, Unknown when err is not
// from DMS.
func CodeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

// IsNotFound reports whether err says that a queue, group or message does not
// exist.
func IsNotFound(err error) bool { return CodeOf(err) == codes.NotFound }

// IsAlreadyExists reports whether err says that a queue or group of that name
// exists already.
func IsAlreadyExists(err error) bool { return CodeOf(err) == codes.AlreadyExists }

// IsRetryable reports whether a call that failed with err may succeed when
// repeated unchanged: the server was unreachable (Unavailable), the call
// timed out (DeadlineExceeded) or the project sent faster than its quota
// (RATE_LIMITED: nothing was stored). A call ended by its own context is not
// retryable. Repeating a send that timed out can store its messages twice.
func IsRetryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.cause != nil {
		return false
	}
	return e.Code == codes.Unavailable || e.Code == codes.DeadlineExceeded || e.Reason == ReasonRateLimited
}
