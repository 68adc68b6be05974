// Tests of the files for running DMS without Kubernetes: the compose file
// and the systemd units. Every dmsd flag they pass must be one `dmsd -help`
// lists, and the addresses must fit together.
package deploy_test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/opendms/dms/deploy/internal/dmsdbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dmsdbin.Cleanup()
	os.Exit(code)
}

// composeService has the keys the compose file may use; decoding is
// strict, so that a key this test does not check is noticed.
type composeService struct {
	Image       string            `json:"image"`
	Restart     string            `json:"restart"`
	Command     []string          `json:"command"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	Environment map[string]string `json:"environment"`
	Ulimits     map[string]any    `json:"ulimits"`
	Hostname    string            `json:"hostname"`
	DependsOn   []string          `json:"depends_on"`
	StopSignal  string            `json:"stop_signal"`
	StopGrace   string            `json:"stop_grace_period"`
	MemLimit    string            `json:"mem_limit"`
}

type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
	XDmsd    map[string]any            `json:"x-dmsd"`
}

// flagArgs splits -name=value arguments.
func flagArgs(t *testing.T, what string, args []string, known map[string]bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: argument %q is not a -flag=value", what, a)
			continue
		}
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if !known[name] {
			t.Errorf("%s passes -%s, which dmsd does not know", what, name)
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s passes -%s twice", what, name)
		}
		out[name] = value
	}
	return out
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

// TestCompose: three nodes and etcd; every flag real; each published port
// reaches the listener it names; node names, zones and advertised addresses
// distinct and consistent.
func TestCompose(t *testing.T) {
	known := dmsdbin.Flags(t, dmsdbin.Build(t))
	data, err := os.ReadFile(filepath.Join(dmsdbin.Root(), "deploy", "compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.UnmarshalStrict(data, &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	etcd, ok := cf.Services["etcd"]
	if !ok {
		t.Fatal("no etcd service")
	}
	var etcdClient string
	for _, a := range etcd.Command {
		if v, ok := strings.CutPrefix(a, "--listen-client-urls="); ok {
			etcdClient = v[strings.LastIndex(v, ":")+1:]
		}
	}
	names, zones := map[string]bool{}, map[string]bool{}
	nodes := 0
	for name, svc := range cf.Services {
		if name == "etcd" {
			continue
		}
		nodes++
		a := flagArgs(t, name, svc.Command, known)
		if a["node.name"] != name || svc.Hostname != name {
			t.Errorf("%s: node name %q, host name %q; want the service's name", name, a["node.name"], svc.Hostname)
		}
		names[a["node.name"]], zones[a["node.zone"]] = true, true
		if a["etcd.endpoints"] != "etcd:"+etcdClient {
			t.Errorf("%s: -etcd.endpoints=%s, want etcd:%s", name, a["etcd.endpoints"], etcdClient)
		}
		if a["server.internal-advertise-addr"] != name+":"+port(t, a["server.internal-grpc-addr"]) {
			t.Errorf("%s: internal address %s is not %s:<internal port>", name, a["server.internal-advertise-addr"], name)
		}
		if a["storage.replication-factor"] != "3" || a["node.data-dir"] != "/data" || !slices.Contains(svc.Volumes, name+":/data") {
			t.Errorf("%s: replication factor %s, data dir %s, volumes %v", name, a["storage.replication-factor"], a["node.data-dir"], svc.Volumes)
		}
		if _, ok := a["auth.enabled"]; !ok {
			t.Errorf("%s listens on every address without -auth.enabled", name)
		}
		// host:container pairs; each container port must be a listener.
		published := map[string]string{} // container port → host port
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			published[parts[len(parts)-1]] = parts[len(parts)-2]
		}
		for _, flag := range []string{"server.grpc-addr", "server.http-addr", "kafka.addr", "amqp.addr"} {
			if _, ok := published[port(t, a[flag])]; !ok {
				t.Errorf("%s: -%s=%s is not published (ports %v)", name, flag, a[flag], svc.Ports)
			}
		}
		adv := a["kafka.advertised-addr"]
		if published[port(t, a["kafka.addr"])] != port(t, adv) || !strings.HasPrefix(adv, "localhost:") {
			t.Errorf("%s: Kafka advertises %s but its listener %s is published on host port %s", name, adv, a["kafka.addr"], published[port(t, a["kafka.addr"])])
		}
		if svc.Image == "" || len(svc.DependsOn) == 0 || svc.Restart != "on-failure" || svc.Ulimits["nofile"] == nil {
			t.Errorf("%s: image %q, depends_on %v, restart %q, ulimits %v", name, svc.Image, svc.DependsOn, svc.Restart, svc.Ulimits)
		}
		if pw := svc.Environment["DMS_ADMIN_PASSWORD"]; !strings.HasPrefix(pw, "${") {
			t.Errorf("%s: DMS_ADMIN_PASSWORD is %q in the file; it comes from the environment", name, pw)
		}
	}
	if nodes != 3 || len(names) != 3 || len(zones) != 3 {
		t.Errorf("%d nodes, %d names, %d zones; want 3 distinct", nodes, len(names), len(zones))
	}
	hostPorts := map[string]string{}
	for name, svc := range cf.Services {
		for _, p := range svc.Ports {
			hp := strings.Split(p, ":")[0]
			if other, dup := hostPorts[hp]; dup {
				t.Errorf("host port %s published by %s and %s", hp, other, name)
			}
			hostPorts[hp] = name
		}
	}
}

// unit reads a systemd unit file into section → key → values.
func unit(t *testing.T, p string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s: %q is not key=value in a section", p, l)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// TestSystemdUnit: systemd-analyze verify finds nothing to say about the
// unit (run against the built dmsd and the example environment file), the
// unit has the limits, restart policy and hardening it promises, and the
// example flags are dmsd's.
func TestSystemdUnit(t *testing.T) {
	bin := dmsdbin.Build(t)
	known := dmsdbin.Flags(t, bin)
	dir := filepath.Join(dmsdbin.Root(), "deploy", "systemd")
	u := unit(t, filepath.Join(dir, "dmsd.service"))
	svc := u["Service"]
	want := map[string]string{
		"Restart": "on-failure", "LimitNOFILE": "1048576", "User": "dms", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "", "StateDirectory": "dms", "KillSignal": "SIGTERM",
		"SystemCallFilter": "@system-service", "MemoryDenyWriteExecute": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s=%v, want %q", k, got, v)
		}
	}
	if got := svc["ExecStart"]; len(got) != 1 || got[0] != "/usr/local/bin/dmsd $DMSD_FLAGS" {
		t.Errorf("ExecStart %v", got)
	}

	// The example environment file's flags.
	data, err := os.ReadFile(filepath.Join(dir, "dmsd.env"))
	if err != nil {
		t.Fatal(err)
	}
	var flags map[string]string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "DMSD_FLAGS="); ok {
			flags = flagArgs(t, "dmsd.env", strings.Fields(v), known)
		}
		if v, ok := strings.CutPrefix(l, "DMS_ADMIN_PASSWORD="); ok && v != "" {
			t.Errorf("dmsd.env ships a password")
		}
	}
	if flags["node.data-dir"] != "/var/lib/dms" || flags["storage.replication-factor"] != "3" || len(strings.Split(flags["etcd.endpoints"], ",")) != 3 {
		t.Errorf("dmsd.env flags %v: want /var/lib/dms (the unit's StateDirectory), replication factor 3, three etcd endpoints", flags)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit is checked by parsing only")
		return
	}
	tmp := t.TempDir()
	text, err := os.ReadFile(filepath.Join(dir, "dmsd.service"))
	if err != nil {
		t.Fatal(err)
	}
	patched := strings.NewReplacer("/usr/local/bin/dmsd", bin, "EnvironmentFile=/etc/dms/dmsd.env", "EnvironmentFile="+filepath.Join(dir, "dmsd.env")).Replace(string(text))
	p := filepath.Join(tmp, "dmsd.service")
	if err := os.WriteFile(p, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
