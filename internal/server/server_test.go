package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

type running struct {
	addr       string
	healthAddr string
	ca         *certs.Pair
	certDir    string
	configFile string
	cancel     context.CancelFunc
	done       chan error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the server in-process, with its config from a file and no cluster.
func start(t *testing.T, config string, mod func(*Options)) *running {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := certs.Generate(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	r := &running{ca: ca, certDir: dir, configFile: filepath.Join(dir, "config.yaml"), healthAddr: freeAddr(t), done: make(chan error, 1)}
	writeConfig(t, r.configFile, config)
	ready := make(chan net.Addr, 1)
	o := Options{
		Addr: "127.0.0.1:0", CertDir: dir, HealthAddr: r.healthAddr, TLSMinVersion: tls.VersionTLS12,
		ConfigFile: r.configFile, ConfigPoll: 10 * time.Millisecond,
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready: func(a net.Addr) { ready <- a },
	}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- Run(ctx, o) }()
	select {
	case a := <-ready:
		r.addr = a.String()
	case err := <-r.done:
		t.Fatalf("server exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func writeConfig(t *testing.T, path, data string) {
	t.Helper()
	if data == "" {
		os.Remove(path)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gpu-label-webhook}\ndata:\n"+data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (r *running) client(mod func(*tls.Config)) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(r.ca.Cert)
	cfg := &tls.Config{RootCAs: pool}
	if mod != nil {
		mod(cfg)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 16}}
}

var sample = testnode.Review("u1", admissionv1.Create, "", testnode.Realistic("n1", "p4d.24xlarge", 8), nil, "system:node:n1", false)

// post sends a review and checks the answer allows; it returns whether the node was labeled.
func post(c *http.Client, addr string) (labeled bool, err error) {
	resp, err := c.Post("https://"+addr+review.PathMutate, "application/json", bytes.NewReader(sample))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rv); err != nil || rv.Response == nil || !rv.Response.Allowed || rv.Response.UID != "u1" {
		return false, fmt.Errorf("bad review: %s", body)
	}
	return rv.Response.Patch != nil, nil
}

func TestServesAndIsReady(t *testing.T) {
	r := start(t, `  autoLabel: "true"`+"\n", nil)
	labeled, err := post(r.client(nil), r.addr)
	if err != nil || !labeled {
		t.Fatalf("labeled=%v err=%v", labeled, err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + r.healthAddr + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, resp, err)
		}
	}
	resp, err := r.client(nil).Get("https://" + r.addr + review.PathMutate)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp, err)
	}
}

// Profiling is served only when asked for, on its own plain-HTTP address, never on the
// admission port.
func TestPprofOnlyWhenAsked(t *testing.T) {
	r := start(t, "", nil)
	resp, err := r.client(nil).Get("https://" + r.addr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("admission port serves /debug/pprof/ without --pprof-addr")
	}
	addr := freeAddr(t)
	start(t, "", func(o *Options) { o.PprofAddr = addr })
	resp, err = http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("goroutine profile")) {
		t.Errorf("--pprof-addr: status %d, body %.80q", resp.StatusCode, body)
	}
}

func TestTLSPolicy(t *testing.T) {
	r := start(t, "", nil)
	if _, err := post(r.client(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11; c.MinVersion = tls.VersionTLS10 }), r.addr); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	// HTTP/2 is off by default: a client offering h2 gets HTTP/1.1.
	c := r.client(func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} })
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := c.Post("https://"+r.addr+review.PathMutate, "application/json", bytes.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("protocol %s", resp.Proto)
	}

	r13 := start(t, "", func(o *Options) { o.TLSMinVersion = tls.VersionTLS13; o.HealthAddr = "" })
	if _, err := post(r13.client(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), r13.addr); err == nil {
		t.Error("--tls-min-version 1.3 served TLS 1.2")
	}

	h2 := start(t, "", func(o *Options) { o.EnableHTTP2 = true; o.HealthAddr = "" })
	c = h2.client(func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} })
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err = c.Post("https://"+h2.addr+review.PathMutate, "application/json", bytes.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("--enable-http2: protocol %s", resp.Proto)
	}
}

