// Package recordfmt turns the batches storage keeps into records, whatever
// their format: native batches (Record messages, as the storage contract
// defines them) and, once a protocol front end stores its own batches as
// they came, those formats too. Storage serves batches as bytes and never
// decodes them; the roles that need messages (delivery, the native APIs)
// decode here, once.
package recordfmt

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Decode appends to out the records of a stored batch with offsets at or
// after from, at most limit of them (limit <= 0: all).
func Decode(b *storagev1.RecordBatch, from int64, limit int, out []*storagev1.StoredRecord) ([]*storagev1.StoredRecord, error) {
	switch b.GetFormat() {
	case storagev1.BatchFormat_BATCH_FORMAT_NATIVE:
		return decodeNative(b, from, limit, out)
	case storagev1.BatchFormat_BATCH_FORMAT_KAFKA:
		return decodeKafka(b, from, limit, out)
	}
	return out, fmt.Errorf("recordfmt: batch at offset %d has unknown format %d", b.GetBaseOffset(), b.GetFormat())
}

// decodeNative reads the records of a native batch, proto-decoding only
// those asked for.
func decodeNative(b *storagev1.RecordBatch, from int64, limit int, out []*storagev1.StoredRecord) ([]*storagev1.StoredRecord, error) {
	view := partitionlog.BatchView{
		BaseOffset: b.GetBaseOffset(), Count: int(b.GetRecordCount()), Format: partitionlog.FormatRecords,
		FirstTimestamp: b.GetFirstTimestampMs(), MaxTimestamp: b.GetMaxTimestampMs(), Payload: b.GetData(),
	}
	taken := 0
	var decodeErr error
	err := partitionlog.ForEachRecord(view, func(offset, _ int64, data []byte) bool {
		if offset < from {
			return true
		}
		rec := &storagev1.Record{}
		if err := proto.Unmarshal(data, rec); err != nil {
			decodeErr = fmt.Errorf("recordfmt: offset %d: undecodable record: %w", offset, err)
			return false
		}
		out = append(out, &storagev1.StoredRecord{Offset: offset, Record: rec})
		taken++
		return limit <= 0 || taken < limit
	})
	if err == nil {
		err = decodeErr
	}
	return out, err
}
