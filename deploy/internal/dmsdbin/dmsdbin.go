// Package dmsdbin builds the repository's dmsd for the deploy tests, the
// way `make image` does (static, stripped), and reads its flags.
package dmsdbin

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Root is the repository's root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

var (
	once sync.Once
	dir  string
	err  error
)

// Static builds dmsd as `make image` does (static, stripped: a build
// cache warmed by one serves the other) once per test binary and returns
// its path.
func Static(t testing.TB) string {
	return build(t, "dmsd-static", "CGO_ENABLED=0", "-trimpath", "-ldflags", "-s -w")
}

// Build builds dmsd as `make build` and the other tests do (its packages
// are in the build cache then), for tests that only run it.
func Build(t testing.TB) string { return build(t, "dmsd") }

var built sync.Map // name → *result

type result struct {
	once sync.Once
	path string
	err  error
}

func build(t testing.TB, name string, flags ...string) string {
	t.Helper()
	once.Do(func() { dir, err = os.MkdirTemp("", "dmsdbin") })
	if err != nil {
		t.Fatal(err)
	}
	v, _ := built.LoadOrStore(name, &result{})
	r := v.(*result)
	r.once.Do(func() {
		r.path = filepath.Join(dir, name)
		env := filterEnv(os.Environ(), "GOWORK=")
		args := []string{"build", "-buildvcs=false", "-o", r.path}
		for _, f := range flags {
			if strings.Contains(f, "=") && !strings.HasPrefix(f, "-") {
				env = append(filterEnv(env, strings.SplitN(f, "=", 2)[0]+"="), f)
			} else {
				args = append(args, f)
			}
		}
		cmd := exec.Command("go", append(args, "./cmd/dmsd")...)
		cmd.Dir = filepath.Join(Root(), "services")
		// The deploy module is built with GOWORK=off; dmsd belongs to the
		// repository's workspace.
		cmd.Env = append(env, "GOWORK="+filepath.Join(Root(), "go.work"))
		if out, err := cmd.CombinedOutput(); err != nil {
			r.err = &buildError{err: err, out: string(out)}
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "building dmsd: " + e.err.Error() + "\n" + e.out }

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

var flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9.-]+)`)

// Flags runs `bin -help` and returns the names of the flags it lists.
func Flags(t testing.TB, bin string) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "-help")
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -help exits 2 after printing the usage
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["server.grpc-addr"] {
		t.Fatalf("%s -help lists no -server.grpc-addr:\n%s", bin, out.String())
	}
	return flags
}

// Cleanup removes what Build wrote; a test package's TestMain calls it.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
