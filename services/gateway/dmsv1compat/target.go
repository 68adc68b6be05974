package dmsv1compat

import (
	"net/http"
	"strconv"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

// DMS v1.0 accepts only these id shapes in URLs, while the dms.v1 API also
// takes display names where ids go; checking here keeps a name from being
// taken for an id and gives the documented codes.

// target is what a request path names: a project, and on most routes a
// queue and a consumer group in it.
type target struct {
	projectID, queueID, groupID string
}

// parseTarget validates the ids in the path. A wildcard the route does not
// have reads as empty and is skipped; a wildcard it has never matches an
// empty segment.
func parseTarget(r *http.Request) (target, error) {
	t := target{
		projectID: r.PathValue("project_id"),
		queueID:   r.PathValue("queue_id"),
		groupID:   r.PathValue("group_id"),
	}
	if t.projectID != "" && !isDMSProjectID(t.projectID) {
		return t, badRequest(codeProjectIDInvalid, dmsv1.ErrorReason_ERROR_REASON_PROJECT_INVALID,
			"project id "+quote(t.projectID)+" is not 32 lowercase hexadecimal characters, the form of a DMS project id")
	}
	if t.queueID != "" && !catalog.IsQueueID(t.queueID) {
		return t, badRequest(codeQueueIDInvalid, dmsv1.ErrorReason_ERROR_REASON_RESOURCE_NAME_INVALID,
			"queue id "+quote(t.queueID)+" is not a UUID")
	}
	if t.groupID != "" && !catalog.IsGroupID(t.groupID) {
		return t, badRequest(codeGroupIDInvalid, dmsv1.ErrorReason_ERROR_REASON_RESOURCE_NAME_INVALID,
			"consumer group id "+quote(t.groupID)+" is not g- followed by a UUID")
	}
	return t, nil
}

// isDMSProjectID reports whether id has the form of a Huawei Cloud project
// id: 32 lowercase hex digits. The native API takes any project id of 1 to
// 64 characters of [A-Za-z0-9_-] (catalog.ValidateProject), a superset, so
// every DMS project is a native one but not the reverse.
func isDMSProjectID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (t target) project() string { return "projects/" + t.projectID }
func (t target) queue() string   { return t.project() + "/queues/" + t.queueID }
func (t target) group() string   { return t.queue() + "/groups/" + t.groupID }

// quote shows an id from a URL in a message, cut short so that a hostile
// URL cannot flood the logs.
func quote(id string) string {
	const max = 80
	if len(id) > max {
		id = id[:max] + "…"
	}
	return strconv.Quote(id)
}
