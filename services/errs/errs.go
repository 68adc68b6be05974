// Package errs holds the domain errors of DMS: sentinels that carry a kind
// (what sort of failure, which the edges map to gRPC, HTTP and DMS codes) and
// a stable machine-readable reason (the name of a dms.v1.ErrorReason value
// without its prefix). Domain packages return them wrapped with detail via
// Wrapf; they never import gRPC.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error the way a caller reacts to it.
type Kind int

// The kinds, mirroring the gRPC codes that rpcstatus maps them to.
const (
	KindInternal Kind = iota
	KindInvalidArgument
	KindNotFound
	KindAlreadyExists
	KindResourceExhausted
	KindFailedPrecondition
	KindUnavailable
	KindUnimplemented
	KindUnauthenticated
	KindPermissionDenied
)

// Error is a domain error sentinel.
type Error struct {
	Kind    Kind
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func newError(kind Kind, reason, message string) *Error {
	e := &Error{Kind: kind, Reason: reason, Message: message}
	all = append(all, e)
	return e
}

// all lists every sentinel so that a test can check each reason against the
// dms.v1.ErrorReason enum.
var all []*Error

// All returns every sentinel error.
func All() []*Error { return append([]*Error(nil), all...) }

// The sentinels.
var (
	ErrInternal                 = newError(KindInternal, "INTERNAL", "internal error")
	ErrResourceNameInvalid      = newError(KindInvalidArgument, "RESOURCE_NAME_INVALID", "malformed resource name")
	ErrProjectInvalid           = newError(KindInvalidArgument, "PROJECT_INVALID", "malformed project id")
	ErrQueueNotFound            = newError(KindNotFound, "QUEUE_NOT_FOUND", "queue not found")
	ErrGroupNotFound            = newError(KindNotFound, "GROUP_NOT_FOUND", "consumer group not found")
	ErrQueueAlreadyExists       = newError(KindAlreadyExists, "QUEUE_ALREADY_EXISTS", "queue already exists")
	ErrGroupAlreadyExists       = newError(KindAlreadyExists, "GROUP_ALREADY_EXISTS", "consumer group already exists")
	ErrQueueQuotaExceeded       = newError(KindResourceExhausted, "QUEUE_QUOTA_EXCEEDED", "queue quota exceeded")
	ErrGroupQuotaExceeded       = newError(KindResourceExhausted, "GROUP_QUOTA_EXCEEDED", "consumer group quota exceeded")
	ErrQueueNameInvalid         = newError(KindInvalidArgument, "QUEUE_NAME_INVALID", "invalid queue name")
	ErrQueueNameLengthInvalid   = newError(KindInvalidArgument, "QUEUE_NAME_LENGTH_INVALID", "invalid queue name length")
	ErrGroupNameInvalid         = newError(KindInvalidArgument, "GROUP_NAME_INVALID", "invalid consumer group name")
	ErrGroupNameLengthInvalid   = newError(KindInvalidArgument, "GROUP_NAME_LENGTH_INVALID", "invalid consumer group name length")
	ErrDescriptionInvalid       = newError(KindInvalidArgument, "DESCRIPTION_INVALID", "invalid description")
	ErrDescriptionTooLong       = newError(KindInvalidArgument, "DESCRIPTION_TOO_LONG", "description too long")
	ErrQueueModeInvalid         = newError(KindInvalidArgument, "QUEUE_MODE_INVALID", "invalid queue mode")
	ErrPartitionCountInvalid    = newError(KindInvalidArgument, "PARTITION_COUNT_INVALID", "invalid partition count")
	ErrRetentionInvalid         = newError(KindInvalidArgument, "RETENTION_INVALID", "invalid retention")
	ErrMaxConsumeCountInvalid   = newError(KindInvalidArgument, "MAX_CONSUME_COUNT_INVALID", "invalid max_consume_count")
	ErrMessageTooLarge          = newError(KindInvalidArgument, "MESSAGE_TOO_LARGE", "message too large")
	ErrBatchTooLarge            = newError(KindInvalidArgument, "BATCH_TOO_LARGE", "batch too large")
	ErrBatchEmpty               = newError(KindInvalidArgument, "BATCH_EMPTY", "batch has no message")
	ErrTagInvalid               = newError(KindInvalidArgument, "TAG_INVALID", "invalid tag")
	ErrAttributeInvalid         = newError(KindInvalidArgument, "ATTRIBUTE_INVALID", "invalid attribute")
	ErrMaxMessagesInvalid       = newError(KindInvalidArgument, "MAX_MESSAGES_INVALID", "invalid max_messages")
	ErrWaitTimeInvalid          = newError(KindInvalidArgument, "WAIT_TIME_INVALID", "invalid wait_time")
	ErrVisibilityTimeoutInvalid = newError(KindInvalidArgument, "VISIBILITY_TIMEOUT_INVALID", "invalid visibility_timeout")
	ErrReceiptHandleInvalid     = newError(KindInvalidArgument, "RECEIPT_HANDLE_INVALID", "invalid receipt handle")
	ErrReceiptHandleMismatch    = newError(KindInvalidArgument, "RECEIPT_HANDLE_MISMATCH", "receipt handle belongs to another queue or group")
	ErrReceiptHandleExpired     = newError(KindFailedPrecondition, "RECEIPT_HANDLE_EXPIRED", "receipt handle expired")
	ErrAckStatusInvalid         = newError(KindInvalidArgument, "ACK_STATUS_INVALID", "invalid ack status")
	ErrPageTokenInvalid         = newError(KindInvalidArgument, "PAGE_TOKEN_INVALID", "invalid page token")
	ErrStorageFull              = newError(KindResourceExhausted, "STORAGE_FULL", "storage is full")
	ErrUnavailable              = newError(KindUnavailable, "UNAVAILABLE", "service unavailable")
	ErrNotImplemented           = newError(KindUnimplemented, "NOT_IMPLEMENTED", "not implemented")
	ErrRequestInvalid           = newError(KindInvalidArgument, "REQUEST_INVALID", "malformed request")
	ErrTagFilterConflict        = newError(KindFailedPrecondition, "TAG_FILTER_CONFLICT", "tag filter differs from the group's")
	ErrReceiptHandleKind        = newError(KindInvalidArgument, "RECEIPT_HANDLE_KIND_MISMATCH", "dead-letter handle used for a message or the reverse")
	ErrDeadLettersDisabled      = newError(KindFailedPrecondition, "DEAD_LETTERS_DISABLED", "dead letters are not enabled on the queue")
	ErrMessageExpired           = newError(KindNotFound, "MESSAGE_EXPIRED", "message no longer retained")
	ErrSeekTargetInvalid        = newError(KindInvalidArgument, "SEEK_TARGET_INVALID", "invalid seek target")
	ErrConsumerIDRequired       = newError(KindInvalidArgument, "CONSUMER_ID_REQUIRED", "consumer id required")
	ErrDelayInvalid             = newError(KindInvalidArgument, "DELAY_INVALID", "invalid delay or deliver time")
	ErrDelayNotAllowed          = newError(KindInvalidArgument, "DELAY_NOT_ALLOWED", "the queue mode does not allow delayed messages")
	ErrScheduleIDInvalid        = newError(KindInvalidArgument, "SCHEDULE_ID_INVALID", "invalid schedule id")
	ErrScheduleNotFound         = newError(KindNotFound, "SCHEDULE_NOT_FOUND", "no pending scheduled message with this id")
	ErrScheduleReleased         = newError(KindFailedPrecondition, "SCHEDULE_ALREADY_RELEASED", "scheduled message already released")
	ErrNotEnoughReplicas        = newError(KindUnavailable, "NOT_ENOUGH_REPLICAS", "not enough in-sync replicas")
	ErrNotLeader                = newError(KindUnavailable, "NOT_LEADER", "not the leader or owner")
	ErrFenced                   = newError(KindFailedPrecondition, "FENCED", "refused from a replaced leader or owner")
	ErrReplicationInvalid       = newError(KindFailedPrecondition, "REPLICATION_INVALID", "replication cannot be satisfied")
	ErrOutOfOrderSequence       = newError(KindFailedPrecondition, "OUT_OF_ORDER_SEQUENCE", "producer sequence out of order")
	ErrProducerFenced           = newError(KindFailedPrecondition, "PRODUCER_FENCED", "producer epoch replaced")
	ErrMethodNotAllowed         = newError(KindUnimplemented, "METHOD_NOT_ALLOWED", "HTTP method not allowed on this URL")
	ErrPageSizeInvalid          = newError(KindInvalidArgument, "PAGE_SIZE_INVALID", "invalid page_size")
	ErrBroadcastStartInvalid    = newError(KindInvalidArgument, "BROADCAST_START_INVALID", "invalid broadcast start")
	ErrTagFilterInvalid         = newError(KindInvalidArgument, "TAG_FILTER_INVALID", "invalid tag filter")
	ErrUnauthenticated          = newError(KindUnauthenticated, "UNAUTHENTICATED", "authentication required")
	ErrCredentialInvalid        = newError(KindUnauthenticated, "CREDENTIAL_INVALID", "invalid credential")
	ErrCredentialExpired        = newError(KindUnauthenticated, "CREDENTIAL_EXPIRED", "credential expired")
	ErrPermissionDenied         = newError(KindPermissionDenied, "PERMISSION_DENIED", "permission denied")
	ErrProjectScopeMismatch     = newError(KindPermissionDenied, "PROJECT_SCOPE_MISMATCH", "the token is scoped to another project")
	ErrIdentityNotFound         = newError(KindNotFound, "IDENTITY_NOT_FOUND", "no such account, project, user or key")
	ErrIdentityAlreadyExists    = newError(KindAlreadyExists, "IDENTITY_ALREADY_EXISTS", "account, project or user already exists")
	ErrIdentityInvalid          = newError(KindInvalidArgument, "IDENTITY_INVALID", "invalid identity request")
	ErrEncryptionNotConfigured  = newError(KindFailedPrecondition, "ENCRYPTION_NOT_CONFIGURED", "encryption at rest is off")
	ErrDataKeysInUse            = newError(KindFailedPrecondition, "DATA_KEYS_IN_USE", "the project still has queues")
	ErrMessageNotFound          = newError(KindNotFound, "MESSAGE_NOT_FOUND", "no such message in the queue")
	ErrStorageQuotaExceeded     = newError(KindResourceExhausted, "STORAGE_QUOTA_EXCEEDED", "the project's stored bytes quota is used up")
	ErrRateLimited              = newError(KindResourceExhausted, "RATE_LIMITED", "the project's send rate quota is used up")
	ErrLabelInvalid             = newError(KindInvalidArgument, "LABEL_INVALID", "invalid queue label")
	ErrLabelLimitExceeded       = newError(KindResourceExhausted, "LABEL_LIMIT_EXCEEDED", "too many queue labels")
	ErrLabelNotFound            = newError(KindNotFound, "LABEL_NOT_FOUND", "no such queue label")
	ErrProjectNotEmpty          = newError(KindFailedPrecondition, "PROJECT_NOT_EMPTY", "the project still has queues")
)

// detailed is a sentinel with a message specific to one occurrence.
type detailed struct {
	sentinel *Error
	message  string
}

func (d *detailed) Error() string { return d.message }
func (d *detailed) Unwrap() error { return d.sentinel }

// Wrapf returns an error that matches sentinel with errors.Is and whose
// message is the formatted text, meant for the person who made the request.
func Wrapf(sentinel *Error, format string, args ...any) error {
	return &detailed{sentinel: sentinel, message: fmt.Sprintf(format, args...)}
}

// Of returns the sentinel that err wraps, or ErrInternal when it wraps none.
func Of(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrInternal
}
