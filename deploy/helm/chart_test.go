// Package helm_test renders the chart deploy/helm/dms with Helm's own
// library (the same engine and linter as the helm command, pinned in
// deploy/go.mod; no cluster, no network) for several value sets, decodes
// every manifest strictly into the Kubernetes API types, and checks what the
// chart promises.
package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/opendms/dms/deploy/image"
	"github.com/opendms/dms/deploy/internal/dmsdbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dmsdbin.Cleanup()
	os.Exit(code)
}

const (
	release   = "dms"
	namespace = "messaging"
)

var chartDir = filepath.Join(dmsdbin.Root(), "deploy", "helm", "dms")

// kubeVersion is the cluster the chart is rendered for: the oldest it
// declares (preStop sleep needs 1.30).
var kubeVersion = chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

// manifests are one rendering's objects, strictly decoded.
type manifests struct {
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	secrets      map[string]*corev1.Secret
	configMaps   map[string]*corev1.ConfigMap
	accounts     map[string]*corev1.ServiceAccount
	roles        map[string]*rbacv1.ClusterRole
	bindings     map[string]*rbacv1.ClusterRoleBinding
	other        map[string]map[string]any // custom resources by kind/name
}

func load(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func values(t *testing.T, set []string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, s := range set {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	return vals
}

// render renders the chart as `helm template` does and returns the
// manifests by file.
func render(t *testing.T, set []string) (map[string]string, error) {
	t.Helper()
	c := load(t)
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	if !chartutil.IsCompatibleRange(c.Metadata.KubeVersion, kubeVersion.Version) {
		t.Fatalf("chart's kubeVersion %q excludes %s", c.Metadata.KubeVersion, kubeVersion.Version)
	}
	rv, err := chartutil.ToRenderValues(c, values(t, set), chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, rv)
}

// decode splits the rendering into objects and decodes each strictly: an
// unknown or misspelled field, a duplicate key or a kind this test does
// not know fails.
func decode(t *testing.T, files map[string]string) *manifests {
	t.Helper()
	m := &manifests{statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{}, accounts: map[string]*corev1.ServiceAccount{},
		roles: map[string]*rbacv1.ClusterRole{}, bindings: map[string]*rbacv1.ClusterRoleBinding{}, other: map[string]map[string]any{}}
	for name, content := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(content, -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			js, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v\n%s", name, i, err, doc)
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
				t.Fatalf("%s document %d: %v", name, i, err)
			}
			strict := func(obj any) {
				t.Helper()
				strictErrs, err := sigsjson.UnmarshalStrict(js, obj)
				if err != nil {
					t.Fatalf("%s %s/%s: %v", name, head.Kind, head.Metadata.Name, err)
				}
				if len(strictErrs) > 0 {
					t.Fatalf("%s %s/%s: %v\n%s", name, head.Kind, head.Metadata.Name, strictErrs, doc)
				}
			}
			key := head.Metadata.Name
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 StatefulSet":
				o := &appsv1.StatefulSet{}
				strict(o)
				m.statefulSets[key] = o
			case "v1 Service":
				o := &corev1.Service{}
				strict(o)
				m.services[key] = o
			case "policy/v1 PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				strict(o)
				m.pdbs[key] = o
			case "v1 Secret":
				o := &corev1.Secret{}
				strict(o)
				m.secrets[key] = o
			case "v1 ConfigMap":
				o := &corev1.ConfigMap{}
				strict(o)
				m.configMaps[key] = o
			case "v1 ServiceAccount":
				o := &corev1.ServiceAccount{}
				strict(o)
				m.accounts[key] = o
			case "rbac.authorization.k8s.io/v1 ClusterRole":
				o := &rbacv1.ClusterRole{}
				strict(o)
				m.roles[key] = o
			case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
				o := &rbacv1.ClusterRoleBinding{}
				strict(o)
				m.bindings[key] = o
			case "cert-manager.io/v1 Certificate", "monitoring.coreos.com/v1 ServiceMonitor", "monitoring.coreos.com/v1 PrometheusRule":
				var o map[string]any
				strict(&o)
				m.other[head.Kind+"/"+key] = o
			default:
				t.Fatalf("%s: %s %s is not a kind this test decodes; add it", name, head.APIVersion, head.Kind)
			}
			if head.Metadata.Name == "" {
				t.Errorf("%s: a %s without a name", name, head.Kind)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// lintChart runs Helm's linter (what `helm lint` runs) with the values.
func lintChart(t *testing.T, set []string) {
	t.Helper()
	linter := lint.AllWithKubeVersion(chartDir, values(t, set), namespace, &kubeVersion)
	for _, msg := range linter.Messages {
		if msg.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", msg)
		}
	}
}

// valueSets are the renderings checked: the defaults, an external etcd,
// TLS (cert-manager, and a Secret of one's own) with monitoring, five
// nodes with external Kafka addresses and the zone looked up from the
// node, and a cluster without authentication, Kafka or AMQP.
var valueSets = []struct {
	name string
	set  []string
}{
	{"defaults", nil},
	{"external etcd", []string{"etcd.external.endpoints={etcd-0.example:2379,etcd-1.example:2379,etcd-2.example:2379}", "etcd.external.tlsSecret=etcd-client"}},
	{"tls cert-manager", []string{"tls.enabled=true", "tls.certManager.enabled=true", "tls.certManager.issuerRef.name=cluster-ca", "tls.clientAuth=request",
		"metrics.serviceMonitor.enabled=true", "metrics.dashboard.enabled=true", "metrics.prometheusRule.enabled=true", "auth.clusterSecret=dms-cluster-secret"}},
	{"tls secret", []string{"tls.enabled=true", "tls.existingSecret=dms-certs", "auth.existingSecret=dms-admin"}},
	{"5 nodes", []string{"replicas=5", "kafka.external.enabled=true", "kafka.external.domain=kafka.example.com", "zone.source=nodeLookup"}},
	{"auth off", []string{"auth.enabled=false", "kafka.enabled=false", "amqp.enabled=false", "zone.source=none"}},
}

func TestChart(t *testing.T) {
	flags := dmsdbin.Flags(t, dmsdbin.Build(t))
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			lintChart(t, vs.set)
			files, err := render(t, vs.set)
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, files)
			vals := values(t, vs.set)
			checkNodes(t, m, vals, flags)
			checkEtcd(t, m, vals)
			checkServices(t, m)
			checkTLS(t, m, vals)
			checkSecrets(t, m, vals)
			checkMonitoring(t, m, vals)
		})
	}
}

