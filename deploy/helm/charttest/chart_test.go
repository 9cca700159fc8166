package charttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../certportal"

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Schema == nil {
		t.Fatal("the chart has no values.schema.json")
	}
	return c
}

// render is `helm template`: values coalesced with the chart's, checked
// against values.schema.json, templates rendered.
func render(t *testing.T, c *chart.Chart, vals map[string]any) (map[string]string, error) {
	t.Helper()
	rv, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{Name: "cp", Namespace: "certs", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, rv)
}

func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := chartutil.ReadValues(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// objects are the rendered manifests decoded strictly: an unknown field
// (a typo, a field in the wrong place) fails, as kubectl's strict
// validation would.
type objects struct {
	Deployment      *appsv1.Deployment
	Service         *corev1.Service
	ConfigMap       *corev1.ConfigMap
	Secret          *corev1.Secret
	ServiceAccount  *corev1.ServiceAccount
	PDB             *policyv1.PodDisruptionBudget
	NetworkPolicy   *networkingv1.NetworkPolicy
	Ingress         *networkingv1.Ingress
	ServiceMonitor  map[string]any
	PrometheusRule  map[string]any
	kinds           []string
	renderedSecrets string
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func decode(t *testing.T, files map[string]string) objects {
	t.Helper()
	var o objects
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if path.Ext(name) != ".yaml" {
			continue
		}
		for _, doc := range docSep.Split(files[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			var head struct{ APIVersion, Kind string }
			if err := json.Unmarshal(js, &head); err != nil {
				t.Fatal(err)
			}
			strict := func(into any) {
				t.Helper()
				dec := json.NewDecoder(bytes.NewReader(js))
				dec.DisallowUnknownFields()
				if err := dec.Decode(into); err != nil {
					t.Fatalf("%s: %s/%s does not decode strictly: %v\n%s", name, head.APIVersion, head.Kind, err, doc)
				}
			}
			key := head.APIVersion + "/" + head.Kind
			o.kinds = append(o.kinds, key)
			switch key {
			case "apps/v1/Deployment":
				o.Deployment = &appsv1.Deployment{}
				strict(o.Deployment)
			case "v1/Service":
				o.Service = &corev1.Service{}
				strict(o.Service)
			case "v1/ConfigMap":
				o.ConfigMap = &corev1.ConfigMap{}
				strict(o.ConfigMap)
			case "v1/Secret":
				o.Secret = &corev1.Secret{}
				strict(o.Secret)
				o.renderedSecrets = doc
			case "v1/ServiceAccount":
				o.ServiceAccount = &corev1.ServiceAccount{}
				strict(o.ServiceAccount)
			case "policy/v1/PodDisruptionBudget":
				o.PDB = &policyv1.PodDisruptionBudget{}
				strict(o.PDB)
			case "networking.k8s.io/v1/NetworkPolicy":
				o.NetworkPolicy = &networkingv1.NetworkPolicy{}
				strict(o.NetworkPolicy)
			case "networking.k8s.io/v1/Ingress":
				o.Ingress = &networkingv1.Ingress{}
				strict(o.Ingress)
			case "monitoring.coreos.com/v1/ServiceMonitor":
				o.ServiceMonitor = unstructured(t, js)
			case "monitoring.coreos.com/v1/PrometheusRule":
				o.PrometheusRule = unstructured(t, js)
			default:
				t.Fatalf("%s: unexpected object %s", name, key)
			}
		}
	}
	return o
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

func unstructured(t *testing.T, js []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkSchema checks an unstructured object against the fields the
// prometheus-operator CRD requires and allows at each level given.
func checkFields(t *testing.T, what string, m map[string]any, required []string, allowed ...string) {
	t.Helper()
	ok := map[string]bool{}
	for _, k := range append(required, allowed...) {
		ok[k] = true
	}
	for _, k := range required {
		if _, has := m[k]; !has {
			t.Errorf("%s: field %q missing", what, k)
		}
	}
	for k := range m {
		if !ok[k] {
			t.Errorf("%s: unknown field %q", what, k)
		}
	}
}

func checkCommon(t *testing.T, o objects) {
	t.Helper()
	for _, want := range []struct {
		name string
		ok   bool
	}{
		{"Deployment", o.Deployment != nil}, {"Service", o.Service != nil}, {"ConfigMap", o.ConfigMap != nil},
		{"ServiceAccount", o.ServiceAccount != nil}, {"PodDisruptionBudget", o.PDB != nil}, {"NetworkPolicy", o.NetworkPolicy != nil},
	} {
		if !want.ok {
			t.Fatalf("no %s rendered; have %v", want.name, o.kinds)
		}
	}
	d := o.Deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and uid 65532", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccomp profile: want RuntimeDefault")
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container: readOnlyRootFilesystem not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: allowPrivilegeEscalation not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container: privileged")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container capabilities %+v: want drop [ALL], add none", sc.Capabilities)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("container: runAsNonRoot not true")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("container seccomp profile: want RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod mounts a service account token; the portal does not talk to the Kubernetes API")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for _, p := range []string{"/tmp", "/var/lib/certportal"} {
		if v, ok := vols[mounts[p]]; !ok || v.EmptyDir == nil {
			t.Errorf("%s: want an emptyDir (the root filesystem is read-only)", p)
		}
	}
	// Probes: liveness on the no-dependency endpoint, readiness on /readyz,
	// a startup probe for the migrations.
	probe := func(name string, p *corev1.Probe, want string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v: want GET %s on port http", name, p, want)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/healthz")
	if c.StartupProbe != nil && int(c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold) < 60 {
		t.Errorf("startup probe allows only %ds for migrations", c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold)
	}
	for _, a := range []string{"checksum/config", "checksum/secret"} {
		if len(d.Spec.Template.Annotations[a]) != 64 {
			t.Errorf("pod annotation %s = %q, want a sha256", a, d.Spec.Template.Annotations[a])
		}
	}
	// No secret as a plain env value or in the ConfigMap.
	for _, e := range c.Env {
		if (e.Name == "CERTPORTAL_SESSION_KEY" || e.Name == "CERTPORTAL_APPROLE_SECRET_ID" || e.Name == "PGPASSWORD") && e.Value != "" {
			t.Errorf("env %s carries a secret in the Deployment", e.Name)
		}
	}
	for k := range o.ConfigMap.Data {
		if k == "CERTPORTAL_SESSION_KEY" || k == "CERTPORTAL_APPROLE_SECRET_ID" {
			t.Errorf("ConfigMap holds %s", k)
		}
	}
	if o.ConfigMap.Data["CERTPORTAL_LISTEN"] != "0.0.0.0:8080" {
		t.Errorf("CERTPORTAL_LISTEN %q", o.ConfigMap.Data["CERTPORTAL_LISTEN"])
	}
	// Service and PDB select the Deployment's pods.
	for what, sel := range map[string]map[string]string{"Service": o.Service.Spec.Selector, "PDB": o.PDB.Spec.Selector.MatchLabels, "NetworkPolicy": o.NetworkPolicy.Spec.PodSelector.MatchLabels} {
		for k, v := range sel {
			if d.Spec.Template.Labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry", what, k, v)
			}
		}
		if len(sel) == 0 {
			t.Errorf("%s selects every pod", what)
		}
	}
	// NetworkPolicy: both directions restricted; no egress rule open to all.
	np := o.NetworkPolicy.Spec
	if len(np.PolicyTypes) != 2 {
		t.Errorf("NetworkPolicy policyTypes %v: want Ingress and Egress", np.PolicyTypes)
	}
	for i, r := range np.Egress {
		if len(r.To) == 0 || len(r.Ports) == 0 {
			t.Errorf("NetworkPolicy egress rule %d allows every destination or port: %+v", i, r)
		}
	}
	for i, r := range np.Ingress {
		if len(r.From) == 0 {
			t.Errorf("NetworkPolicy ingress rule %d admits everyone", i)
		}
	}
}

// egressPorts is port → peers allowed.
func egressPorts(np networkingv1.NetworkPolicySpec) map[string][]networkingv1.NetworkPolicyPeer {
	m := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, r := range np.Egress {
		for _, p := range r.Ports {
			k := fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String())
			m[k] = append(m[k], r.To...)
		}
	}
	return m
}

