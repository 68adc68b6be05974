package modules

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func newTestManager(record *[]string) *Manager {
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	mod := func(name string, fail bool) InitFunc {
		return func(context.Context) (Stopper, error) {
			if fail {
				return nil, errors.New("boom")
			}
			*record = append(*record, "start "+name)
			return StopFunc(func(context.Context) error {
				*record = append(*record, "stop "+name)
				return nil
			}), nil
		}
	}
	m.Register("etcd", mod("etcd", false))
	m.Register("server", mod("server", false), DependsOn("etcd"))
	m.Register("gateway", mod("gateway", false), DependsOn("server"), After("ingest", "delivery"), UserVisible("REST"))
	m.Register("delivery", mod("delivery", false), DependsOn("server"), After("storage"), UserVisible("consumers"))
	m.Register("ingest", mod("ingest", false), DependsOn("server"), After("storage"), UserVisible("producers"))
	m.Register("storage", mod("storage", false), DependsOn("server"), UserVisible("logs"))
	m.Register("broken", mod("broken", true), DependsOn("storage"), UserVisible("fails"))
	m.RegisterGroup("all", "gateway", "delivery", "ingest", "storage")
	return m
}

func TestResolveOrdersDependenciesAndColocatedCallees(t *testing.T) {
	var record []string
	m := newTestManager(&record)
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"all", []string{"etcd", "server", "storage", "ingest", "delivery", "gateway"}},
		{"gateway", []string{"etcd", "server", "gateway"}},
		{"delivery,storage", []string{"etcd", "server", "storage", "delivery"}},
		{"storage, gateway ,ingest", []string{"etcd", "server", "storage", "ingest", "gateway"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			got, err := m.Resolve(tc.target)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestResolveRefusesUnknownAndInternalTargets(t *testing.T) {
	var record []string
	m := newTestManager(&record)
	for _, target := range []string{"nope", "etcd", ""} {
		_, err := m.Resolve(target)
		require.ErrorContains(t, err, "unknown role", target)
	}
}

func TestResolveFindsCycles(t *testing.T) {
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	nop := func(context.Context) (Stopper, error) { return nil, nil }
	m.Register("a", nop, DependsOn("b"), UserVisible(""))
	m.Register("b", nop, DependsOn("a"))
	_, err := m.Resolve("a")
	require.ErrorContains(t, err, "cycle")
}

func TestStartStopsInReverseAndUndoesAFailedStart(t *testing.T) {
	var record []string
	m := newTestManager(&record)
	order, err := m.Resolve("all")
	require.NoError(t, err)
	r, err := m.Start(context.Background(), order)
	require.NoError(t, err)
	require.NoError(t, r.Stop(context.Background()))
	require.NoError(t, r.Stop(context.Background()), "a second stop does nothing")
	require.Equal(t, []string{
		"start etcd", "start server", "start storage", "start ingest", "start delivery", "start gateway",
		"stop gateway", "stop delivery", "stop ingest", "stop storage", "stop server", "stop etcd",
	}, record)

	record = nil
	order, err = m.Resolve("broken")
	require.NoError(t, err)
	_, err = m.Start(context.Background(), order)
	require.ErrorContains(t, err, "broken: boom")
	require.Equal(t, []string{"start etcd", "start server", "start storage", "stop storage", "stop server", "stop etcd"}, record)
}