// get reads a dotted key of the --set values, or def.
func get(vals map[string]any, key string, def any) any {
	var cur any = vals
	for _, k := range strings.Split(key, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return def
		}
		if cur, ok = mm[k]; !ok {
			return def
		}
	}
	return cur
}

func truthy(v any) bool { return v == true || v == "true" }

func node(t *testing.T, m *manifests) (*appsv1.StatefulSet, *corev1.Container) {
	t.Helper()
	sts := m.statefulSets[release]
	if sts == nil {
		t.Fatalf("no StatefulSet %q; have %v", release, keys(m.statefulSets))
	}
	for i := range sts.Spec.Template.Spec.Containers {
		if c := &sts.Spec.Template.Spec.Containers[i]; c.Name == "dmsd" {
			return sts, c
		}
	}
	t.Fatal("no dmsd container")
	return nil, nil
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// args returns the dmsd container's flags by name (the last wins, as in
// dmsd).
func args(c *corev1.Container) map[string]string {
	out := map[string]string{}
	for _, a := range c.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		out[name] = value
	}
	return out
}

func checkNodes(t *testing.T, m *manifests, vals map[string]any, flags map[string]bool) {
	sts, c := node(t, m)
	spec := sts.Spec.Template.Spec
	wantReplicas := 3
	if r, ok := get(vals, "replicas", nil).(int64); ok {
		wantReplicas = int(r)
	}
	if sts.Spec.Replicas == nil || int(*sts.Spec.Replicas) != wantReplicas {
		t.Errorf("replicas %v, want %d", sts.Spec.Replicas, wantReplicas)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("volume claim templates %v, want one named data", sts.Spec.VolumeClaimTemplates)
	}
	podLabels := sts.Spec.Template.Labels
	for k, v := range sts.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("selector %s=%s does not match the pod's labels %v", k, v, podLabels)
		}
	}

	// Hard anti-affinity by host, spread by zone.
	aa := spec.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Fatal("no required pod anti-affinity")
	}
	term := aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	if term.TopologyKey != "kubernetes.io/hostname" || !selects(term.LabelSelector.MatchLabels, podLabels) {
		t.Errorf("anti-affinity %+v does not keep the nodes on separate hosts", term)
	}
	if len(spec.TopologySpreadConstraints) != 1 || spec.TopologySpreadConstraints[0].TopologyKey != "topology.kubernetes.io/zone" ||
		spec.TopologySpreadConstraints[0].MaxSkew != 1 || !selects(spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels, podLabels) {
		t.Errorf("topology spread %+v, want maxSkew 1 by zone over the nodes", spec.TopologySpreadConstraints)
	}

	// The disruption budget: one node down at most.
	pdb := m.pdbs[release]
	if pdb == nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil ||
		!selects(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget %+v, want maxUnavailable 1 over the nodes", pdb)
	}

	// Every flag is one dmsd has, and the listeners' ports are the
	// container's ports.
	a := args(c)
	for name := range a {
		if !flags[name] {
			t.Errorf("the chart passes -%s, which dmsd does not know", name)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	listeners := map[string]string{"grpc": "server.grpc-addr", "http": "server.http-addr", "internal": "server.internal-grpc-addr", "kafka": "kafka.addr", "amqp": "amqp.addr"}
	for port, flag := range listeners {
		addr, given := a[flag]
		if !given {
			t.Errorf("-%s not given: dmsd would listen on its loopback default", flag)
			continue
		}
		if addr == "" {
			if _, open := ports[port]; open {
				t.Errorf("-%s is empty (disabled) but the container declares port %s", flag, port)
			}
			continue
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("-%s=%s: %v", flag, addr, err)
			continue
		}
		if n, _ := strconv.Atoi(p); int32(n) != ports[port] {
			t.Errorf("-%s listens on %s, the container declares %s port %d", flag, p, port, ports[port])
		}
		if int(ports[port]) != image.Ports[port] {
			t.Errorf("%s port %d, the image exposes %d", port, ports[port], image.Ports[port])
		}
	}
	if a["node.name"] != "$(POD_NAME)" || a["node.data-dir"] != "/data" {
		t.Errorf("node name %q, data dir %q: want the pod's name and /data", a["node.name"], a["node.data-dir"])
	}
	if !strings.HasPrefix(a["server.internal-advertise-addr"], "$(POD_NAME)."+release+"-headless."+namespace+".svc.") {
		t.Errorf("internal address %q is not the pod's stable name", a["server.internal-advertise-addr"])
	}
	if _, on := ports["kafka"]; on {
		adv := a["kafka.advertised-addr"]
		if !strings.HasPrefix(adv, "$(POD_NAME).") {
			t.Errorf("Kafka advertised address %q is not per pod", adv)
		}
		if d, ok := get(vals, "kafka.external.domain", "").(string); ok && d != "" && !strings.HasPrefix(adv, "$(POD_NAME)."+d+":") {
			t.Errorf("Kafka advertised address %q, want under the external domain %s", adv, d)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["POD_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME %+v, want the downward API's metadata.name", e)
	}
	switch get(vals, "zone.source", "podLabel") {
	case "podLabel":
		e := env["DMS_ZONE"]
		if a["node.zone"] != "$(DMS_ZONE)" || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.labels['topology.kubernetes.io/zone']" {
			t.Errorf("zone: -node.zone=%q, DMS_ZONE %+v; want the pod's topology label", a["node.zone"], e)
		}
	case "nodeLookup":
		if len(spec.InitContainers) != 1 || a["config.file"] != "/zone/config.yaml" || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
			t.Errorf("nodeLookup: init containers %d, -config.file %q, token mounted %v", len(spec.InitContainers), a["config.file"], spec.AutomountServiceAccountToken)
		}
		role := m.roles[release+"-"+namespace+"-read-nodes"]
		if role == nil || len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"nodes"}) || !slices.Equal(role.Rules[0].Verbs, []string{"get"}) {
			t.Errorf("ClusterRole %+v, want get on nodes only", role)
		}
		if b := m.bindings[release+"-"+namespace+"-read-nodes"]; b == nil || b.Subjects[0].Name != spec.ServiceAccountName {
			t.Errorf("ClusterRoleBinding %+v does not bind the pods' service account %s", b, spec.ServiceAccountName)
		}
	case "none":
		if _, ok := a["node.zone"]; ok {
			t.Errorf("zone.source none still passes -node.zone")
		}
	}
	if truthy(get(vals, "auth.enabled", true)) {
		if _, ok := a["auth.enabled"]; !ok {
			t.Error("auth on by default, but no -auth.enabled")
		}
	} else if _, ok := a["auth.allow-anonymous"]; !ok {
		t.Error("auth off without -auth.allow-anonymous: dmsd refuses to listen on the pod network")
	}
	if a["storage.replication-factor"] != "3" {
		t.Errorf("replication factor %q, want 3", a["storage.replication-factor"])
	}

	// Probes that mean something: started and alive on /healthz, ready on
	// /readyz (joined and caught up); resources on every container.
	if c.StartupProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Fatalf("dmsd probes: startup %v, liveness %v, readiness %v", c.StartupProbe, c.LivenessProbe, c.ReadinessProbe)
	}
	for _, p := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"startup", c.StartupProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.p.HTTPGet == nil || p.p.HTTPGet.Path != p.path || p.p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on the http port", p.name, p.p.ProbeHandler, p.path)
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Error("no preStop pause before SIGTERM")
	}
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds < 30 {
		t.Errorf("termination grace %v: dmsd needs time to hand its leaderships over", spec.TerminationGracePeriodSeconds)
	}
	for _, ctr := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		checkResources(t, "dmsd pod: "+ctr.Name, ctr)
		if sc := ctr.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: security context %+v, want no privilege escalation and a read-only root", ctr.Name, sc)
		}
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != image.UID {
		t.Errorf("pod security context %+v, want non-root %d (the image's user)", psc, image.UID)
	}
	if e := env["GOMEMLIMIT"]; e.Value == "" {
		t.Error("no GOMEMLIMIT")
	} else if limit := c.Resources.Limits.Memory().Value(); mustAtoi(t, e.Value) >= limit {
		t.Errorf("GOMEMLIMIT %s is not below the memory limit %d", e.Value, limit)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkResources(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v, want CPU and memory requests and a memory limit", what, r)
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkEtcd(t *testing.T, m *manifests, vals map[string]any) {
	_, c := node(t, m)
	endpoints := strings.Split(args(c)["etcd.endpoints"], ",")
	etcd := m.statefulSets[release+"-etcd"]
	if ext, ok := get(vals, "etcd.external.endpoints", nil).([]any); ok {
		if etcd != nil {
			t.Error("external etcd given, and the chart still runs its own")
		}
		var want []string
		for _, e := range ext {
			want = append(want, e.(string))
		}
		if !slices.Equal(endpoints, want) {
			t.Errorf("-etcd.endpoints %v, want %v", endpoints, want)
		}
		a := args(c)
		secret, _ := get(vals, "etcd.external.tlsSecret", "").(string)
		mounted := ""
		sts, _ := node(t, m)
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Name == "etcd-tls" && v.Secret != nil {
				mounted = v.Secret.SecretName
			}
		}
		if mounted != secret || (secret != "") != (a["etcd.ca-file"] == "/etc/dms/etcd-tls/ca.crt" && a["etcd.cert-file"] == "/etc/dms/etcd-tls/tls.crt" && a["etcd.key-file"] == "/etc/dms/etcd-tls/tls.key") {
			t.Errorf("etcd TLS Secret %q: mounted %q, flags ca %q cert %q key %q", secret, mounted, a["etcd.ca-file"], a["etcd.cert-file"], a["etcd.key-file"])
		}
		return
	}
	if etcd == nil {
		t.Fatal("no etcd of the chart's own and no external endpoints")
	}
	if *etcd.Spec.Replicas != 3 || len(endpoints) != 3 {
		t.Errorf("etcd: %d members, %d endpoints given to dmsd; want 3", *etcd.Spec.Replicas, len(endpoints))
	}
	if m.pdbs[release+"-etcd"] == nil {
		t.Error("no disruption budget for etcd")
	}
	ec := etcd.Spec.Template.Spec.Containers[0]
	checkResources(t, "etcd", ec)
	if ec.LivenessProbe == nil || ec.ReadinessProbe == nil {
		t.Error("etcd without probes")
	}
	var initial string
	for _, a := range ec.Command {
		if v, ok := strings.CutPrefix(a, "--initial-cluster="); ok {
			initial = v
		}
	}
	for i, e := range endpoints {
		host, _, _ := net.SplitHostPort(e)
		member := fmt.Sprintf("%s-etcd-%d", release, i)
		if !strings.HasPrefix(host, member+"."+release+"-etcd-headless."+namespace+".svc.") || !strings.Contains(initial, member+"=http://"+member+".") {
			t.Errorf("endpoint %s or the initial cluster %s does not name member %s", e, initial, member)
		}
	}
	if hl := m.services[release+"-etcd-headless"]; hl == nil || hl.Spec.ClusterIP != "None" {
		t.Error("no headless Service for etcd")
	}
}

func checkServices(t *testing.T, m *manifests) {
	sts, c := node(t, m)
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	hl := m.services[release+"-headless"]
	if hl == nil || hl.Spec.ClusterIP != "None" || !hl.Spec.PublishNotReadyAddresses || sts.Spec.ServiceName != hl.Name {
		t.Fatalf("headless Service %+v: want clusterIP None, not-ready pods published, the StatefulSet's serviceName", hl)
	}
	client := m.services[release]
	if client == nil {
		t.Fatal("no client Service")
	}
	want := []string{"grpc", "http"}
	for _, p := range []string{"kafka", "amqp"} {
		if ports[p] {
			want = append(want, p)
		}
	}
	var got []string
	for _, p := range client.Spec.Ports {
		got = append(got, p.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("client Service ports %v, want %v", got, want)
	}
	for name, svc := range m.services {
		if strings.Contains(name, "etcd") {
			continue
		}
		if !selects(svc.Spec.Selector, sts.Spec.Template.Labels) && svc.Spec.Selector["statefulset.kubernetes.io/pod-name"] == "" {
			t.Errorf("Service %s selects %v, not the nodes", name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			if !ports[p.TargetPort.String()] {
				t.Errorf("Service %s port %s targets %s, which the container does not declare", name, p.Name, p.TargetPort.String())
			}
		}
	}
}

func checkTLS(t *testing.T, m *manifests, vals map[string]any) {
	sts, c := node(t, m)
	a := args(c)
	if !truthy(get(vals, "tls.enabled", false)) {
		if _, on := a["tls.cert-file"]; on || c.ReadinessProbe.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			t.Error("TLS off, yet TLS flags or HTTPS probes")
		}
		return
	}
	secret := ""
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == "tls" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	want := get(vals, "tls.existingSecret", release+"-tls")
	if secret != want {
		t.Errorf("TLS volume from Secret %q, want %q", secret, want)
	}
	for _, f := range []string{"tls.cert-file", "tls.key-file", "internal.tls.cert-file", "internal.tls.key-file", "internal.tls.ca-file"} {
		if !strings.HasPrefix(a[f], "/etc/dms/tls/") {
			t.Errorf("TLS on, -%s=%q", f, a[f])
		}
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("TLS on, probe scheme %s", p.HTTPGet.Scheme)
		}
	}
	cert := m.other["Certificate/"+release]
	if truthy(get(vals, "tls.certManager.enabled", false)) {
		if cert == nil {
			t.Fatal("cert-manager on, no Certificate")
		}
		spec := cert["spec"].(map[string]any)
		names := fmt.Sprint(spec["dnsNames"])
		if spec["secretName"] != release+"-tls" || !strings.Contains(names, "*."+release+"-headless."+namespace+".svc.cluster.local") || !strings.Contains(fmt.Sprint(spec["usages"]), "client auth") {
			t.Errorf("Certificate spec %v: want the Secret %s-tls, every pod's name, client auth for the nodes' mutual TLS", spec, release)
		}
	} else if cert != nil {
		t.Error("a Certificate without cert-manager")
	}
}

// checkSecrets: nothing secret in values.yaml or in the given values, and
// every secret a container sees comes from a Secret, not a literal.
func checkSecrets(t *testing.T, m *manifests, vals map[string]any) {
	_, c := node(t, m)
	for _, e := range c.Env {
		if regexp.MustCompile(`(?i)password|secret|token|key`).MatchString(e.Name) && e.Value != "" {
			t.Errorf("env %s is a literal; secrets come from a Secret", e.Name)
		}
	}
	auth := truthy(get(vals, "auth.enabled", true))
	existing, _ := get(vals, "auth.existingSecret", "").(string)
	generated := m.secrets[release+"-auth"]
	switch {
	case auth && existing == "":
		if generated == nil || len(generated.Data["admin-password"]) < 24 {
			t.Fatalf("auth on without a Secret of one's own: generated Secret %+v", generated)
		}
		if generated.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Error("the generated admin password would go with an uninstall")
		}
	case generated != nil:
		t.Error("a generated admin Secret when none is needed")
	}
	if auth {
		var ref *corev1.SecretKeySelector
		for _, e := range c.Env {
			if e.Name == "DMS_ADMIN_PASSWORD" && e.ValueFrom != nil {
				ref = e.ValueFrom.SecretKeyRef
			}
		}
		want := existing
		if want == "" {
			want = release + "-auth"
		}
		if ref == nil || ref.Name != want || ref.Key != "admin-password" {
			t.Errorf("DMS_ADMIN_PASSWORD from %+v, want Secret %s key admin-password", ref, want)
		}
	}
}