func TestChartDefaults(t *testing.T) {
	c := loadChart(t)
	files, err := render(t, c, map[string]any{})
	if err != nil {
		t.Fatalf("default values do not render: %v", err)
	}
	o := decode(t, files)
	checkCommon(t, o)
	if o.Ingress != nil || o.ServiceMonitor != nil || o.PrometheusRule != nil {
		t.Errorf("optional objects rendered by default: %v", o.kinds)
	}
	// No Ingress, no address to build links from: none is made up.
	if u, ok := o.ConfigMap.Data["CERTPORTAL_PUBLIC_URL"]; ok {
		t.Errorf("CERTPORTAL_PUBLIC_URL %q without an Ingress or config.publicURL", u)
	}
	if *o.Deployment.Spec.Replicas != 1 {
		t.Errorf("default replicas %d", *o.Deployment.Spec.Replicas)
	}
	// Vault, PostgreSQL and DNS, not SMTP unless asked.
	ports := egressPorts(o.NetworkPolicy.Spec)
	keys := make([]string, 0, len(ports))
	for k := range ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, " ") != "TCP/53 TCP/5432 TCP/8200 UDP/53" {
		t.Errorf("default egress ports %v", keys)
	}
	if o.PDB.Spec.MaxUnavailable == nil || o.PDB.Spec.MaxUnavailable.IntValue() != 1 || o.PDB.Spec.MinAvailable != nil {
		t.Errorf("default PDB %+v: want maxUnavailable 1 (one replica must stay drainable)", o.PDB.Spec)
	}
}

