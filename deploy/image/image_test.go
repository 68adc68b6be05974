package image_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/opendms/dms/deploy/image"
	"github.com/opendms/dms/deploy/internal/dmsdbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dmsdbin.Cleanup()
	os.Exit(code)
}

var created = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// TestImage builds the image from a static dmsd, writes the tarball and the
// OCI layout, reads the tarball back and checks its configuration, its
// layers' entries, and that the dmsd in the layer runs.
func TestImage(t *testing.T) {
	bin := dmsdbin.Static(t)
	checkStatic(t, bin)
	in := image.Inputs{Binaries: map[string]string{"dmsd": bin}, Version: "1.2.3", Revision: "0123abcd", Created: created}
	img, err := image.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "dms.tar")
	if err := image.WriteTarball(tarPath, "dms:1.2.3", img); err != nil {
		t.Fatal(err)
	}
	if err := image.WriteLayout(filepath.Join(dir, "oci"), "dms:1.2.3", img); err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The tarball keeps the configuration (and so the layers' diff ids)
	// byte for byte; its manifest is rebuilt by whoever loads it.
	wantConfig, _ := img.ConfigName()
	if got, _ := loaded.ConfigName(); got != wantConfig {
		t.Errorf("tarball image config %s, built %s", got, wantConfig)
	}
	want, _ := img.Digest()
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := idx.IndexManifest(); err != nil || len(m.Manifests) != 1 || m.Manifests[0].Digest != want {
		t.Errorf("OCI layout index: %+v, %v; want the one image %s", m, err, want)
	}

	cf, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want the numeric 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/dmsd"}) {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if _, ok := c.Volumes["/data"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("volumes %v, want /data", c.Volumes)
	}
	if c.Labels["org.opencontainers.image.version"] != "1.2.3" || c.Labels["org.opencontainers.image.revision"] != "0123abcd" {
		t.Errorf("labels %v lack the version and the commit", c.Labels)
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("created %s, want %s", cf.Created.Time, created)
	}
	for _, p := range []string{"9090/tcp", "8080/tcp", "9091/tcp", "9092/tcp", "5672/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed (%v)", p, c.ExposedPorts)
		}
	}

	files := layers(t, loaded)
	passwd := string(files["etc/passwd"].data)
	if !regexp.MustCompile(`(?m)^dms:x:65532:65532:`).MatchString(passwd) {
		t.Errorf("/etc/passwd has no dms user 65532:\n%s", passwd)
	}
	if h := files["data/"].hdr; h == nil || h.Uid != 65532 || h.Typeflag != tar.TypeDir {
		t.Errorf("/data: %+v, want a directory owned by 65532", h)
	}
	if h := files["tmp/"].hdr; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp: %+v, want mode 1777", h)
	}
	d := files["usr/local/bin/dmsd"]
	if d.hdr == nil || d.hdr.Mode != 0o755 || d.hdr.Uid != 0 {
		t.Fatalf("/usr/local/bin/dmsd: %+v, want mode 0755 owned by root", d.hdr)
	}

	// The binary in the layer runs, and knows every flag of the image's
	// command.
	extracted := filepath.Join(dir, "dmsd-from-layer")
	if err := os.WriteFile(extracted, d.data, 0o755); err != nil {
		t.Fatal(err)
	}
	flags := dmsdbin.Flags(t, extracted)
	for _, arg := range c.Cmd {
		name := strings.TrimPrefix(strings.SplitN(arg, "=", 2)[0], "-")
		if !flags[name] {
			t.Errorf("the image's command passes -%s, which dmsd does not know", name)
		}
	}

	// Reproducible: the same inputs give the same digest.
	again, err := image.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Digest(); got != want {
		t.Errorf("second build has digest %s, first %s", got, want)
	}
}

func checkStatic(t *testing.T, bin string) {
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked; the image has no C library", bin)
		}
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// layers reads every layer of img, checks that each is sorted, has fixed
// times and numeric owners, and returns the entries by name.
func layers(t *testing.T, img v1.Image) map[string]entry {
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Errorf("%d layers, want 2 (base, binaries)", len(ls))
	}
	files := map[string]entry{}
	for i, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var names []string
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			if !h.ModTime.Equal(created) {
				t.Errorf("layer %d: %s has time %s, want the build's %s", i, h.Name, h.ModTime, created)
			}
			if h.Uname != "" || h.Gname != "" {
				t.Errorf("layer %d: %s has owner names %q:%q; numeric ids only", i, h.Name, h.Uname, h.Gname)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = entry{hdr: h, data: data}
		}
		rc.Close()
		if !slices.IsSorted(names) {
			t.Errorf("layer %d entries not sorted: %v", i, names)
		}
	}
	return files
}

// TestDockerfileMatches checks that deploy/Dockerfile's final stage declares
// what the daemonless build does.
func TestDockerfileMatches(t *testing.T) {
	df := parseDockerfile(t, filepath.Join(dmsdbin.Root(), "deploy", "Dockerfile"))
	spec := image.SpecFor(image.Inputs{Version: "${VERSION}", Revision: "${REVISION}"})
	if df.user != spec.User {
		t.Errorf("Dockerfile USER %q, image %q", df.user, spec.User)
	}
	if !slices.Equal(df.entrypoint, spec.Entrypoint) {
		t.Errorf("Dockerfile ENTRYPOINT %q, image %q", df.entrypoint, spec.Entrypoint)
	}
	if !slices.Equal(df.cmd, spec.Cmd) {
		t.Errorf("Dockerfile CMD %q, image %q", df.cmd, spec.Cmd)
	}
	if df.workdir != spec.WorkingDir {
		t.Errorf("Dockerfile WORKDIR %q, image %q", df.workdir, spec.WorkingDir)
	}
	if !slices.Equal(df.volumes, spec.Volumes) {
		t.Errorf("Dockerfile VOLUME %q, image %q", df.volumes, spec.Volumes)
	}
	slices.Sort(df.ports)
	if !slices.Equal(df.ports, spec.Ports) {
		t.Errorf("Dockerfile EXPOSE %q, image %q", df.ports, spec.Ports)
	}
	if !maps.Equal(df.labels, spec.Labels) {
		t.Errorf("Dockerfile LABEL %v, image %v", df.labels, spec.Labels)
	}
}

type dockerfile struct {
	user, workdir            string
	entrypoint, cmd, volumes []string
	ports                    []string
	labels                   map[string]string
}

// parseDockerfile reads the instructions of the last stage that this test
// compares; it understands continuation lines, the JSON forms and
// KEY="VALUE" pairs, which is all the file uses.
func parseDockerfile(t *testing.T, p string) dockerfile {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var df dockerfile
	jsonList := func(s string) []string {
		var v []string
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("Dockerfile: %q is not a JSON list: %v", s, err)
		}
		return v
	}
	pair := regexp.MustCompile(`([A-Za-z0-9._-]+)="([^"]*)"`)
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			df = dockerfile{labels: map[string]string{}}
		case "USER":
			df.user = rest
		case "WORKDIR":
			df.workdir = rest
		case "ENTRYPOINT":
			df.entrypoint = jsonList(rest)
		case "CMD":
			df.cmd = jsonList(rest)
		case "VOLUME":
			df.volumes = jsonList(rest)
		case "EXPOSE":
			df.ports = append(df.ports, strings.Fields(rest)...)
		case "LABEL":
			for _, m := range pair.FindAllStringSubmatch(rest, -1) {
				df.labels[m[1]] = m[2]
			}
		}
	}
	return df
}