func checkMonitoring(t *testing.T, m *manifests, vals map[string]any) {
	sm := m.other["ServiceMonitor/"+release]
	if !truthy(get(vals, "metrics.serviceMonitor.enabled", false)) {
		if sm != nil {
			t.Error("ServiceMonitor while not asked for")
		}
		return
	}
	if sm == nil {
		t.Fatal("metrics.serviceMonitor.enabled without a ServiceMonitor")
	}
	sel := sm["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
	var matched []string
	for name, svc := range m.services {
		ok := true
		for k, v := range sel {
			ok = ok && svc.Labels[k] == v
		}
		if ok {
			matched = append(matched, name)
		}
	}
	if !slices.Equal(matched, []string{release + "-headless"}) {
		t.Errorf("the ServiceMonitor selects Services %v, want the headless one only (each node once)", matched)
	}
	cm := m.configMaps[release+"-dashboards"]
	if truthy(get(vals, "metrics.dashboard.enabled", false)) {
		if cm == nil || !json.Valid([]byte(cm.Data["dms-dashboard.json"])) {
			t.Error("metrics.dashboard.enabled, but no ConfigMap with dms-dashboard.json")
		}
	} else if cm != nil {
		t.Error("a dashboards ConfigMap while not asked for")
	}
	rule := m.other["PrometheusRule/"+release]
	if truthy(get(vals, "metrics.prometheusRule.enabled", false)) {
		groups, _ := rule["spec"].(map[string]any)["groups"].([]any)
		if len(groups) == 0 || !strings.Contains(fmt.Sprint(groups), "{{ $value }}") {
			t.Errorf("PrometheusRule groups %v: want the rules of dms-alerts.yaml, with Prometheus's {{ $value }} left as it is", groups)
		}
	} else if rule != nil {
		t.Error("a PrometheusRule while not asked for")
	}
}

// TestChartRefusesBadValues: values that cannot work stop the rendering
// with a message saying what to change.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"replicas=2"}, "must be at least cluster.replicationFactor"},
		{[]string{"tls.enabled=true"}, "tls.existingSecret (or tls.certManager.enabled) is required"},
		{[]string{"tls.enabled=true", "tls.certManager.enabled=true"}, "tls.certManager.issuerRef.name is required"},
		{[]string{"zone.source=guess"}, "podLabel, nodeLookup or none"},
		{[]string{"resources.limits.memory=4G"}, "give it in Mi or Gi"},
	} {
		_, err := render(t, tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %v: %v, want an error saying %q", tc.set, err, tc.want)
		}
	}
}

