package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"testing"
)

func TestServeOptions(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("HOME", t.TempDir()) // no ~/.kube/config to fall back on
	base := func() serveOptions {
		return serveOptions{port: 9443, certDir: "/certs", tlsMinVersion: "1.2", configFile: "/config", namespace: "ns", configName: "cm"}
	}
	o := base()
	opts, err := o.serverOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.RESTConfig != nil || opts.Addr != ":9443" || opts.TLSMinVersion != tls.VersionTLS12 || opts.ConfigFile != "/config" {
		t.Errorf("--config-file without a kubeconfig needs no cluster: %+v", opts)
	}
	o.tlsMinVersion = "1.3"
	if opts, err := o.serverOptions(nil); err != nil || opts.TLSMinVersion != tls.VersionTLS13 {
		t.Errorf("1.3: %v", err)
	}
	for name, mod := range map[string]func(*serveOptions){
		"TLS 1.1":               func(o *serveOptions) { o.tlsMinVersion = "1.1" },
		"port out of range":     func(o *serveOptions) { o.port = 70000 },
		"no certificate dir":    func(o *serveOptions) { o.certDir = "" },
		"missing kubeconfig":    func(o *serveOptions) { o.kubeconfig = "/no/such/kubeconfig" },
		"no config, no cluster": func(o *serveOptions) { o.configFile = "" },
	} {
		o := base()
		mod(&o)
		if _, err := o.serverOptions(nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestServeRefusesBadFlagsBeforeStarting(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"serve", "--tls-min-version", "1.0", "--config-file", "/x"}, strings.NewReader(""), &out, &errOut)
	if code != ExitError || !strings.Contains(errOut.String(), "--tls-min-version") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	code = Main(context.Background(), []string{"serve", "--log-format", "xml", "--config-file", "/x"}, strings.NewReader(""), &out, &errOut)
	if code != ExitError || !strings.Contains(errOut.String(), "--log-format") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, nil, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "gpu-label-webhook ") {
		t.Errorf("exit %d: %q", code, out.String())
	}
}

// Installed as kubectl-gpu_label, the binary is a kubectl plugin: help and fixes name it the
// way kubectl does.
func TestKubectlPluginName(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/local/bin/kubectl-gpu_label": "kubectl gpu-label",
		"kubectl-gpu_label":                "kubectl gpu-label",
		"/bin/gpu-label-webhook":           DefaultName,
		"webhook":                          DefaultName,
		"kubectl-":                         DefaultName,
	} {
		if got := DisplayName(argv0); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", argv0, got, want)
		}
	}
	var out bytes.Buffer
	if code := MainAs(context.Background(), "kubectl gpu-label", []string{"check", "--help"}, nil, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), "kubectl gpu-label check [flags]") {
		t.Errorf("help does not use the plugin's name:\n%s", out.String())
	}
}
