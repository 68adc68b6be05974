package dmsv1compat

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// DMS v1.0 error codes that the adapter's own checks give, named after their
// meaning in the DMS error code table; dmsErrors uses some of them too.
const (
	codeProjectIDInvalid     = 10240005
	codeRequestBodyNotJSON   = 10240009
	codeTooManyMessages      = 10240014
	codeQueueIDInvalid       = 10240015
	codeGroupIDInvalid       = 10240016
	codeRetentionNotKafka    = 10240028
	codeURLNotFound          = 10240406
	codeMessageFieldsInvalid = 10540001
	codeBadRequestFormat     = 10540010
	codeMessageTooLarge      = 10540011
	codeMessageBodyNotJSON   = 10540012
	codeURLParamsInvalid     = 10540014
	codeInternal             = 10250002
)

// dmsError is how a DMS v1.0 client is told about one kind of failure.
type dmsError struct {
	httpStatus int
	code       int
}

// dmsErrors is the one place where a DMS error reason becomes what a DMS
// v1.0 client expects. Reasons without a documented DMS code get the closest
// generic one; TestEveryErrorReasonIsMapped keeps the table complete.
var dmsErrors = map[dmsv1.ErrorReason]dmsError{
	dmsv1.ErrorReason_ERROR_REASON_INTERNAL:                  {http.StatusInternalServerError, codeInternal},
	dmsv1.ErrorReason_ERROR_REASON_RESOURCE_NAME_INVALID:     {http.StatusBadRequest, codeURLParamsInvalid},
	dmsv1.ErrorReason_ERROR_REASON_PROJECT_INVALID:           {http.StatusBadRequest, codeProjectIDInvalid},
	dmsv1.ErrorReason_ERROR_REASON_QUEUE_NOT_FOUND:           {http.StatusNotFound, 10240401},
	dmsv1.ErrorReason_ERROR_REASON_GROUP_NOT_FOUND:           {http.StatusNotFound, 10240405},
	dmsv1.ErrorReason_ERROR_REASON_QUEUE_ALREADY_EXISTS:      {http.StatusBadRequest, 10240017},
	dmsv1.ErrorReason_ERROR_REASON_GROUP_ALREADY_EXISTS:      {http.StatusBadRequest, 10240018},
	dmsv1.ErrorReason_ERROR_REASON_QUEUE_QUOTA_EXCEEDED:      {http.StatusBadRequest, 10240020},
	dmsv1.ErrorReason_ERROR_REASON_GROUP_QUOTA_EXCEEDED:      {http.StatusBadRequest, 10240019},
	dmsv1.ErrorReason_ERROR_REASON_QUEUE_NAME_INVALID:        {http.StatusBadRequest, 10240007},
	dmsv1.ErrorReason_ERROR_REASON_QUEUE_NAME_LENGTH_INVALID: {http.StatusBadRequest, 10240011},
	// DMS has one "invalid characters" code for queue and group names.
	dmsv1.ErrorReason_ERROR_REASON_GROUP_NAME_INVALID:         {http.StatusBadRequest, 10240007},
	dmsv1.ErrorReason_ERROR_REASON_GROUP_NAME_LENGTH_INVALID:  {http.StatusBadRequest, 10240012},
	dmsv1.ErrorReason_ERROR_REASON_DESCRIPTION_INVALID:        {http.StatusBadRequest, 10240010},
	dmsv1.ErrorReason_ERROR_REASON_DESCRIPTION_TOO_LONG:       {http.StatusBadRequest, 10240013},
	dmsv1.ErrorReason_ERROR_REASON_QUEUE_MODE_INVALID:         {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_PARTITION_COUNT_INVALID:    {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_RETENTION_INVALID:          {http.StatusBadRequest, 10240027},
	dmsv1.ErrorReason_ERROR_REASON_MAX_CONSUME_COUNT_INVALID:  {http.StatusBadRequest, 10240022},
	dmsv1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE:          {http.StatusBadRequest, codeMessageTooLarge},
	dmsv1.ErrorReason_ERROR_REASON_BATCH_TOO_LARGE:            {http.StatusBadRequest, codeMessageTooLarge},
	dmsv1.ErrorReason_ERROR_REASON_BATCH_EMPTY:                {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_TAG_INVALID:                {http.StatusBadRequest, 10240004},
	dmsv1.ErrorReason_ERROR_REASON_ATTRIBUTE_INVALID:          {http.StatusBadRequest, codeMessageFieldsInvalid},
	dmsv1.ErrorReason_ERROR_REASON_MAX_MESSAGES_INVALID:       {http.StatusBadRequest, codeTooManyMessages},
	dmsv1.ErrorReason_ERROR_REASON_WAIT_TIME_INVALID:          {http.StatusBadRequest, 10240021},
	dmsv1.ErrorReason_ERROR_REASON_VISIBILITY_TIMEOUT_INVALID: {http.StatusBadRequest, 10542206},
	// DMS uses 10542209 for every handler that cannot be used any more:
	// unparsable, forged, timed out or already acknowledged.
	dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_INVALID:  {http.StatusBadRequest, 10542209},
	dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_MISMATCH: {http.StatusBadRequest, 10540004},
	dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_EXPIRED:  {http.StatusBadRequest, 10542209},
	dmsv1.ErrorReason_ERROR_REASON_ACK_STATUS_INVALID:      {http.StatusBadRequest, 10540003},
	dmsv1.ErrorReason_ERROR_REASON_PAGE_TOKEN_INVALID:      {http.StatusBadRequest, codeURLParamsInvalid},
	// A full disk clears once retention frees space, so the client is told
	// to come back rather than that the server is broken.
	dmsv1.ErrorReason_ERROR_REASON_STORAGE_FULL:    {http.StatusServiceUnavailable, codeInternal},
	dmsv1.ErrorReason_ERROR_REASON_UNAVAILABLE:     {http.StatusServiceUnavailable, codeInternal},
	dmsv1.ErrorReason_ERROR_REASON_NOT_IMPLEMENTED: {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID: {http.StatusBadRequest, codeRequestBodyNotJSON},
	// A group keeps one tag rule; DMS documents the refusal but no code.
	dmsv1.ErrorReason_ERROR_REASON_TAG_FILTER_CONFLICT: {http.StatusBadRequest, codeURLParamsInvalid},
	// DMS: "normal handler on the dead-letter endpoint or the reverse".
	dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_KIND_MISMATCH: {http.StatusBadRequest, 10542205},
	dmsv1.ErrorReason_ERROR_REASON_DEAD_LETTERS_DISABLED:        {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_MESSAGE_EXPIRED:              {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_SEEK_TARGET_INVALID:          {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_CONSUMER_ID_REQUIRED:         {http.StatusBadRequest, codeURLParamsInvalid},
	// DMS: "Invalid request format: kafka queue message could not have
	// delayTime." (10540010); an out-of-range delay_time is a bad format too.
	dmsv1.ErrorReason_ERROR_REASON_DELAY_INVALID:     {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_DELAY_NOT_ALLOWED: {http.StatusBadRequest, codeBadRequestFormat},
	// DMS v1.0 has no cancel or reschedule; these only reach it if a native
	// call's error is shown through it.
	dmsv1.ErrorReason_ERROR_REASON_SCHEDULE_ID_INVALID:       {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_SCHEDULE_NOT_FOUND:        {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_SCHEDULE_ALREADY_RELEASED: {http.StatusBadRequest, codeBadRequestFormat},
	// A cluster recovering a node: nothing was stored, come back later, as
	// for a full disk.
	dmsv1.ErrorReason_ERROR_REASON_NOT_ENOUGH_REPLICAS: {http.StatusServiceUnavailable, codeInternal},
	dmsv1.ErrorReason_ERROR_REASON_NOT_LEADER:          {http.StatusServiceUnavailable, codeInternal},
	dmsv1.ErrorReason_ERROR_REASON_FENCED:              {http.StatusServiceUnavailable, codeInternal},
	// Only a queue created with a replication factor the cluster cannot
	// give reaches DMS clients with this.
	dmsv1.ErrorReason_ERROR_REASON_REPLICATION_INVALID: {http.StatusBadRequest, codeBadRequestFormat},
	// Kafka producers' errors; DMS v1.0 sends cannot cause them.
	dmsv1.ErrorReason_ERROR_REASON_OUT_OF_ORDER_SEQUENCE: {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_PRODUCER_FENCED:       {http.StatusBadRequest, codeBadRequestFormat},
	// DMS documents no 405; its "URL not found" code is the closest, and
	// the HTTP status and Allow header say the rest.
	dmsv1.ErrorReason_ERROR_REASON_METHOD_NOT_ALLOWED: {http.StatusMethodNotAllowed, codeURLNotFound},
	// Native-only parameters; DMS v1.0 requests cannot carry them.
	dmsv1.ErrorReason_ERROR_REASON_PAGE_SIZE_INVALID:       {http.StatusBadRequest, codeURLParamsInvalid},
	dmsv1.ErrorReason_ERROR_REASON_BROADCAST_START_INVALID: {http.StatusBadRequest, codeBadRequestFormat},
	// A malformed tag_type of a consume: the code of TAG_FILTER_CONFLICT.
	dmsv1.ErrorReason_ERROR_REASON_TAG_FILTER_INVALID: {http.StatusBadRequest, codeURLParamsInvalid},
	// DMS's 401 codes: 10240101 invalid token, 10240102 expired, 10240103
	// missing; an AK/SK signature that does not verify is an invalid
	// credential too.
	dmsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED:    {http.StatusUnauthorized, 10240103},
	dmsv1.ErrorReason_ERROR_REASON_CREDENTIAL_INVALID: {http.StatusUnauthorized, 10240101},
	dmsv1.ErrorReason_ERROR_REASON_CREDENTIAL_EXPIRED: {http.StatusUnauthorized, 10240102},
	dmsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED:  {http.StatusForbidden, 10240309},
	// DMS documents 10240104 "project and token do not match" under 401;
	// the caller is authenticated, though, and asking again with the same
	// token cannot help, so the status is 403 with DMS's code for it.
	dmsv1.ErrorReason_ERROR_REASON_PROJECT_SCOPE_MISMATCH: {http.StatusForbidden, 10240104},
	// The identity API is not part of DMS v1.0; these cannot come from it
	// but every reason has an entry.
	dmsv1.ErrorReason_ERROR_REASON_IDENTITY_NOT_FOUND:      {http.StatusNotFound, codeURLNotFound},
	dmsv1.ErrorReason_ERROR_REASON_IDENTITY_ALREADY_EXISTS: {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_IDENTITY_INVALID:        {http.StatusBadRequest, codeBadRequestFormat},
	// Nor is the data key API.
	dmsv1.ErrorReason_ERROR_REASON_ENCRYPTION_NOT_CONFIGURED: {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_DATA_KEYS_IN_USE:          {http.StatusBadRequest, codeBadRequestFormat},
	dmsv1.ErrorReason_ERROR_REASON_PROJECT_NOT_EMPTY:         {http.StatusBadRequest, codeBadRequestFormat},
	// Message traces are not part of DMS v1.0 either.
	dmsv1.ErrorReason_ERROR_REASON_MESSAGE_NOT_FOUND: {http.StatusNotFound, codeURLNotFound},
	// DMS documents 10240407 "throttled" with HTTP 404; a 404 would tell a
	// client its queue is gone, so the status is 429 (retry later) and the
	// code DMS's.
	dmsv1.ErrorReason_ERROR_REASON_RATE_LIMITED: {http.StatusTooManyRequests, 10240407},
	// Queue tags (§3.14); see tags.go for the codes.
	dmsv1.ErrorReason_ERROR_REASON_LABEL_INVALID:          {http.StatusBadRequest, codeTagKeyInvalid},
	dmsv1.ErrorReason_ERROR_REASON_LABEL_LIMIT_EXCEEDED:   {http.StatusBadRequest, codeTagLimitExceeded},
	dmsv1.ErrorReason_ERROR_REASON_LABEL_NOT_FOUND:        {http.StatusNotFound, codeTagKeyNotFound},
	dmsv1.ErrorReason_ERROR_REASON_STORAGE_QUOTA_EXCEEDED: {http.StatusBadRequest, 10240020},
}

// apiError is a failure on its way to a DMS v1.0 client.
type apiError struct {
	httpStatus int
	code       int
	reason     dmsv1.ErrorReason
	message    string
}

func (e *apiError) Error() string { return e.message }

// errorFor builds an error that the adapter detects itself, before or
// instead of asking the server, coded as if the server had found it.
func errorFor(reason dmsv1.ErrorReason, message string) *apiError {
	mapped := dmsErrors[reason]
	return &apiError{httpStatus: mapped.httpStatus, code: mapped.code, reason: reason, message: message}
}

// newError is errorFor for the cases where DMS has a code of its own, more
// precise than the reason's, such as one that names the offending field.
func newError(httpStatus, code int, reason dmsv1.ErrorReason, message string) *apiError {
	return &apiError{httpStatus: httpStatus, code: code, reason: reason, message: message}
}

// badRequest is newError for the common 400 case.
func badRequest(code int, reason dmsv1.ErrorReason, message string) *apiError {
	return newError(http.StatusBadRequest, code, reason, message)
}

// fromGRPC translates an error of a gRPC call through dmsErrors, keeping the
// server's message because it names what to fix.
func fromGRPC(err error) *apiError {
	st, _ := status.FromError(err)
	reason := reasonOf(st)
	mapped, ok := dmsErrors[reason]
	if !ok {
		mapped = dmsErrors[dmsv1.ErrorReason_ERROR_REASON_INTERNAL]
	}
	return &apiError{httpStatus: mapped.httpStatus, code: mapped.code, reason: reason, message: st.Message()}
}

// reasonOf reads the ErrorInfo reason of a status. Errors that never reached
// a DMS server (a refused connection, a cancelled call) carry none, so their
// gRPC code stands in.
func reasonOf(st *status.Status) dmsv1.ErrorReason {
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			if v, known := dmsv1.ErrorReason_value["ERROR_REASON_"+info.GetReason()]; known {
				return dmsv1.ErrorReason(v)
			}
		}
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return dmsv1.ErrorReason_ERROR_REASON_UNAVAILABLE
	case codes.Unimplemented:
		return dmsv1.ErrorReason_ERROR_REASON_NOT_IMPLEMENTED
	case codes.InvalidArgument:
		return dmsv1.ErrorReason_ERROR_REASON_REQUEST_INVALID
	default:
		return dmsv1.ErrorReason_ERROR_REASON_INTERNAL
	}
}

// reasonName is the reason as ErrorInfo and the REST surfaces spell it.
func reasonName(reason dmsv1.ErrorReason) string {
	return strings.TrimPrefix(reason.String(), "ERROR_REASON_")
}

// errorBody is a superset of the error shapes that Huawei's v1.0 APIs and
// their sister services use, because DMS v1.0 never documented its own; the
// reason is ours, for clients that know DMS.
type errorBody struct {
	Code      int         `json:"code"`
	Message   string      `json:"message"`
	ErrorCode string      `json:"error_code"`
	ErrorMsg  string      `json:"error_msg"`
	Error     errorDetail `json:"error"`
	Reason    string      `json:"reason"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = fromGRPC(err)
	}
	level := slog.LevelDebug
	// Client mistakes are the client's to fix, and a client that hung up
	// (often during a long poll) says nothing about the server's health.
	if e.httpStatus >= http.StatusInternalServerError && r.Context().Err() == nil {
		level = slog.LevelError
	}
	h.logger.Log(r.Context(), level, "dms request failed",
		"method", r.Method, "path", r.URL.Path, "status", e.httpStatus,
		"error_code", e.code, "reason", reasonName(e.reason), "error", e.message)
	code := strconv.Itoa(e.code)
	writeJSON(w, e.httpStatus, errorBody{
		Code:      e.code,
		Message:   e.message,
		ErrorCode: code,
		ErrorMsg:  e.message,
		Error:     errorDetail{Code: code, Message: e.message},
		Reason:    reasonName(e.reason),
	})
}
