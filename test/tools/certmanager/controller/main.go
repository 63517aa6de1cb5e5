// Command controller runs cert-manager's own certificate controllers (v1.21, the module the
// project's manifests import) against a cluster, for the end-to-end tests.
//
// cert-manager publishes its binaries' main packages as nested modules that the module proxy
// does not serve, so this is a thin main of ours around cert-manager's exported controller
// packages: the same ContextFactory, registry and controllers its binary runs, limited to
// what the project's overlay uses (self-signed and CA issuers, Certificates and their
// CertificateRequests). No leader election: one instance runs per test cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	namespace := flag.String("namespace", "", "watch only this namespace (\"\": all)")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "kube-system", "namespace of ClusterIssuer secrets")
	metricsAddr := flag.String("metrics-listen-address", "127.0.0.1:9402", "address of /metrics")
	workers := flag.Int("workers", 5, "workers per controller")
	klog.InitFlags(nil)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, controller.ContextOptions{
		Kubeconfig: *kubeconfig,
		Namespace:  *namespace,
		// With API Priority and Fairness on (it is on every current apiserver) the factory
		// turns client-side throttling off; these apply only without it.
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: *clusterResourceNamespace},
		// cert-manager's defaults: a failed issuance is retried after 1h, doubling up to 32h.
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
			CopiedAnnotationPrefixes:                 []string{"*", "-kubectl.kubernetes.io/"},
		},
	}, *metricsAddr, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager controller:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts controller.ContextOptions, metricsAddr string, workers int) error {
	ctx = logf.NewContext(ctx, klog.Background(), "controller")
	log := logf.FromContext(ctx)
	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		return err
	}
	// Every controller is built before the informers start, so that each has asked the shared
	// factories for the informers it needs.
	var ifaces []controller.Interface
	var names []string
	for name := range controller.Known() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		iface, err := controller.Known()[name](factory)
		if err != nil {
			return fmt.Errorf("building %s: %w", name, err)
		}
		ifaces = append(ifaces, iface)
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return err
	}
	metrics := base.Metrics.NewServer(ln)
	go func() { _ = metrics.Serve(ln) }()
	defer metrics.Close()

	var wg sync.WaitGroup
	errs := make(chan error, len(ifaces))
	for i, iface := range ifaces {
		wg.Go(func() {
			log.Info("starting controller", "controller", names[i])
			if err := iface.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", names[i], err)
			}
		})
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	if base.GatewaySolverEnabled {
		base.GWShared.Start(ctx.Done())
	}
	log.Info("started", "controllers", names)
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	wg.Wait()
	return nil
}
