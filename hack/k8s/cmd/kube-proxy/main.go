// Command kube-proxy is the upstream kube-proxy, built from k8s.io/kubernetes (the optional local
// node: iptables mode, so that Pods reach Services, the `kubernetes` one included).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client metrics, as upstream's main registers them
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
