package metadata

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/recordfmt"
	"github.com/opendms/dms/services/storage/logid"
)

const (
	// defaultBrowseLimit and maxBrowseLimit bound the messages of one
	// browse, as ReceiveMessages bounds a receive.
	defaultBrowseLimit = 100
	maxBrowseLimit     = 1000
	// browseScanBytes bounds what one browse reads of each partition, so
	// that a filter matching nothing in a large backlog answers in bounded
	// time (with a page token) rather than reading the whole queue.
	browseScanBytes = 8 << 20
	browseReadBytes = 1 << 20
)

// Browse reads a queue's messages without consuming them; see
// QueueService.BrowseMessages.
func (v *Views) Browse(ctx context.Context, q *metadatav1.QueueRecord, req *dmsv1.BrowseMessagesRequest) (*dmsv1.BrowseMessagesResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultBrowseLimit
	case limit < 0 || limit > maxBrowseLimit:
		return nil, errs.Wrapf(errs.ErrMaxMessagesInvalid, "limit must be 1 to %d, got %d", maxBrowseLimit, limit)
	}
	filter, err := message.NewFilter(req.GetMessageIds(), req.GetTagFilter(), req.GetAttributes(), nil, req.GetEndTime())
	if err != nil {
		return nil, err
	}
	if req.GetOffset() < 0 {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "offset must be 0 or more, got %d", req.GetOffset())
	}
	if t := req.GetStartTime(); t != nil && t.CheckValid() != nil {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "start_time %v is not a valid timestamp", t)
	}
	parts := slices.Clone(req.GetPartitions())
	if len(parts) == 0 {
		for p := range q.GetPartitionCount() {
			parts = append(parts, p)
		}
	}
	for i, p := range parts {
		if p < 0 || p >= q.GetPartitionCount() || slices.Contains(parts[:i], p) {
			return nil, errs.Wrapf(errs.ErrRequestInvalid, "partition %d: the queue has partitions 0 to %d, each named once", p, q.GetPartitionCount()-1)
		}
	}
	logs := make([]*storagev1.LogId, len(parts))
	for i, p := range parts {
		logs[i] = logid.Partition(q.GetId(), p)
	}
	info, err := v.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
	if err != nil {
		return nil, err
	}
	var start map[int32]int64
	if tok := req.GetPageToken(); tok != "" {
		if start, err = message.ParsePageToken(tok, parts); err != nil {
			return nil, err
		}
	} else {
		start = make(map[int32]int64, len(parts))
		for i, p := range parts {
			start[p] = req.GetOffset()
			if t := req.GetStartTime(); t != nil {
				found, err := v.storage.FindOffset(ctx, &storagev1.FindOffsetRequest{Log: logs[i], TimestampMs: t.AsTime().UnixMilli()})
				if err != nil {
					return nil, err
				}
				start[p] = found.GetOffset()
			}
		}
	}
	scans := make([]partitionScan, len(parts))
	for i, p := range parts {
		s, err := v.scanPartition(ctx, logs[i], p, start[p], filter, limit)
		if err != nil {
			return nil, err
		}
		scans[i] = s
	}
	// Oldest first across partitions; what does not fit this page is where
	// its partition continues.
	var all []*dmsv1.ReceivedMessage
	for _, s := range scans {
		all = append(all, s.matched...)
	}
	slices.SortStableFunc(all, func(a, b *dmsv1.ReceivedMessage) int {
		return cmp.Or(a.GetPublishTime().AsTime().Compare(b.GetPublishTime().AsTime()), cmp.Compare(a.GetPartition(), b.GetPartition()), cmp.Compare(a.GetOffset(), b.GetOffset()))
	})
	if len(all) > limit {
		all = all[:limit]
	}
	kept := make(map[*dmsv1.ReceivedMessage]bool, len(all))
	for _, m := range all {
		kept[m] = true
	}
	next := make(map[int32]int64, len(parts))
	more := false
	resp := &dmsv1.BrowseMessagesResponse{Messages: all}
	for i, p := range parts {
		s := scans[i]
		next[p] = s.end
		for _, m := range s.matched {
			if !kept[m] {
				next[p] = m.GetOffset() // the first one left out
				break
			}
		}
		if next[p] < s.end || !s.done {
			more = true
		}
		li := info.GetLogs()[i]
		resp.Partitions = append(resp.Partitions, &dmsv1.PartitionRange{Partition: p, StartOffset: li.GetStartOffset(), EndOffset: li.GetNextOffset(), NextOffset: next[p]})
	}
	if more {
		resp.NextPageToken = message.PageToken(next, parts)
	}
	return resp, nil
}

type partitionScan struct {
	matched []*dmsv1.ReceivedMessage
	end     int64 // where the scan stopped
	done    bool  // the partition has nothing more to give
}

// scanPartition reads one partition from offset on until it has limit
// matches, reaches the end (or the filter's end time), or has read
// browseScanBytes.
func (v *Views) scanPartition(ctx context.Context, log *storagev1.LogId, partition int32, offset int64, f message.Filter, limit int) (partitionScan, error) {
	out := partitionScan{end: offset}
	for read := 0; read < browseScanBytes && len(out.matched) < limit; {
		resp, err := v.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: out.end, MaxBytes: browseReadBytes, RawBatches: true})
		if err != nil {
			return out, err
		}
		out.end = max(out.end, resp.GetStartOffset())
		if lost := resp.GetLost(); lost != nil && len(resp.GetBatches()) == 0 {
			out.end = lost.GetLastOffset() + 1 // damaged and unrepairable: nothing to show
			continue
		}
		if len(resp.GetBatches()) == 0 {
			out.done = true
			return out, nil
		}
		for _, b := range resp.GetBatches() {
			read += len(b.GetData())
			recs, err := recordfmt.Decode(b, out.end, 0, nil)
			if err != nil {
				return out, fmt.Errorf("metadata: browsing %s: %w", logid.Describe(log), err)
			}
			for _, r := range recs {
				if r.GetOffset() >= resp.GetNextOffset() {
					break
				}
				rec := r.GetRecord()
				if f.Until != 0 && rec.GetTimestampMs() >= f.Until {
					out.end, out.done = r.GetOffset(), true
					return out, nil
				}
				out.end = r.GetOffset() + 1
				if !f.Matches(rec.GetMessageId(), rec.GetTimestampMs(), rec.GetMessage()) {
					continue
				}
				out.matched = append(out.matched, &dmsv1.ReceivedMessage{
					MessageId: rec.GetMessageId(), Message: rec.GetMessage(), Partition: partition, Offset: r.GetOffset(),
					PublishTime: timestamppb.New(time.UnixMilli(rec.GetTimestampMs())),
				})
				if len(out.matched) >= limit {
					return out, nil
				}
			}
		}
		if out.end >= resp.GetNextOffset() {
			out.done = true
			return out, nil
		}
	}
	return out, nil
}
