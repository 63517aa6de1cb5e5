package node

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The host state a node run may change, and that teardown puts back. What the kubelet, kube-proxy,
// containerd and the CNI plugins are known to touch (../shared/reference/real-node.md), plus
// what the harness itself makes (the bridge).
var (
	watchedSysctls = []string{
		"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", // the kubelet
		"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", // the bridge plugin (isGateway)
		"net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_max", // kube-proxy
		"net/bridge/bridge-nf-call-iptables",
	}
	// Folders whose new entries are removed (and the folder itself when it did not exist),
	// deepest first. The kubelet's plugin folders follow its --root-dir, in the cluster's folder
	// here; plugins/ and plugins_registry/ under /var/lib/kubelet are where DRA and CSI plugins
	// put their sockets by default.
	watchedDirs = []string{
		"/var/lib/kubelet/device-plugins", "/var/lib/kubelet/plugins_registry", "/var/lib/kubelet/plugins", "/var/lib/kubelet",
		"/var/log/containers", "/var/log/pods",
		"/run/containerd", "/var/run/netns", "/run/netns", "/var/lib/cni", "/run/runc",
	}
	cgroupRoot = "/sys/fs/cgroup"
)

// hostState is a snapshot of what a run may change.
type hostState struct {
	sysctls  map[string]string
	iptables map[string]string // iptables-save per command, normalised
	links    []string
	routes   string
	mounts   []string
	dirs     map[string][]string // nil: absent
	cgroups  []string            // kubepods folders in the cgroup hierarchies
}

func snapshotHost() (*hostState, error) {
	s := &hostState{sysctls: map[string]string{}, iptables: map[string]string{}, dirs: map[string][]string{}}
	for _, k := range watchedSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).Output()
		if err != nil {
			if cmd == "ip6tables-save" {
				continue // no IPv6 tables on this host: nothing to change
			}
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		s.iptables[cmd] = normaliseRules(string(out))
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip link: %w", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"))
		}
	}
	routes, err := exec.Command("ip", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	s.routes = string(routes)
	if s.mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	for _, d := range watchedDirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		s.dirs[d] = names
	}
	s.cgroups = kubepodsCgroups()
	return s, nil
}

// kubepodsCgroups lists the kubelet's pod cgroups: in each cgroup v1 hierarchy, or at the
// root of a cgroup v2 one.
func kubepodsCgroups() []string {
	v1, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", "kubepods*"))
	v2, _ := filepath.Glob(filepath.Join(cgroupRoot, "kubepods*"))
	return append(v1, v2...)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// normaliseRules drops comments and packet counters, and tables that hold nothing but
// their built-in chains with the ACCEPT policy (iptables-nft makes those on a mere listing).
func normaliseRules(save string) string {
	var out, table []string
	empty := true
	flush := func() {
		if !empty {
			out = append(out, table...)
		}
		table, empty = nil, true
	}
	for _, l := range strings.Split(save, "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
			continue
		case strings.HasPrefix(l, "*"):
			flush()
		case strings.HasPrefix(l, ":"):
			if !strings.Contains(l, " ACCEPT ") {
				empty = false // a policy changed or a chain of its own
			}
		case l != "COMMIT":
			empty = false
		}
		table = append(table, counters.ReplaceAllString(l, "[0:0]"))
	}
	flush()
	return strings.Join(out, "\n")
}

// mountPoints lists the mount points, in the order they were mounted.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			points = append(points, unescapeMount(fields[4]))
		}
	}
	return points, sc.Err()
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// restore puts back what differs from before: sysctls, iptables rules, new links, mounts,
// folder entries and cgroups. The processes must be gone already.
func (before *hostState) restore() error {
	var errs []error
	now, err := snapshotHost()
	if err != nil {
		return err
	}
	// Mounts first, newest first: pod volumes, network namespaces, the kubelet's root.
	for _, m := range slices.Backward(now.mounts) {
		if !slices.Contains(before.mounts, m) {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	for k, v := range before.sysctls {
		if now.sysctls[k] != v {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("sysctl %s: %w", k, err))
			}
		}
	}
	for cmd, rules := range before.iptables {
		if now.iptables[cmd] != rules {
			errs = append(errs, restoreRules(strings.TrimSuffix(cmd, "-save"), rules))
		}
	}
	for _, l := range now.links {
		if !slices.Contains(before.links, l) {
			if out, err := exec.Command("ip", "link", "delete", l).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
				errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", l, err, out))
			}
		}
	}
	// Deepest folders first: device-plugins and plugins before the kubelet's folder.
	for _, d := range watchedDirs {
		had, existed := before.dirs[d]
		if !existed {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		for _, name := range now.dirs[d] {
			if !slices.Contains(had, name) {
				if err := os.RemoveAll(filepath.Join(d, name)); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, cg := range now.cgroups {
		if !slices.Contains(before.cgroups, cg) {
			errs = append(errs, removeCgroup(cg))
		}
	}
	return errors.Join(errs...)
}

// restoreRules empties the tables iptables-save shows now and loads the rules of before.
func restoreRules(family, rules string) error {
	out, err := exec.Command(family + "-save").Output()
	if err != nil {
		return err
	}
	var flush strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "*") {
			// An empty table with its built-in chains' policies reset: what a table of before
			// that iptables-save did not list looked like.
			fmt.Fprintf(&flush, "%s\nCOMMIT\n", l)
		}
	}
	for _, input := range []string{flush.String(), rules + "\n"} {
		cmd := exec.Command(family + "-restore")
		cmd.Stdin = strings.NewReader(input)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s-restore: %v: %s", family, err, out)
		}
	}
	return nil
}

// removeCgroup removes a cgroup folder and the ones under it, deepest first, killing what
// still runs in them.
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		last = nil
		for _, d := range slices.Backward(dirs) {
			killProcs(d)
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				last = err
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, last)
}

func killProcs(cgroup string) {
	b, err := os.ReadFile(filepath.Join(cgroup, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// diff says how now differs from before, "" when it does not.
func (before *hostState) diff(now *hostState) string {
	var d []string
	for k, v := range before.sysctls {
		if now.sysctls[k] != v {
			d = append(d, fmt.Sprintf("sysctl %s: %s, was %s", k, now.sysctls[k], v))
		}
	}
	for cmd, rules := range before.iptables {
		if now.iptables[cmd] != rules {
			d = append(d, fmt.Sprintf("%s differs:\n%s\nwas:\n%s", cmd, now.iptables[cmd], rules))
		}
	}
	if !slices.Equal(before.links, now.links) {
		d = append(d, fmt.Sprintf("links %v, were %v", now.links, before.links))
	}
	if before.routes != now.routes {
		d = append(d, fmt.Sprintf("routes:\n%s\nwere:\n%s", now.routes, before.routes))
	}
	for _, m := range now.mounts {
		if !slices.Contains(before.mounts, m) {
			d = append(d, "new mount "+m)
		}
	}
	for _, dir := range watchedDirs {
		if b, n := before.dirs[dir], now.dirs[dir]; !slices.Equal(b, n) || (b == nil) != (n == nil) {
			d = append(d, fmt.Sprintf("%s holds %v, held %v", dir, n, b))
		}
	}
	if !slices.Equal(before.cgroups, now.cgroups) {
		d = append(d, fmt.Sprintf("cgroups %v, were %v", now.cgroups, before.cgroups))
	}
	return strings.Join(d, "\n")
}