func TestChartFull(t *testing.T) {
	c := loadChart(t)
	vals := valuesFile(t, "testdata/full.yaml")
	files, err := render(t, c, vals)
	if err != nil {
		t.Fatalf("full values do not render: %v", err)
	}
	o := decode(t, files)
	checkCommon(t, o)
	d := o.Deployment
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d", *d.Spec.Replicas)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	if !strings.HasSuffix(ctr.Image, "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
		t.Errorf("image %q: want pinned by digest", ctr.Image)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
	}
	if env["CERTPORTAL_SESSION_KEY_FILE"].Value != "/etc/certportal/secrets/session-key" || env["CERTPORTAL_APPROLE_SECRET_ID_FILE"].Value != "/etc/certportal/secrets/approle-secret-id" {
		t.Errorf("secret files env %+v", env)
	}
	if r := env["PGPASSWORD"].ValueFrom; r == nil || r.SecretKeyRef == nil || r.SecretKeyRef.Key != "db-password" {
		t.Errorf("PGPASSWORD %+v: want from the Secret", env["PGPASSWORD"])
	}
	if o.Secret == nil || string(o.Secret.Data["session-key"]) != vals["secrets"].(map[string]any)["sessionKey"] {
		t.Fatalf("Secret %+v", o.Secret)
	}
	if o.ConfigMap.Data["CERTPORTAL_MAX_ACTIVE"] != "5" || o.ConfigMap.Data["VAULT_CACERT"] == "" || !strings.HasPrefix(o.ConfigMap.Data["CERTPORTAL_DB"], "postgres://") {
		t.Errorf("ConfigMap %v", o.ConfigMap.Data)
	}
	if strings.Contains(o.ConfigMap.Data["CERTPORTAL_DB"], "s3cret") {
		t.Error("the DSN in the ConfigMap carries the password")
	}
	if o.Ingress == nil || o.Ingress.Spec.Rules[0].Host != "certs.corp.example" || len(o.Ingress.Spec.TLS) != 1 {
		t.Fatalf("Ingress %+v", o.Ingress)
	}
	// Links (enrolment, reminders) lead to the Ingress's address, not to
	// whatever Host a request names.
	if u := o.ConfigMap.Data["CERTPORTAL_PUBLIC_URL"]; u != "https://certs.corp.example" {
		t.Errorf("CERTPORTAL_PUBLIC_URL %q, want the Ingress's https://certs.corp.example", u)
	}
	if b := o.Ingress.Spec.Rules[0].HTTP.Paths[0].Backend.Service; b == nil || b.Name != o.Service.Name || b.Port.Name != "http" {
		t.Errorf("Ingress backend %+v, Service %s", b, o.Service.Name)
	}
	if o.PDB.Spec.MinAvailable == nil || o.PDB.Spec.MinAvailable.IntValue() != 2 {
		t.Errorf("PDB %+v", o.PDB.Spec)
	}
	ports := egressPorts(o.NetworkPolicy.Spec)
	if peers := ports["TCP/587"]; len(peers) != 1 || peers[0].IPBlock == nil || peers[0].IPBlock.CIDR != "192.0.2.25/32" {
		t.Errorf("SMTP egress %+v", peers)
	}
	if peers := ports["TCP/5432"]; len(peers) != 1 || peers[0].IPBlock == nil || peers[0].IPBlock.CIDR != "10.20.0.5/32" {
		t.Errorf("PostgreSQL egress %+v: want only the database's address", peers)
	}
	// The ingress controller reaches the pages, Prometheus's namespace the
	// metrics port, and neither the other's (review 81 F4: the Ingress
	// published /metrics).
	if in := o.NetworkPolicy.Spec.Ingress; len(in) != 2 || len(in[0].From) != 1 || len(in[1].From) != 1 ||
		len(in[0].Ports) != 1 || in[0].Ports[0].Port.String() != "http" || len(in[1].Ports) != 1 || in[1].Ports[0].Port.String() != "metrics" {
		t.Errorf("NetworkPolicy ingress %+v: want the ingress controller to http and Prometheus to metrics", in)
	}
	if l := o.ConfigMap.Data["CERTPORTAL_METRICS_LISTEN"]; l != "0.0.0.0:9090" {
		t.Errorf("CERTPORTAL_METRICS_LISTEN %q, want 0.0.0.0:9090", l)
	}
	var svcMetrics bool
	for _, sp := range o.Service.Spec.Ports {
		svcMetrics = svcMetrics || (sp.Name == "metrics" && sp.Port == 9090 && sp.TargetPort.String() == "metrics")
	}
	if !svcMetrics {
		t.Errorf("Service ports %+v: want metrics 9090", o.Service.Spec.Ports)
	}

	// ServiceMonitor and PrometheusRule against the operator's CRD fields.
	sm := o.ServiceMonitor
	if sm == nil || o.PrometheusRule == nil {
		t.Fatalf("ServiceMonitor/PrometheusRule not rendered: %v", o.kinds)
	}
	checkFields(t, "ServiceMonitor", sm, []string{"apiVersion", "kind", "metadata", "spec"})
	smSpec := sm["spec"].(map[string]any)
	checkFields(t, "ServiceMonitor.spec", smSpec, []string{"selector", "endpoints"}, "namespaceSelector", "jobLabel")
	eps := smSpec["endpoints"].([]any)
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", eps)
	}
	ep := eps[0].(map[string]any)
	checkFields(t, "ServiceMonitor endpoint", ep, []string{"port", "path"}, "interval", "scrapeTimeout", "scheme")
	if ep["port"] != "metrics" || ep["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v", ep)
	}
	if sm["metadata"].(map[string]any)["labels"].(map[string]any)["release"] != "prometheus" {
		t.Error("ServiceMonitor lacks the labels Prometheus selects on")
	}
	pr := o.PrometheusRule
	checkFields(t, "PrometheusRule", pr, []string{"apiVersion", "kind", "metadata", "spec"})
	groups := pr["spec"].(map[string]any)["groups"].([]any)
	alerts := map[string]map[string]any{}
	for _, g := range groups {
		gm := g.(map[string]any)
		checkFields(t, "PrometheusRule group", gm, []string{"name", "rules"}, "interval")
		for _, r := range gm["rules"].([]any) {
			rm := r.(map[string]any)
			checkFields(t, "PrometheusRule rule", rm, []string{"alert", "expr"}, "for", "labels", "annotations")
			name := rm["alert"].(string)
			if alerts[name] != nil {
				t.Errorf("alert %s defined twice", name)
			}
			alerts[name] = rm
			// The chart's own group is what needs the release's scrape job.
			if gm["name"] == "certportal-kubernetes" && !strings.Contains(rm["expr"].(string), `job="cp-certportal"`) {
				t.Errorf("rule %s does not select this release's job: %s", name, rm["expr"])
			}
		}
	}
	if alerts["CertportalDown"] == nil {
		t.Error("alert CertportalDown missing")
	}
	// Every alert promtool tests (deploy/prometheus) reaches a Helm
	// install unchanged: the same expression, duration and labels.
	for name, want := range sharedAlerts(t) {
		got := alerts[name]
		if got == nil {
			t.Errorf("alert %s of deploy/prometheus/certportal-rules.yml is not in the chart's PrometheusRule", name)
			continue
		}
		for _, k := range []string{"expr", "for", "labels", "annotations"} {
			if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
				t.Errorf("alert %s %s in the chart: %v; in deploy/prometheus: %v", name, k, got[k], want[k])
			}
		}
	}
}

