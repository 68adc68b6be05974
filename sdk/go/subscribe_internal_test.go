package dms

import (
	"fmt"
	"testing"
)

func TestBuildAcksMakesRangesOfConsecutiveSuccesses(t *testing.T) {
	known := func(h string, partition int32, offset int64, status AckStatus) subAck {
		return subAck{ack: Ack{ReceiptHandle: h, Status: status}, known: true, pos: delivered{partition: partition, offset: offset}}
	}
	acks := []subAck{
		known("a", 0, 5, AckSuccess),
		known("b", 1, 7, AckSuccess),
		known("c", 0, 3, AckSuccess),
		known("d", 0, 4, 0), // zero status is success
		known("e", 0, 6, AckFail),
		known("f", 0, 7, AckSuccess),
		known("g", 0, 8, AckSuccess),
		{ack: Ack{ReceiptHandle: "h"}}, // not of this subscription
		known("i", 1, 9, AckSuccess),
		known("j", 2, 1, AckRedeliver),
	}
	got := buildAcks(acks)
	var ranges []string
	for _, r := range got.ranges {
		ranges = append(ranges, fmt.Sprintf("%d:%d-%d", r[0].pos.partition, r[0].pos.offset, r[len(r)-1].pos.offset))
	}
	var handles []string
	for _, h := range got.handles {
		handles = append(handles, h.ack.ReceiptHandle)
	}
	if fmt.Sprint(ranges) != "[0:3-5 0:7-8]" {
		t.Errorf("ranges %v", ranges)
	}
	if fmt.Sprint(handles) != "[e h j b i]" {
		t.Errorf("handles %v", handles)
	}
}

func TestBuildAcksCapsRangeLength(t *testing.T) {
	var acks []subAck
	for o := range int64(2*maxRangeLen + 1) {
		acks = append(acks, subAck{ack: Ack{ReceiptHandle: fmt.Sprint(o)}, known: true, pos: delivered{offset: o}})
	}
	got := buildAcks(acks)
	if len(got.ranges) != 2 || len(got.ranges[0]) != maxRangeLen || len(got.handles) != 1 {
		t.Fatalf("%d ranges (first %d long), %d handles", len(got.ranges), len(got.ranges[0]), len(got.handles))
	}
}
