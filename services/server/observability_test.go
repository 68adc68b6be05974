package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// observabilityDir holds the Grafana dashboard and the alerting rules.
var observabilityDir = filepath.Join("..", "..", "deploy", "observability")

// metricName finds the metric names an expression uses: ours (dms_), the
// gRPC ones otelgrpc records (rpc_) and the process and Go collectors'.
var metricName = regexp.MustCompile(`\b(?:dms|rpc|process|go)_[a-z0-9_]+\b`)

// labelParts are the parts of an expression that name labels, not
// metrics: matchers, by and without lists, label_values' label argument.
var labelParts = regexp.MustCompile(`\{[^}]*\}|\b(?:by|without|on|ignoring)\s*\([^)]*\)|,\s*[a-z_]+\s*\)$`)

// metricsOf returns the metric names an expression uses.
func metricsOf(expr string) []string {
	return metricName.FindAllString(labelParts.ReplaceAllString(expr, " "), -1)
}

// dashboardExprs returns every PromQL expression of a Grafana dashboard:
// its panels' targets and its template variables' queries.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(data, &dash), "%s is not valid JSON", path)
	require.NotEmpty(t, dash.Title)
	require.NotEmpty(t, dash.UID)
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q has an empty query", p.Title)
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok && v.Type == "query" {
			exprs = append(exprs, q["query"].(string))
		}
	}
	return exprs
}

// alertExprs returns the expressions of a Prometheus rules file, checking
// that every rule is an alert with a severity and a summary.
func alertExprs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&rules), "%s is not a Prometheus rules file", path)
	require.NotEmpty(t, rules.Groups)
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: a rule without a name", g.Name)
			require.NotEmpty(t, r.Expr, "alert %s has no expression", r.Alert)
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "alert %s", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s", r.Alert)
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				require.NoError(t, err, "alert %s: for", r.Alert)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// TestObservabilityFilesMatchTheMetrics parses the dashboard and the
// alerting rules and checks that every metric they name is in a real
// dmsd's /metrics, after traffic that makes each kind of series appear
// (sends, receives, acks, failures, a dead letter, a scheduled message).
func TestObservabilityFilesMatchTheMetrics(t *testing.T) {
	exprs := dashboardExprs(t, filepath.Join(observabilityDir, "dms-dashboard.json"))
	exprs = append(exprs, alertExprs(t, filepath.Join(observabilityDir, "dms-alerts.yaml"))...)
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricsOf(e)
		require.NotEmpty(t, names, "expression names no metric: %s", e)
		for _, n := range names {
			used[n] = true
		}
	}

	s := testserver.Start(t)
	q := s.CreateQueue(t, metricsProject, &dmsv1.Queue{DisplayName: "observed", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, DeadLetterEnabled: true, MaxConsumeCount: 1})
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "a", "b")
	got := s.Receive(t, g, 2, 30*time.Second)
	require.Len(t, got, 2)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[0])
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got[1]) // a dead letter at once
	_, err := s.Consumer().RedriveDeadLetters(context.Background(), &dmsv1.RedriveDeadLettersRequest{Group: g.GetName()})
	require.NoError(t, err)
	_, err = s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte("later"), Delay: durationpb.New(time.Hour)}}})
	require.NoError(t, err)

	exposed := map[string]bool{}
	for _, line := range strings.Split(scrape(t, s), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exposed[line[:strings.IndexAny(line, "{ ")]] = true
	}
	for n := range used {
		require.True(t, exposed[n], "%s is used by the dashboard or the alerts but dmsd does not expose it", n)
	}
}
