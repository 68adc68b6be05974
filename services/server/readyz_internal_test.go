package server

import (
	"slices"
	"testing"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/placement"
)

func TestLaggingUnits(t *testing.T) {
	unit := func(p int32, leader string, replicas, isr []string) placement.State {
		return placement.State{PartitionState: &metadatav1.PartitionState{
			Unit:   &storagev1.UnitId{Kind: storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION, QueueId: "q1", Partition: p},
			Leader: leader, Replicas: replicas, Isr: isr,
		}}
	}
	all := []string{"n1", "n2", "n3"}
	alive := func(n string) bool { return n != "dead" }
	for _, tc := range []struct {
		name  string
		units []placement.State
		want  []string
	}{
		{"in sync everywhere", []placement.State{unit(0, "n1", all, all), unit(1, "n2", all, all)}, nil},
		{"not a replica", []placement.State{unit(0, "n1", []string{"n1", "n2"}, []string{"n1"})}, nil},
		{"out of sync with a live leader", []placement.State{unit(0, "n1", all, []string{"n1", "n2"}), unit(1, "n1", all, all)}, []string{"q/q1/0"}},
		{"out of sync, leader dead", []placement.State{unit(0, "dead", all, []string{"dead"})}, nil},
		{"out of sync, no leader", []placement.State{unit(0, "", all, nil)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := laggingUnits(tc.units, "n3", alive); !slices.Equal(got, tc.want) {
				t.Errorf("laggingUnits = %v, want %v", got, tc.want)
			}
		})
	}
}
