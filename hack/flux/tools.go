//go:build tools

// Package tools pins source-controller (a main package) as a dependency of this wrapper module
// so that `go mod tidy` keeps its requirements; hack/flux/build.sh builds it with `go build`.
package tools

import _ "github.com/fluxcd/source-controller"
