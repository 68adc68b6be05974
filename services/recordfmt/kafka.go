package recordfmt

import (
	"fmt"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
)

// decodeKafka reads the records of a Kafka record batch (magic 2) as a
// producer sent it.
func decodeKafka(b *storagev1.RecordBatch, _ int64, _ int, out []*storagev1.StoredRecord) ([]*storagev1.StoredRecord, error) {
	return out, fmt.Errorf("recordfmt: batch at offset %d is a Kafka record batch, which is not decoded yet", b.GetBaseOffset())
}
