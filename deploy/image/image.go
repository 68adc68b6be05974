// Package image assembles the DMS container image without a Docker daemon:
// static binaries on an empty base, as an OCI image built with
// go-containerregistry. The same inputs give the same image digest: every
// file has the build's fixed time, entries are sorted, owners are numeric.
//
// The Dockerfile beside it (deploy/Dockerfile) builds the same image for
// people who have Docker; the test checks that both declare the same user,
// entrypoint, command, volume, ports and labels (Spec is the reference).
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: a numeric id, so that Kubernetes' runAsNonRoot can
// verify it without reading /etc/passwd; 65532 is the "nonroot" user of the
// distroless images, which many clusters' policies already expect.
const (
	UID      = 65532
	User     = "65532:65532"
	UserName = "dms"
	DataDir  = "/data"
	BinDir   = "/usr/local/bin"
)

// Ports are the listeners the image's default command opens, by name:
// public gRPC, HTTP (REST, /healthz, /readyz, /metrics), the internal gRPC
// port the nodes dial each other on, Kafka and AMQP 0-9-1. The Helm chart,
// the compose file and the systemd units use the same numbers.
var Ports = map[string]int{"grpc": 9090, "http": 8080, "internal": 9091, "kafka": 9092, "amqp": 5672}

// Spec is everything of the image's configuration that the Dockerfile must
// declare the same way.
type Spec struct {
	User       string
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	Volumes    []string
	Ports      []string // "9090/tcp", sorted
	Labels     map[string]string
}

// Inputs are what one build puts in the image.
type Inputs struct {
	// Binaries by name (dmsd, dmsctl), each a static executable's path;
	// they go to /usr/local/bin.
	Binaries map[string]string
	Version  string    // org.opencontainers.image.version
	Revision string    // the commit, org.opencontainers.image.revision
	Created  time.Time // every file's time and the image's creation time (the commit's time keeps builds reproducible)
}

// SpecFor returns the configuration of an image built from in.
func SpecFor(in Inputs) Spec {
	var ports []string
	for _, p := range Ports {
		ports = append(ports, fmt.Sprintf("%d/tcp", p))
	}
	slices.Sort(ports)
	return Spec{
		User:       User,
		Entrypoint: []string{BinDir + "/dmsd"},
		// One node with every role and an embedded etcd, reachable from
		// outside the container: that needs authentication (dmsd refuses
		// non-loopback listeners without it); the first start writes the
		// generated admin password to /data/admin-password unless
		// DMS_ADMIN_PASSWORD is set. A cluster passes its own flags.
		Cmd: []string{
			"-node.data-dir=" + DataDir,
			fmt.Sprintf("-server.grpc-addr=0.0.0.0:%d", Ports["grpc"]),
			fmt.Sprintf("-server.http-addr=0.0.0.0:%d", Ports["http"]),
			fmt.Sprintf("-kafka.addr=0.0.0.0:%d", Ports["kafka"]),
			fmt.Sprintf("-amqp.addr=0.0.0.0:%d", Ports["amqp"]),
			"-auth.enabled",
		},
		WorkingDir: DataDir,
		Volumes:    []string{DataDir},
		Ports:      ports,
		Labels: map[string]string{
			"org.opencontainers.image.title":       "dms",
			"org.opencontainers.image.description": "DMS, a distributed message service (dmsd, dmsctl)",
			"org.opencontainers.image.source":      "https://github.com/opendms/dms",
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.version":     in.Version,
			"org.opencontainers.image.revision":    in.Revision,
		},
	}
}

// Build assembles the image: a base layer (/etc/passwd and /etc/group with
// the dms user, /data owned by it, /tmp) and a layer of the binaries.
func Build(in Inputs) (v1.Image, error) {
	if _, ok := in.Binaries["dmsd"]; !ok {
		return nil, fmt.Errorf("image: no dmsd binary given")
	}
	base, err := layer(in.Created, baseFiles())
	if err != nil {
		return nil, err
	}
	var bins []file
	for name, p := range in.Binaries {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		bins = append(bins, file{name: BinDir + "/" + name, mode: 0o755, data: data})
	}
	binLayer, err := layer(in.Created, bins)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: in.Created}, CreatedBy: "dms-image: /etc/passwd, /etc/group, /data, /tmp", Comment: "base"}, MediaType: types.OCILayer},
		mutate.Addendum{Layer: binLayer, History: v1.History{Created: v1.Time{Time: in.Created}, CreatedBy: "dms-image: " + strings.Join(sortedKeys(in.Binaries), ", "), Comment: "binaries"}, MediaType: types.OCILayer},
	)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	spec := SpecFor(in)
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: in.Created}
	cf.Config.User = spec.User
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.WorkingDir = spec.WorkingDir
	cf.Config.Env = []string{"PATH=" + BinDir + ":/usr/bin:/bin"}
	cf.Config.Volumes = map[string]struct{}{}
	for _, v := range spec.Volumes {
		cf.Config.Volumes[v] = struct{}{}
	}
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range spec.Ports {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	cf.Config.Labels = spec.Labels
	cf.Config.StopSignal = "SIGTERM" // dmsd hands its leaderships over on SIGTERM
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// WriteTarball writes img as a tarball that `docker load` and `podman load`
// read, tagged ref (for example dms:0.1.0).
func WriteTarball(p, ref string, img v1.Image) error {
	tag, err := parseTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(p, tag, img)
}

// WriteLayout writes img as an OCI image layout in dir (what skopeo,
// crane, podman and containerd import as oci:DIR), annotated with ref.
func WriteLayout(dir, ref string, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}

func parseTag(ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image: tag %q: %w", ref, err)
	}
	return tag, nil
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// file is one entry of a layer; a name ending in / is a directory.
type file struct {
	name     string
	mode     int64
	uid, gid int
	data     []byte
}

func baseFiles() []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:DMS:%s:/sbin/nologin\n", UserName, UID, UID, DataDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, UID)
	return []file{
		{name: "etc/", mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		// Go's resolver reads it to look at /etc/hosts before DNS, as
		// glibc does; without it a pod's /etc/hosts entries come second.
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "data/", mode: 0o750, uid: UID, gid: UID},
		{name: "tmp/", mode: 0o1777},
	}
}

// layer writes files as an uncompressed tar, sorted by name, with their
// parent directories, every time set to created and numeric owners only.
func layer(created time.Time, files []file) (v1.Layer, error) {
	byName := map[string]file{}
	for _, f := range files {
		f.name = strings.TrimPrefix(f.name, "/")
		byName[f.name] = f
		for dir := path.Dir(strings.TrimSuffix(f.name, "/")); dir != "."; dir = path.Dir(dir) {
			if _, ok := byName[dir+"/"]; !ok {
				byName[dir+"/"] = file{name: dir + "/", mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := byName[n]
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: created.UTC().Truncate(time.Second), Format: tar.FormatUSTAR}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}