// TestValuesDocumented: values.yaml holds no secret (every key that names
// one is empty or names a Secret) and every key has a comment.
func TestValuesDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	keyLine := regexp.MustCompile(`^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$`)
	secretish := regexp.MustCompile(`(?i)password|token|privatekey|^key$`)
	for i, l := range lines {
		mm := keyLine.FindStringSubmatch(l)
		if mm == nil {
			continue
		}
		indent, key, value := mm[1], mm[2], strings.TrimSpace(mm[3])
		// A key is documented by the comment lines right above it, or by
		// a comment on the line itself; a block's first key may share the
		// comment of its block.
		documented := strings.Contains(value, "#")
		for j := i - 1; j >= 0 && !documented; j-- {
			prev := strings.TrimSpace(lines[j])
			if strings.HasPrefix(prev, "#") {
				documented = true
			} else if pm := keyLine.FindStringSubmatch(lines[j]); pm != nil && len(pm[1]) < len(indent) && strings.TrimSpace(pm[3]) == "" {
				continue // the parent block's key: look above it
			} else {
				break
			}
		}
		if !documented {
			t.Errorf("values.yaml:%d: %s has no comment", i+1, key)
		}
		if secretish.MatchString(key) && value != "" && value != `""` && value != "{}" {
			t.Errorf("values.yaml:%d: %s holds a value; secrets come from Secrets", i+1, key)
		}
	}
	var vals map[string]any
	if err := yaml.UnmarshalStrict(data, &vals); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	if bytes.Contains(data, []byte("BEGIN ")) {
		t.Error("values.yaml holds PEM data")
	}
}

// TestDashboardsAreCopies: the chart's dashboard and alerting rules are
// the files under deploy/observability, unchanged (links to them, which a
// plain copy replacing a link would break).
func TestDashboardsAreCopies(t *testing.T) {
	copies, _ := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	alerts, _ := filepath.Glob(filepath.Join(chartDir, "alerts", "*.yaml"))
	copies = append(copies, alerts...)
	if len(copies) < 2 {
		t.Errorf("the chart holds %v; want the dashboard and the alerting rules of deploy/observability", copies)
	}
	for _, c := range copies {
		matches, _ := filepath.Glob(filepath.Join(dmsdbin.Root(), "deploy", "observability", "**", filepath.Base(c)))
		top, _ := filepath.Glob(filepath.Join(dmsdbin.Root(), "deploy", "observability", filepath.Base(c)))
		matches = append(matches, top...)
		if len(matches) == 0 {
			t.Errorf("%s has no original under deploy/observability", filepath.Base(c))
			continue
		}
		a, _ := os.ReadFile(c)
		b, _ := os.ReadFile(matches[0])
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: copy it again", c, matches[0])
		}
	}
}
