package kafka

// ShareFetch (key 78): version 1.
//
// Receives from the DMS consumer group behind a share group (share.go)
// with a visibility timeout of 30 s, returned as the acquisition lock, and
// answers with the stored batches holding the messages received and their
// offsets and delivery counts as acquired records; clients deliver only the
// acquired records of a batch. Acknowledgements carried by the request
// settle messages first (accept and reject: acked; release: failed, so
// available again at once). A share session (epoch 0 opens, -1 closes and
// releases what it holds, any other must be the next epoch) keeps the
// partitions fetched and the receipt handles of the messages held; it
// lives on the node serving the fetch and ends with its connection,
// releasing what it holds, as in Kafka. max_wait_ms is the receive's wait;
// max_records bounds the messages (500 when unset); min_bytes, max_bytes
// and batch_size are not used (a receive counts messages). The receive
// names the session's partitions, so that in a cluster each node hands out
// the messages of the partitions it leads, which clients fetch from it. The member id is not
// checked against the group's membership, which its coordinator keeps.
// Versions 0 (Kafka 4.0's early access) and 2 (lock renewal, KIP-1222) are
// not served.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.ShareFetch.Int16(), 1, 1, (*Server).shareFetch) }

// defaultShareMaxRecords is what a fetch without max_records gets at most
// (Kafka's share fetch default of max.poll.records).
const defaultShareMaxRecords = 500

func (s *Server) shareFetch(ctx context.Context, r *request, req *kmsg.ShareFetchRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	resp.AcquisitionLockTimeoutMillis = int32(shareLock.Milliseconds())
	project := s.project(r)
	group, member := deref(req.GroupID), deref(req.MemberID)
	if group == "" || member == "" {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	}
	if req.ShareSessionEpoch == 0 {
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				if len(p.AcknowledgementBatches) > 0 {
					resp.ErrorCode = kerr.InvalidRequest.Code // a new session holds nothing to acknowledge
					return resp, nil
				}
			}
		}
	}
	sess, err := s.session(r, groups.Key(project, group)+"\x00"+member, req.ShareSessionEpoch)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		return resp, nil
	}
	results := map[sharePartition]*kmsg.ShareFetchResponseTopicPartition{}
	result := func(p sharePartition) *kmsg.ShareFetchResponseTopicPartition {
		if results[p] == nil {
			rp := kmsg.NewShareFetchResponseTopicPartition()
			rp.Partition, rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = p.partition, -1, -1
			results[p] = &rp
		}
		return results[p]
	}
	sess.mu.Lock()
	for _, f := range req.ForgottenTopicsData {
		for _, p := range f.Partitions {
			delete(sess.parts, sharePartition{f.TopicID, p})
		}
	}
	sess.mu.Unlock()
	for _, t := range req.Topics {
		q, terr := s.topicByID(ctx, project, t.TopicID)
		for _, p := range t.Partitions {
			sp := sharePartition{t.TopicID, p.Partition}
			err := terr
			if err == nil {
				err = partitionError(q, p.Partition)
			}
			if err != nil {
				rp := result(sp)
				rp.ErrorCode, rp.ErrorMessage = errorCode(err), errorMessage(err)
				continue
			}
			if len(p.AcknowledgementBatches) > 0 {
				var batches []ackBatch
				for _, b := range p.AcknowledgementBatches {
					batches = append(batches, ackBatch{b.FirstOffset, b.LastOffset, b.AcknowledgeTypes})
				}
				aerr := s.acknowledge(ctx, sess, sp, batches)
				rp := result(sp)
				rp.AcknowledgeErrorCode, rp.AcknowledgeErrorMessage = errorCode(aerr), errorMessage(aerr)
			}
			if req.ShareSessionEpoch != -1 {
				sess.mu.Lock()
				sess.parts[sp] = true
				sess.mu.Unlock()
			}
		}
	}
	if req.ShareSessionEpoch == -1 {
		s.releaseAll(sess)
	} else if err := s.shareFetchRecords(ctx, project, group, sess, req, result); err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
	}
	byTopic := map[[16]byte]int{}
	for sp, rp := range results {
		i, ok := byTopic[sp.topic]
		if !ok {
			i = len(resp.Topics)
			byTopic[sp.topic] = i
			rt := kmsg.NewShareFetchResponseTopic()
			rt.TopicID = sp.topic
			resp.Topics = append(resp.Topics, rt)
		}
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, *rp)
	}
	return resp, nil
}

// shareFetchRecords receives for every topic of the session.
func (s *Server) shareFetchRecords(ctx context.Context, project, group string, sess *shareSession, req *kmsg.ShareFetchRequest, result func(sharePartition) *kmsg.ShareFetchResponseTopicPartition) error {
	sess.mu.Lock()
	topicIDs := map[[16]byte]bool{}
	for p := range sess.parts {
		topicIDs[p.topic] = true
	}
	sess.mu.Unlock()
	var qs []*metadatav1.QueueRecord
	for id := range topicIDs {
		q, err := s.topicByID(ctx, project, id)
		if err != nil {
			continue // deleted meanwhile: its partitions were answered
		}
		if err := s.ensureShareGroup(ctx, project, q, group); err != nil {
			return err
		}
		qs = append(qs, q)
	}
	if len(qs) == 0 {
		return nil
	}
	remaining := req.MaxRecords
	if remaining <= 0 {
		remaining = defaultShareMaxRecords
	}
	wait := time.Duration(max(req.MaxWaitMillis, 0)) * time.Millisecond / time.Duration(len(qs))
	got := false
	for _, q := range qs {
		if remaining <= 0 {
			break
		}
		w := wait
		if got {
			w = 0
		}
		parts, err := s.shareReceive(ctx, project, q, group, sess, remaining, w)
		if err != nil {
			return err
		}
		for p, a := range parts {
			rp := result(sharePartition{topicID(q), p})
			rp.Records, rp.AcquiredRecords = a.batches, a.records
			for _, ar := range a.records {
				remaining -= int32(ar.LastOffset - ar.FirstOffset + 1)
			}
			got = true
		}
	}
	return nil
}
