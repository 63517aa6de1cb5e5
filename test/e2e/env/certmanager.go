package env

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CertManager is cert-manager's controller and cainjector, built by `make tools` from the
// version test/tools/certmanager pins, running as processes against the cluster.
type CertManager struct {
	Controller, CAInjector *Process
	// ControllerMetricsURL is the controller's /metrics.
	ControllerMetricsURL string
}

// CertManagerCRDs is the folder of cert-manager's CRDs, from the module the binaries are
// built from, so the CRDs and the controllers are of one version.
func (c *Cluster) CertManagerCRDs() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = filepath.Join(c.Root, "test", "tools", "certmanager")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating cert-manager's module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds"), nil
}

// StartCertManager applies cert-manager's CRDs, then runs its controller and cainjector as
// cluster admins watching every namespace, and waits until both serve.
func (c *Cluster) StartCertManager(ctx context.Context) (*CertManager, error) {
	bin := filepath.Join(c.Root, "bin", "cert-manager")
	for _, name := range []string{"controller", "cainjector"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("%w: run make tools", err)
		}
	}
	kc, err := c.KubeconfigFile("cert-manager", "system:masters")
	if err != nil {
		return nil, err
	}
	crds, err := c.CertManagerCRDs()
	if err != nil {
		return nil, err
	}
	kubectl := filepath.Join(c.Root, "bin", "k8s", "kubectl")
	for _, args := range [][]string{
		{"apply", "--server-side", "-f", crds},
		{"wait", "--for=condition=Established", "--timeout=60s", "crd/certificates.cert-manager.io", "crd/certificaterequests.cert-manager.io", "crd/issuers.cert-manager.io", "crd/clusterissuers.cert-manager.io"},
	} {
		if out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	// -v=2 is cert-manager's info level: what it issued and injected, for a failing test's log.
	ctrl, err := StartProcess(c.Dir, "cert-manager-controller", filepath.Join(bin, "controller"),
		"--kubeconfig", kc, "--metrics-listen-address", addr(0), "-v=2")
	if err != nil {
		return nil, err
	}
	cm := &CertManager{Controller: ctrl, ControllerMetricsURL: "http://" + addr(0) + "/metrics"}
	inj, err := StartProcess(c.Dir, "cert-manager-cainjector", filepath.Join(bin, "cainjector"),
		"--kubeconfig", kc, "--metrics-bind-address", addr(1), "--health-probe-bind-address", addr(2), "-v=2")
	if err != nil {
		cm.Stop()
		return nil, err
	}
	cm.CAInjector = inj
	err = errors.Join(
		prefix("cert-manager controller", ctrl.waitHTTP(cm.ControllerMetricsURL, time.Minute)),
		prefix("cert-manager cainjector", inj.waitHTTP("http://"+addr(2)+"/readyz", time.Minute)))
	if err != nil {
		cm.Stop()
		return nil, err
	}
	return cm, nil
}

func prefix(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Stop stops the cainjector and the controller.
func (cm *CertManager) Stop() {
	for _, p := range []*Process{cm.CAInjector, cm.Controller} {
		if p != nil {
			p.Stop()
		}
	}
}

// Logs returns the tail of both processes' logs.
func (cm *CertManager) Logs() string {
	var b strings.Builder
	for name, p := range map[string]*Process{"controller": cm.Controller, "cainjector": cm.CAInjector} {
		if p != nil {
			l := p.Logs()
			fmt.Fprintf(&b, "cert-manager %s log (last 6000 bytes):\n%s\n", name, l[max(0, len(l)-6000):])
		}
	}
	return b.String()
}

// WriteSecretVolume writes files into dir as the kubelet updates a mounted Secret: the new
// files go into a fresh folder, a "..data" symlink is swapped to it in one rename, and each
// name is a symlink through "..data". A reader never sees tls.crt from one version and
// tls.key from another.
func WriteSecretVolume(dir string, files map[string][]byte) error {
	version, err := os.MkdirTemp(dir, "..version-")
	if err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(version, name), b, 0o600); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, data); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
