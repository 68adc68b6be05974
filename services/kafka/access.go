package kafka

import (
	"context"
	"fmt"
	"reflect"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// Authorization of Kafka requests. With authentication on, every request
// of an authenticated connection is decided by authz.Decide, from one
// table: the action each API does on the topics it names and the action it
// does on consumer groups (the project's, as DMS has no per-group rights).
//
//   - Topics are checked where they are looked up (topic, topicByID,
//     topicOrCreate, createTopic and the listing of topics), with the
//     request's topic action carried in its context, so that each topic of
//     a request gets its own answer, TOPIC_AUTHORIZATION_FAILED, before its
//     existence is looked at: who may not see a topic does not learn
//     whether it exists. A Metadata request for every topic lists only the
//     ones the principal may see, as Kafka does.
//   - A group action is decided once per request in the dispatcher; a
//     denial answers every group, topic and partition of the request with
//     GROUP_AUTHORIZATION_FAILED (fillErrors) and serves nothing of it.
//
// Kafka's cluster-level rights have no counterpart of their own in DMS:
// creating a topic is CreateQueue on it, deleting it DeleteQueue, adding
// partitions or deleting records UpdateQueue, so a refusal of those is
// TOPIC_AUTHORIZATION_FAILED; CLUSTER_AUTHORIZATION_FAILED is never sent.

// access is what an API does, for authorization: the action on the topics
// it names and the action on the project's consumer groups; empty for
// none.
type access struct {
	topic authz.Action
	group authz.Action
}

// apiAccess is the authorization table, by API key. An API of the
// dispatch table missing here is refused to every user (TestAccessTable
// keeps the two in step); ApiVersions and the SASL APIs are served before
// authentication and need no entry.
var apiAccess = map[int16]access{
	kmsg.Produce.Int16():              {topic: authz.ProduceMessages},
	kmsg.Fetch.Int16():                {topic: authz.ConsumeMessages},
	kmsg.ListOffsets.Int16():          {topic: authz.GetQueue},
	kmsg.Metadata.Int16():             {topic: authz.GetQueue},
	kmsg.OffsetCommit.Int16():         {topic: authz.ConsumeMessages, group: authz.ConsumeMessages},
	kmsg.OffsetFetch.Int16():          {topic: authz.GetQueue, group: authz.ConsumeMessages},
	kmsg.FindCoordinator.Int16():      {},
	kmsg.JoinGroup.Int16():            {group: authz.ConsumeMessages},
	kmsg.Heartbeat.Int16():            {group: authz.ConsumeMessages},
	kmsg.LeaveGroup.Int16():           {group: authz.ConsumeMessages},
	kmsg.SyncGroup.Int16():            {group: authz.ConsumeMessages},
	kmsg.DescribeGroups.Int16():       {group: authz.GetGroups},
	kmsg.ListGroups.Int16():           {group: authz.GetGroups},
	kmsg.CreateTopics.Int16():         {topic: authz.CreateQueue},
	kmsg.DeleteTopics.Int16():         {topic: authz.DeleteQueue},
	kmsg.DeleteRecords.Int16():        {topic: authz.UpdateQueue},
	kmsg.InitProducerID.Int16():       {},
	kmsg.OffsetForLeaderEpoch.Int16(): {topic: authz.GetQueue},
	kmsg.DescribeConfigs.Int16():      {topic: authz.GetQueue},
	kmsg.CreatePartitions.Int16():     {topic: authz.UpdateQueue},
	kmsg.DeleteGroups.Int16():         {group: authz.DeleteGroup},
	kmsg.OffsetDelete.Int16():         {topic: authz.GetQueue, group: authz.ConsumeMessages},
	kmsg.ShareGroupHeartbeat.Int16():  {topic: authz.ConsumeMessages, group: authz.ConsumeMessages},
	kmsg.ShareGroupDescribe.Int16():   {topic: authz.GetQueue, group: authz.GetGroups},
	kmsg.ShareFetch.Int16():           {topic: authz.ConsumeMessages, group: authz.ConsumeMessages},
	kmsg.ShareAcknowledge.Int16():     {topic: authz.ConsumeMessages, group: authz.ConsumeMessages},
}

// preAuthAPIs are served before a connection authenticates.
var preAuthAPIs = map[int16]bool{
	kmsg.ApiVersions.Int16(): true, kmsg.SASLHandshake.Int16(): true, kmsg.SASLAuthenticate.Int16(): true,
}

// requestAccess is the principal and topic action of a request, carried in
// its context to the topic lookups.
type requestAccess struct {
	principal authz.Principal
	action    authz.Action
}

type accessKey struct{}

// withAccess returns ctx carrying what the topic lookups decide with.
func withAccess(ctx context.Context, ra requestAccess) context.Context {
	return context.WithValue(ctx, accessKey{}, ra)
}

// authorizeTopic decides the request's topic action on a topic (by name or
// id); nil when allowed or when authentication is off.
func (s *Server) authorizeTopic(ctx context.Context, project, topic string) error {
	return s.authorizeTopicAction(ctx, project, topic, "")
}

// authorizeTopicAction decides action (the request's topic action when
// empty) on a topic.
func (s *Server) authorizeTopicAction(ctx context.Context, project, topic string, action authz.Action) error {
	if s.deps.Auth == nil {
		return nil
	}
	ra, ok := ctx.Value(accessKey{}).(requestAccess)
	if !ok {
		// Work of the server itself (group expiry, share sessions).
		return nil
	}
	if action == "" {
		action = ra.action
	}
	if action == "" {
		return fmt.Errorf("%w: this request does not act on topics", kerr.TopicAuthorizationFailed)
	}
	d := authz.Decide(s.deps.Auth.Directory, ra.principal, action, authz.Resource{Project: project, Queue: topic})
	if !d.Allowed {
		return fmt.Errorf("%w: %s (%s)", kerr.TopicAuthorizationFailed, d.Err, errs.Of(d.Err).Reason)
	}
	return nil
}

// authorizeGroup decides a request's group action; the error is
// GROUP_AUTHORIZATION_FAILED.
func (s *Server) authorizeGroup(c *conn, action authz.Action) error {
	d := authz.Decide(s.deps.Auth.Directory, c.principal, action, authz.Resource{Project: c.project})
	if !d.Allowed {
		return fmt.Errorf("%w: %s", kerr.GroupAuthorizationFailed, d.Err)
	}
	return nil
}

// fillErrors makes the response to a refused request: the request's shape
// mirrored (its topics, partitions and groups, by field name) with code in
// every ErrorCode and msg in every ErrorMessage. kmsg's requests and
// responses name their common fields alike, which is what lets one
// function answer every API.
func fillErrors(req kmsg.Request, code int16, msg string) kmsg.Response {
	resp := req.ResponseKind()
	mirror(reflect.ValueOf(req).Elem(), reflect.ValueOf(resp).Elem(), code, msg)
	return resp
}

func mirror(req, resp reflect.Value, code int16, msg string) {
	t := resp.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Name == "Version" {
			continue
		}
		out := resp.Field(i)
		switch {
		case f.Name == "ErrorCode" && out.Kind() == reflect.Int16:
			out.SetInt(int64(code))
			continue
		case f.Name == "ErrorMessage" && out.Type() == reflect.TypeOf((*string)(nil)):
			m := msg
			out.Set(reflect.ValueOf(&m))
			continue
		}
		if !req.IsValid() {
			continue
		}
		in := req.FieldByName(f.Name)
		if !in.IsValid() {
			continue
		}
		switch {
		case out.Kind() == reflect.Slice && out.Type().Elem().Kind() == reflect.Struct && in.Kind() == reflect.Slice:
			n := in.Len()
			s := reflect.MakeSlice(out.Type(), n, n)
			for j := 0; j < n; j++ {
				e := in.Index(j)
				if e.Kind() == reflect.Struct {
					mirror(e, s.Index(j), code, msg)
					continue
				}
				// A list of names or numbers (DescribeGroups' groups,
				// OffsetFetch's partitions): the value goes in the
				// element's own field.
				mirror(reflect.Value{}, s.Index(j), code, msg)
				for _, name := range []string{"Group", "Partition", "Topic"} {
					if g := s.Index(j).FieldByName(name); g.IsValid() && g.Type() == e.Type() {
						g.Set(e)
						break
					}
				}
			}
			out.Set(s)
		case in.Type() == out.Type() && out.Kind() != reflect.Slice && out.Kind() != reflect.Struct:
			out.Set(in)
		}
	}
}
