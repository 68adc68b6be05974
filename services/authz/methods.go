package authz

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

// HandlerDecides marks the methods that authorize in their handler (the
// identity API, whose resource is known only from its records).
const HandlerDecides Action = ""

// Methods maps every method of the public gRPC API to the action it is.
// A method missing here is refused with authentication on, so that a new
// method cannot be served unchecked (a test lists the services' methods
// against it).
var Methods = map[string]Action{
	dmsv1.QueueService_CreateQueue_FullMethodName:         CreateQueue,
	dmsv1.QueueService_GetQueue_FullMethodName:            GetQueue,
	dmsv1.QueueService_ListQueues_FullMethodName:          ListQueues,
	dmsv1.QueueService_DeleteQueue_FullMethodName:         DeleteQueue,
	dmsv1.QueueService_AddPartitions_FullMethodName:       UpdateQueue,
	dmsv1.QueueService_UpdateQueueLabels_FullMethodName:   UpdateQueue,
	dmsv1.QueueService_CreateConsumerGroup_FullMethodName: CreateGroup,
	dmsv1.QueueService_GetConsumerGroup_FullMethodName:    GetGroups,
	dmsv1.QueueService_ListConsumerGroups_FullMethodName:  GetGroups,
	dmsv1.QueueService_DeleteConsumerGroup_FullMethodName: DeleteGroup,
	// Whoever sees the project's queues sees its quotas; only the
	// operator's administrators set them.
	dmsv1.QueueService_GetProjectQuotas_FullMethodName:    ListQueues,
	dmsv1.QueueService_UpdateProjectQuotas_FullMethodName: ManageAccounts,
	dmsv1.QueueService_UpdateQueue_FullMethodName:         UpdateQueue,
	// Browsing reads message bodies: a consumer's right, not a viewer's.
	dmsv1.QueueService_BrowseMessages_FullMethodName: ConsumeMessages,

	dmsv1.ProducerService_SendMessages_FullMethodName:            ProduceMessages,
	dmsv1.ProducerService_CancelScheduledMessages_FullMethodName: ProduceMessages,
	dmsv1.ProducerService_RescheduleMessage_FullMethodName:       ProduceMessages,

	dmsv1.ConsumerService_ReceiveMessages_FullMethodName:    ConsumeMessages,
	dmsv1.ConsumerService_AckMessages_FullMethodName:        ConsumeMessages,
	dmsv1.ConsumerService_ChangeVisibility_FullMethodName:   ConsumeMessages,
	dmsv1.ConsumerService_Subscribe_FullMethodName:          ConsumeMessages,
	dmsv1.ConsumerService_ReceiveDeadLetters_FullMethodName: ConsumeMessages,
	dmsv1.ConsumerService_AckDeadLetters_FullMethodName:     ConsumeMessages,
	dmsv1.ConsumerService_RedriveDeadLetters_FullMethodName: ConsumeMessages,
	dmsv1.ConsumerService_SeekConsumerGroup_FullMethodName:  ConsumeMessages,
	dmsv1.ConsumerService_ListDeadLetters_FullMethodName:    ConsumeMessages,

	// A trace tells where a message went, never its body: a viewer's.
	dmsv1.MessageTraceService_GetMessageTrace_FullMethodName: GetQueue,

	dmsv1.IdentityService_CreateAccount_FullMethodName:    HandlerDecides,
	dmsv1.IdentityService_ListAccounts_FullMethodName:     HandlerDecides,
	dmsv1.IdentityService_CreateProject_FullMethodName:    HandlerDecides,
	dmsv1.IdentityService_ListProjects_FullMethodName:     HandlerDecides,
	dmsv1.IdentityService_DeleteProject_FullMethodName:    HandlerDecides,
	dmsv1.IdentityService_CreateUser_FullMethodName:       HandlerDecides,
	dmsv1.IdentityService_ListUsers_FullMethodName:        HandlerDecides,
	dmsv1.IdentityService_SetUserPassword_FullMethodName:  HandlerDecides,
	dmsv1.IdentityService_DeleteUser_FullMethodName:       HandlerDecides,
	dmsv1.IdentityService_GrantRole_FullMethodName:        HandlerDecides,
	dmsv1.IdentityService_RevokeRole_FullMethodName:       HandlerDecides,
	dmsv1.IdentityService_ListRoleBindings_FullMethodName: HandlerDecides,
	dmsv1.IdentityService_CreateAccessKey_FullMethodName:  HandlerDecides,
	dmsv1.IdentityService_ListAccessKeys_FullMethodName:   HandlerDecides,
	dmsv1.IdentityService_RotateAccessKey_FullMethodName:  HandlerDecides,
	dmsv1.IdentityService_DeleteAccessKey_FullMethodName:  HandlerDecides,
	dmsv1.IdentityService_CreateApiToken_FullMethodName:   HandlerDecides,
	dmsv1.IdentityService_ListApiTokens_FullMethodName:    HandlerDecides,
	dmsv1.IdentityService_RotateApiToken_FullMethodName:   HandlerDecides,
	dmsv1.IdentityService_RevokeApiToken_FullMethodName:   HandlerDecides,
	dmsv1.IdentityService_ExplainAccess_FullMethodName:    HandlerDecides,
	dmsv1.IdentityService_SetQueuePolicy_FullMethodName:   HandlerDecides,
	dmsv1.IdentityService_GetQueuePolicy_FullMethodName:   HandlerDecides,

	// The audit trail is the operator's.
	dmsv1.AuditService_ListAuditRecords_FullMethodName: ManageAccounts,
	dmsv1.AuditService_VerifyAuditTrail_FullMethodName: ManageAccounts,

	// So are the keys that encrypt every project's data.
	dmsv1.DataKeyService_ListDataKeys_FullMethodName:    ManageAccounts,
	dmsv1.DataKeyService_RotateDataKey_FullMethodName:   ManageAccounts,
	dmsv1.DataKeyService_DestroyDataKeys_FullMethodName: ManageAccounts,
	// And the cluster's placement: it spans every project.
	dmsv1.ClusterService_GetClusterStatus_FullMethodName: ManageAccounts,
}

// ResourceOf reads the resource a public API request names: its group,
// queue, name or parent field (for Subscribe, start.group), whichever it
// has. ok is false when it names none that parses.
func ResourceOf(req proto.Message) (Resource, bool) {
	m := req.ProtoReflect()
	if start := m.Descriptor().Fields().ByName("start"); start != nil && start.Kind() == protoreflect.MessageKind {
		if !m.Has(start) {
			return Resource{}, false
		}
		m = m.Get(start).Message()
	}
	fields := m.Descriptor().Fields()
	for _, name := range []protoreflect.Name{"group", "queue", "name", "parent"} {
		fd := fields.ByName(name)
		if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
			continue
		}
		v := m.Get(fd).String()
		if v == "" {
			// An optional field left empty names nothing (GetMessageTrace's
			// group, before its queue).
			continue
		}
		if g, err := catalog.ParseGroupName(v); err == nil {
			return Resource{Project: g.Project, Queue: g.Queue}, true
		}
		if q, err := catalog.ParseQueueName(v); err == nil {
			return Resource{Project: q.Project, Queue: q.Queue}, true
		}
		if p, err := catalog.ParseProject(v); err == nil {
			return Resource{Project: p}, true
		}
		return Resource{}, false
	}
	return Resource{}, false
}

// OpensStream reports whether a stream's request message opens it (has
// its start set), which names the resource anew.
func OpensStream(req proto.Message) bool {
	m := req.ProtoReflect()
	start := m.Descriptor().Fields().ByName("start")
	return start != nil && m.Has(start)
}
