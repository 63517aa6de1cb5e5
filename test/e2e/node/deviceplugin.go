package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// DevicePlugin is a device plugin as NVIDIA's is to the kubelet: a gRPC server on a socket in
// the kubelet's device-plugin folder that registers a resource and lists its devices. It
// allocates nothing (no pod asks for the devices here); what the test needs is the kubelet
// putting the resource into the Node's capacity through its own status report.
type DevicePlugin struct {
	pluginapi.UnimplementedDevicePluginServer
	Resource string
	Count    int
	socket   string
	server   *grpc.Server
}

// StartDevicePlugin serves count devices of resource and registers them with the kubelet.
func StartDevicePlugin(ctx context.Context, resource string, count int) (*DevicePlugin, error) {
	p := &DevicePlugin{Resource: resource, Count: count,
		socket: filepath.Join(pluginapi.DevicePluginPath, "gpu-label-webhook-test.sock")}
	_ = os.Remove(p.socket)
	lis, err := net.Listen("unix", p.socket)
	if err != nil {
		return nil, err
	}
	p.server = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.server, p)
	go func() { _ = p.server.Serve(lis) }()

	conn, err := grpc.NewClient("unix://"+pluginapi.KubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.Stop()
		return nil, err
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: resource,
	})
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("registering with the kubelet: %w", err)
	}
	return p, nil
}

// Stop stops serving; the kubelet then reports the devices unhealthy.
func (p *DevicePlugin) Stop() {
	p.server.Stop()
	_ = os.Remove(p.socket)
}

func (p *DevicePlugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once and keeps the stream open until the kubelet or Stop
// closes it.
func (p *DevicePlugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	resp := &pluginapi.ListAndWatchResponse{}
	for i := range p.Count {
		resp.Devices = append(resp.Devices, &pluginapi.Device{ID: fmt.Sprintf("gpu-%d", i), Health: pluginapi.Healthy})
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *DevicePlugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{})
	}
	return resp, nil
}