// sharedAlerts reads the alert rules deploy/prometheus ships and promtool tests.
func sharedAlerts(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../prometheus/certportal-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if name, ok := r["alert"].(string); ok {
				out[name] = r
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("deploy/prometheus/certportal-rules.yml: %d alerts, want the full set", len(out))
	}
	return out
}

// TestChartExistingSecret: the chart makes no Secret and reads the named one.
func TestChartExistingSecret(t *testing.T) {
	c := loadChart(t)
	vals := valuesFile(t, "testdata/full.yaml")
	vals["secrets"] = map[string]any{"existingSecret": "certportal-from-vault"}
	files, err := render(t, c, vals)
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, files)
	checkCommon(t, o)
	if o.Secret != nil {
		t.Error("a Secret was rendered although existingSecret is set")
	}
	var found bool
	for _, v := range o.Deployment.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			found = v.Secret.SecretName == "certportal-from-vault"
		}
	}
	if !found {
		t.Error("the pod does not mount existingSecret")
	}
}

// TestChartChecksums: changing a setting or a secret changes the pod
// template, so Kubernetes rolls the pods.
func TestChartChecksums(t *testing.T) {
	c := loadChart(t)
	annotations := func(mut func(map[string]any)) map[string]string {
		vals := valuesFile(t, "testdata/full.yaml")
		mut(vals)
		files, err := render(t, c, vals)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, files).Deployment.Spec.Template.Annotations
	}
	base := annotations(func(map[string]any) {})
	again := annotations(func(map[string]any) {})
	if base["checksum/config"] != again["checksum/config"] || base["checksum/secret"] != again["checksum/secret"] {
		t.Fatal("checksums differ between two renders of the same values: every upgrade would roll the pods")
	}
	cfg := annotations(func(v map[string]any) { v["config"].(map[string]any)["emailDomain"] = "other.example" })
	if cfg["checksum/config"] == base["checksum/config"] {
		t.Error("a changed setting leaves checksum/config unchanged")
	}
	sec := annotations(func(v map[string]any) {
		v["secrets"].(map[string]any)["approleSecretID"] = "aaaaaaaa-7777-8888-9999-000000000000"
	})
	if sec["checksum/secret"] == base["checksum/secret"] || sec["checksum/config"] != base["checksum/config"] {
		t.Error("a changed secret does not change checksum/secret alone")
	}
}

