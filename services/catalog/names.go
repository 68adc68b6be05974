package catalog

import (
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/opendms/dms/services/errs"
)

var (
	projectPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	namePattern    = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// GroupIDPrefix starts every consumer group id.
const GroupIDPrefix = "g-"

// QueueName is a parsed `projects/{project}/queues/{queue}`; Queue is an id
// or a display name.
type QueueName struct{ Project, Queue string }

// GroupName is a parsed `projects/{project}/queues/{queue}/groups/{group}`.
type GroupName struct {
	QueueName
	Group string
}

// ProjectResource returns `projects/{project}`.
func ProjectResource(project string) string { return "projects/" + project }

// QueueResource returns the canonical resource name of a queue.
func QueueResource(project, queueID string) string {
	return "projects/" + project + "/queues/" + queueID
}

// GroupResource returns the canonical resource name of a consumer group.
func GroupResource(project, queueID, groupID string) string {
	return QueueResource(project, queueID) + "/groups/" + groupID
}

// ParseProject parses `projects/{project}`.
func ParseProject(name string) (string, error) {
	p, ok := strings.CutPrefix(name, "projects/")
	if !ok || strings.Contains(p, "/") {
		return "", errs.Wrapf(errs.ErrResourceNameInvalid, "%q is not a project name of the form projects/{project}", name)
	}
	return p, ValidateProject(p)
}

// ParseQueueName parses `projects/{project}/queues/{queue}`.
func ParseQueueName(name string) (QueueName, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "queues" || parts[3] == "" {
		return QueueName{}, errs.Wrapf(errs.ErrResourceNameInvalid, "%q is not a queue name of the form projects/{project}/queues/{queue}", name)
	}
	return QueueName{Project: parts[1], Queue: parts[3]}, ValidateProject(parts[1])
}

// ParseGroupName parses `projects/{project}/queues/{queue}/groups/{group}`.
func ParseGroupName(name string) (GroupName, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "queues" || parts[4] != "groups" || parts[3] == "" || parts[5] == "" {
		return GroupName{}, errs.Wrapf(errs.ErrResourceNameInvalid, "%q is not a consumer group name of the form projects/{project}/queues/{queue}/groups/{group}", name)
	}
	return GroupName{QueueName: QueueName{Project: parts[1], Queue: parts[3]}, Group: parts[5]}, ValidateProject(parts[1])
}

// ValidateProject checks a project id.
func ValidateProject(p string) error {
	if !projectPattern.MatchString(p) {
		return errs.Wrapf(errs.ErrProjectInvalid, "project id %q must be 1 to 64 characters of [A-Za-z0-9_-]", p)
	}
	return nil
}

// IsQueueID reports whether s has the form of a queue id (a UUID).
func IsQueueID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// IsGroupID reports whether s has the form of a consumer group id.
func IsGroupID(s string) bool {
	rest, ok := strings.CutPrefix(s, GroupIDPrefix)
	return ok && IsQueueID(rest)
}

// NewQueueID returns a fresh queue id.
func NewQueueID() string { return uuid.NewString() }

// NewGroupID returns a fresh consumer group id.
func NewGroupID() string { return GroupIDPrefix + uuid.NewString() }

// ValidateQueueDisplayName applies the DMS rules: 1 to 64 characters of
// [A-Za-z0-9_-]; UUID-shaped names are refused so that a name can never be
// mistaken for an id in a resource name.
func ValidateQueueDisplayName(n string) error {
	if len(n) < 1 || len(n) > 64 {
		return errs.Wrapf(errs.ErrQueueNameLengthInvalid, "queue name must be 1 to 64 characters, got %d", len(n))
	}
	if !namePattern.MatchString(n) {
		return errs.Wrapf(errs.ErrQueueNameInvalid, "queue name %q may only contain letters, digits, '-' and '_'", n)
	}
	if IsQueueID(n) {
		return errs.Wrapf(errs.ErrQueueNameInvalid, "queue name %q has the form of a queue id; choose another name", n)
	}
	return nil
}

// ValidateGroupDisplayName applies the DMS rules: 1 to 32 characters of
// [A-Za-z0-9_-], not shaped like a group id.
func ValidateGroupDisplayName(n string) error {
	if len(n) < 1 || len(n) > 32 {
		return errs.Wrapf(errs.ErrGroupNameLengthInvalid, "consumer group name must be 1 to 32 characters, got %d", len(n))
	}
	if !namePattern.MatchString(n) {
		return errs.Wrapf(errs.ErrGroupNameInvalid, "consumer group name %q may only contain letters, digits, '-' and '_'", n)
	}
	return nil
}

var consumerIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ValidateConsumerID checks the id a broadcast consumer names itself by.
func ValidateConsumerID(id string) error {
	if !consumerIDPattern.MatchString(id) {
		return errs.Wrapf(errs.ErrConsumerIDRequired, "consumer id %q must be 1 to 128 characters of [A-Za-z0-9_.-]", id)
	}
	return nil
}
