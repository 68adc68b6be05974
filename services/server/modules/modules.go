// Package modules runs the components of a dmsd process in dependency order
// and stops them in reverse, the way Loki's module manager (dskit) does: each
// component registers once with the components it needs, and -target names
// the ones to run. A component's dependencies are pulled in whatever the
// target says; a component it merely calls when both share a process (an
// "after" edge) is only ordered before it.
package modules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Stopper stops what a module's init started. Stop must return once the
// module's goroutines are done, bounded by the context given.
type Stopper interface {
	Stop(ctx context.Context) error
}

// StopFunc adapts a function to Stopper.
type StopFunc func(ctx context.Context) error

// Stop implements Stopper.
func (f StopFunc) Stop(ctx context.Context) error { return f(ctx) }

// InitFunc brings a module up: it builds the module from what the modules
// before it made, starts its background work under ctx (which ends when the
// process stops) and returns how to stop it, or nil when there is nothing
// to stop.
type InitFunc func(ctx context.Context) (Stopper, error)

type module struct {
	name        string
	init        InitFunc
	deps        []string // always run first
	after       []string // run first when also in the target
	userVisible bool
	help        string
}

// Option refines a registration.
type Option func(*module)

// DependsOn names modules that must run before this one; they are pulled in
// whenever this one runs.
func DependsOn(names ...string) Option {
	return func(m *module) { m.deps = append(m.deps, names...) }
}

// After names modules that run before this one when the target includes
// them: typically a role this module calls in-process when they share a
// process and over the network otherwise.
func After(names ...string) Option {
	return func(m *module) { m.after = append(m.after, names...) }
}

// UserVisible makes the module a -target value, with a line of help.
func UserVisible(help string) Option {
	return func(m *module) { m.userVisible, m.help = true, help }
}

// Manager holds the registered modules.
type Manager struct {
	logger  *slog.Logger
	modules map[string]*module
	order   []string // registration order, for stable listings
	groups  map[string][]string
}

// New returns an empty manager.
func New(logger *slog.Logger) *Manager {
	return &Manager{logger: logger, modules: map[string]*module{}, groups: map[string][]string{}}
}

// Register adds a module. Registering a name twice is a programming error.
func (m *Manager) Register(name string, init InitFunc, opts ...Option) {
	if _, dup := m.modules[name]; dup {
		panic("modules: " + name + " registered twice")
	}
	mod := &module{name: name, init: init}
	for _, o := range opts {
		o(mod)
	}
	m.modules[name] = mod
	m.order = append(m.order, name)
}

// RegisterGroup names a set of modules as one -target value (such as "all").
func (m *Manager) RegisterGroup(name string, members ...string) { m.groups[name] = members }

// Targets lists the -target values with their help, groups first.
func (m *Manager) Targets() []string {
	var out []string
	for name := range m.groups {
		out = append(out, name)
	}
	slices.Sort(out)
	for _, name := range m.order {
		if m.modules[name].userVisible {
			out = append(out, name)
		}
	}
	return out
}

// Help describes each user-visible module in one line.
func (m *Manager) Help() string {
	var b strings.Builder
	for _, name := range m.order {
		if mod := m.modules[name]; mod.userVisible {
			fmt.Fprintf(&b, "  %-10s %s\n", name, mod.help)
		}
	}
	return b.String()
}

// Resolve expands a comma-separated target into the modules to run, in an
// order where every module comes after its dependencies and after the
// modules of its After list that also run.
func (m *Manager) Resolve(target string) ([]string, error) {
	want := map[string]bool{}
	var add func(name string) error
	add = func(name string) error {
		if want[name] {
			return nil
		}
		mod := m.modules[name]
		if mod == nil {
			return fmt.Errorf("modules: unknown module %q", name)
		}
		want[name] = true
		for _, d := range mod.deps {
			if err := add(d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range strings.Split(target, ",") {
		t = strings.TrimSpace(t)
		members, isGroup := m.groups[t]
		switch {
		case isGroup:
			for _, name := range members {
				if err := add(name); err != nil {
					return nil, err
				}
			}
		case m.modules[t] != nil && m.modules[t].userVisible:
			if err := add(t); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown role %q in -target (known: %s)", t, strings.Join(m.Targets(), ", "))
		}
	}
	// Depth-first topological sort in registration order, so that the
	// order is the same on every run.
	var (
		out      []string
		state    = map[string]int{} // 1: visiting, 2: done
		visit    func(name string, path []string) error
		selected = func(name string) bool { return want[name] }
	)
	visit = func(name string, path []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("modules: dependency cycle %s", strings.Join(append(path, name), " -> "))
		}
		state[name] = 1
		mod := m.modules[name]
		for _, d := range mod.deps {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		for _, a := range mod.after {
			if selected(a) {
				if err := visit(a, append(path, name)); err != nil {
					return err
				}
			}
		}
		state[name] = 2
		out = append(out, name)
		return nil
	}
	for _, name := range m.order {
		if want[name] {
			if err := visit(name, nil); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Running is a set of started modules.
type Running struct {
	logger   *slog.Logger
	names    []string
	stoppers []Stopper
}

// Start runs the init of each module in order. If one fails, those already
// started are stopped in reverse and the error names the module.
func (m *Manager) Start(ctx context.Context, order []string) (*Running, error) {
	r := &Running{logger: m.logger}
	for _, name := range order {
		began := time.Now()
		s, err := m.modules[name].init(ctx)
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			return nil, errors.Join(fmt.Errorf("%s: %w", name, err), r.Stop(stopCtx))
		}
		r.names = append(r.names, name)
		r.stoppers = append(r.stoppers, s)
		m.logger.Debug("module started", "module", name, "took", time.Since(began).Round(time.Millisecond))
	}
	return r, nil
}

// Stop stops the started modules in reverse order of their start and joins
// their errors. It may be called more than once.
func (r *Running) Stop(ctx context.Context) error {
	if r == nil {
		return nil
	}
	var errsOut []error
	for i := len(r.stoppers) - 1; i >= 0; i-- {
		s := r.stoppers[i]
		if s == nil {
			continue
		}
		if err := s.Stop(ctx); err != nil {
			r.logger.Error("module stop failed", "module", r.names[i], "err", err)
			errsOut = append(errsOut, fmt.Errorf("%s: %w", r.names[i], err))
		}
	}
	r.stoppers, r.names = nil, nil
	return errors.Join(errsOut...)
}