// TestChartRejects: values.schema.json and the templates refuse what would
// deploy a broken or open portal, with a message naming the value.
// TestChartPublicURL: config.publicURL wins over the Ingress's host, and an
// Ingress without TLS gives an http:// address.
func TestChartPublicURL(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name string
		mut  func(map[string]any)
		want string
	}{
		{"set", func(v map[string]any) { v["config"].(map[string]any)["publicURL"] = "https://portal.example.org/certs" }, "https://portal.example.org/certs"},
		{"ingress without tls", func(v map[string]any) { v["ingress"].(map[string]any)["tls"] = map[string]any{"enabled": false} }, "http://certs.corp.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := valuesFile(t, "testdata/full.yaml")
			tc.mut(vals)
			files, err := render(t, c, vals)
			if err != nil {
				t.Fatal(err)
			}
			if u := decode(t, files).ConfigMap.Data["CERTPORTAL_PUBLIC_URL"]; u != tc.want {
				t.Errorf("CERTPORTAL_PUBLIC_URL %q, want %q", u, tc.want)
			}
		})
	}
}

func TestChartRejects(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name string
		mut  func(map[string]any)
		want string
	}{
		{"replicas without postgres", func(v map[string]any) { v["config"].(map[string]any)["db"] = "" }, "db"},
		{"replicas without a shared session key", func(v map[string]any) { v["secrets"].(map[string]any)["sessionKey"] = "" }, "sessionKey"},
		{"secret as a setting", func(v map[string]any) {
			v["config"].(map[string]any)["extra"] = map[string]any{"CERTPORTAL_SESSION_KEY": "x"}
		}, "CERTPORTAL_SESSION_KEY"},
		{"unknown value", func(v map[string]any) { v["replicas"] = 2 }, "replicas"},
		{"smtp open to all", func(v map[string]any) {
			v["networkPolicy"].(map[string]any)["egress"].(map[string]any)["smtp"] = map[string]any{"enabled": true, "port": 25, "cidrs": []any{}}
		}, "cidrs"},
		{"no DSN scheme", func(v map[string]any) { v["config"].(map[string]any)["db"] = "/data/certportal.db" }, "db"},
		{"public URL without scheme", func(v map[string]any) { v["config"].(map[string]any)["publicURL"] = "certs.example.com" }, "publicURL"},
		{"ingress without trusted proxies", func(v map[string]any) { v["config"].(map[string]any)["trustedProxies"] = "" }, "trustedProxies"},
		{"public URL with a query", func(v map[string]any) { v["config"].(map[string]any)["publicURL"] = "https://certs.example.com/?x=1" }, "publicURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := valuesFile(t, "testdata/full.yaml")
			tc.mut(vals)
			_, err := render(t, c, vals)
			if err == nil {
				t.Fatal("rendered")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}
