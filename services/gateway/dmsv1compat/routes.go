package dmsv1compat

import "net/http"

// A DMS API version is a path prefix over the one route table below: v2,
// which Huawei's current SDKs speak, has the bodies, status codes and error
// codes of v1.0 (its SDK models have the same fields), so both are served
// by the same endpoints and differ only where a path does.
type version struct {
	prefix string
	// paths replaces the path of a route, after the project id, where the
	// version spells it differently.
	paths map[string]string
}

var versions = []version{
	{prefix: "/v1.0/"},
	{prefix: "/v2/", paths: map[string]string{"/quotas/dms": "/quotas"}},
}

// Prefixes are the URL prefixes the handler serves, for mounting it.
func Prefixes() []string {
	out := make([]string, len(versions))
	for i, v := range versions {
		out[i] = v.prefix
	}
	return out
}

// route is one operation of the DMS API, its path after /{project_id}.
type route struct {
	method, path string
	endpoint     endpoint
}

func routes(h *handler) []route {
	return []route{
		{http.MethodPost, "/queues", h.createQueue},
		{http.MethodGet, "/queues", h.listQueues},
		{http.MethodGet, "/queues/{queue_id}", h.getQueue},
		{http.MethodDelete, "/queues/{queue_id}", h.deleteQueue},
		{http.MethodPost, "/queues/{queue_id}/groups", h.createGroups},
		{http.MethodGet, "/queues/{queue_id}/groups", h.listGroups},
		{http.MethodDelete, "/queues/{queue_id}/groups/{group_id}", h.deleteGroup},
		{http.MethodPost, "/queues/{queue_id}/messages", h.sendMessages},
		{http.MethodGet, "/queues/{queue_id}/groups/{group_id}/messages", h.consumeMessages},
		{http.MethodPost, "/queues/{queue_id}/groups/{group_id}/ack", h.ackMessages},
		{http.MethodGet, "/queues/{queue_id}/groups/{group_id}/deadletters", h.consumeDeadLetters},
		{http.MethodPost, "/queues/{queue_id}/groups/{group_id}/deadletters/ack", h.ackDeadLetters},
		{http.MethodGet, "/quotas/dms", h.quotas},
		{http.MethodPost, "/queue/{queue_id}/tags", h.addTag},
		{http.MethodPost, "/queue/{queue_id}/tags/action", h.tagsAction},
		{http.MethodDelete, "/queue/{queue_id}/tags/{key}", h.deleteTag},
		{http.MethodGet, "/queue/{queue_id}/tags", h.queueTags},
		{http.MethodGet, "/queue/tags", h.projectTags},
		{http.MethodPost, "/queue/resource_instances/action", h.resourceInstances},
	}
}