func TestClientCertificateRequired(t *testing.T) {
	clientCA, err := certs.NewCA("apiserver-client-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	os.WriteFile(caFile, clientCA.CertPEM(), 0o644)
	r := start(t, "", func(o *Options) { o.ClientCAFile = caFile; o.HealthAddr = "" })
	if _, err := post(r.client(nil), r.addr); err == nil {
		t.Error("served a client without a certificate")
	}
	other, _ := certs.NewCA("other", time.Now())
	bad, _ := other.Client("kube-apiserver", nil, time.Now())
	good, _ := clientCA.Client("kube-apiserver", nil, time.Now())
	withCert := func(p *certs.Pair) func(*tls.Config) {
		return func(c *tls.Config) {
			c.Certificates = []tls.Certificate{{Certificate: [][]byte{p.Cert.Raw}, PrivateKey: p.Key}}
		}
	}
	if _, err := post(r.client(withCert(bad)), r.addr); err == nil {
		t.Error("served a client whose certificate another CA signed")
	}
	if _, err := post(r.client(withCert(good)), r.addr); err != nil {
		t.Errorf("refused the apiserver's certificate: %v", err)
	}
}

// load sends requests from n clients until stop is closed, and counts them.
func load(t *testing.T, n int, stop <-chan struct{}, send func(c *http.Client) error, mk func() *http.Client) (ok, failed *atomic.Int64, wait func()) {
	ok, failed = &atomic.Int64{}, &atomic.Int64{}
	var wg sync.WaitGroup
	var once sync.Once
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := mk()
			deadline := time.Now().Add(30 * time.Second) // bounded whatever happens
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				if err := send(c); err != nil {
					failed.Add(1)
					once.Do(func() { t.Logf("first failure: %v", err) })
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	return ok, failed, wg.Wait
}

// The serving certificate is replaced on disk under load: no request fails and new
// connections get the new certificate.
func TestCertificateRotationUnderLoad(t *testing.T) {
	r := start(t, "", nil)
	newCA, _ := certs.NewCA("rotated-ca", time.Now())
	newServing, _ := newCA.Serving([]string{"127.0.0.1"}, time.Now())
	pool := x509.NewCertPool()
	pool.AddCert(r.ca.Cert)
	pool.AddCert(newCA.Cert)
	mk := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	stop := make(chan struct{})
	ok, failed, wait := load(t, 4, stop, func(c *http.Client) error { _, err := post(c, r.addr); return err }, mk)
	time.Sleep(300 * time.Millisecond)
	if err := certs.WriteServing(r.certDir, newCA, newServing); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	var servedAfter time.Duration
	for time.Since(rotated) < 15*time.Second {
		conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: pool})
		if err == nil {
			serial := conn.ConnectionState().PeerCertificates[0].SerialNumber
			conn.Close()
			if serial.Cmp(newServing.Cert.SerialNumber) == 0 {
				servedAfter = time.Since(rotated)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wait()
	t.Logf("requests: %d ok, %d failed; new certificate served after %v", ok.Load(), failed.Load(), servedAfter)
	if servedAfter == 0 {
		t.Error("the new certificate was not served within 15s")
	}
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d failed, %d ok", failed.Load(), ok.Load())
	}
}

// On SIGTERM the server turns unready first; clients that stop when it does see no failure.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	r := start(t, "", func(o *Options) { o.ShutdownDelay = 500 * time.Millisecond })
	stop := make(chan struct{})
	ok, failed, wait := load(t, 4, stop, func(c *http.Client) error { _, err := post(c, r.addr); return err }, func() *http.Client { return r.client(nil) })
	time.Sleep(300 * time.Millisecond)
	r.cancel()
	// Like the endpoints controller: stop sending once the pod is unready.
	for {
		resp, err := http.Get("http://" + r.healthAddr + "/readyz")
		if err != nil {
			t.Fatalf("health server gone before readiness dropped: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wait()
	if err := <-r.done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	r.done <- nil // for the cleanup
	t.Logf("requests: %d ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d failed, %d ok", failed.Load(), ok.Load())
	}
}

// The config flips between valid, invalid and deleted while requests flow: every answer
// matches a config that was valid at some point (labeled under autoLabel, warned otherwise).
func TestConfigFlipsUnderLoad(t *testing.T) {
	r := start(t, `  autoLabel: "true"`+"\n", nil)
	stop := make(chan struct{})
	var labeled, warned atomic.Int64
	ok, failed, wait := load(t, 4, stop, func(c *http.Client) error {
		l, err := post(c, r.addr)
		if l {
			labeled.Add(1)
		} else {
			warned.Add(1)
		}
		return err
	}, func() *http.Client { return r.client(nil) })
	configs := []string{`  autoLabel: "true"` + "\n", `  autoLabel: "nope"` + "\n", "", `  autoLabel: "false"` + "\n", "  unknownKey: x\n"}
	for i := 0; i < 100; i++ {
		writeConfig(t, r.configFile, configs[i%len(configs)])
		time.Sleep(15 * time.Millisecond)
	}
	close(stop)
	wait()
	t.Logf("requests: %d ok (%d labeled, %d warned), %d failed", ok.Load(), labeled.Load(), warned.Load(), failed.Load())
	if failed.Load() != 0 || labeled.Load() == 0 || warned.Load() == 0 {
		t.Errorf("failed=%d labeled=%d warned=%d", failed.Load(), labeled.Load(), warned.Load())
	}
}

// A client that sends its headers a byte at a time is cut off, and others are served
// meanwhile.
func TestSlowClientIsCutOff(t *testing.T) {
	r := start(t, "", func(o *Options) { o.ReadHeaderTimeout = 300 * time.Millisecond })
	pool := x509.NewCertPool()
	pool.AddCert(r.ca.Cert)
	conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	headers := "POST " + review.PathMutate + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	cut := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for i := 0; i < len(headers); i++ {
			if _, err := conn.Write([]byte{headers[i]}); err != nil {
				cut <- time.Since(start)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		_, err := conn.Read(make([]byte, 1)) // the server must have closed by now
		if err != nil {
			cut <- time.Since(start)
			return
		}
		cut <- 0
	}()
	if _, err := post(r.client(nil), r.addr); err != nil {
		t.Errorf("another client was not served: %v", err)
	}
	select {
	case d := <-cut:
		if d == 0 || d > 3*time.Second {
			t.Errorf("slow client cut after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Error("slow client never cut off")
	}
}

func TestOptionsAreValidated(t *testing.T) {
	err := Run(context.Background(), Options{TLSMinVersion: tls.VersionTLS11})
	for _, want := range []string{"--cert-dir", "no cluster", "--tls-min-version"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
