package server

import (
	"fmt"
	"slices"
	"strings"
)

// The roles a dmsd process can run.
const (
	RoleMetadata  = "metadata"
	RoleStorage   = "storage"
	RoleIngest    = "ingest"
	RoleDelivery  = "delivery"
	RoleScheduler = "scheduler"
	RoleGateway   = "gateway"
)

var roleNames = []string{RoleMetadata, RoleStorage, RoleIngest, RoleDelivery, RoleScheduler, RoleGateway}

// parseTarget expands -target into the roles to run, in start order: the
// roles that serve others (storage first) start before the ones that call
// them, and stop after them.
func parseTarget(target string) ([]string, error) {
	want := map[string]bool{}
	for _, t := range strings.Split(target, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == "all":
			for _, r := range roleNames {
				want[r] = true
			}
		case slices.Contains(roleNames, t):
			want[t] = true
		default:
			return nil, fmt.Errorf("unknown role %q in -target (known: all, %s)", t, strings.Join(roleNames, ", "))
		}
	}
	startOrder := []string{RoleStorage, RoleMetadata, RoleIngest, RoleDelivery, RoleScheduler, RoleGateway}
	var roles []string
	for _, r := range startOrder {
		if want[r] {
			roles = append(roles, r)
		}
	}
	return roles, nil
}
