// Package otlpenv builds tasker serve's trace exporter from the standard
// OpenTelemetry environment variables. It is kept apart from package
// tracing so that programs that embed tasker (libtasker) do not link the
// OTLP exporter and its dependencies unless they use it.
package otlpenv

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Enabled reports whether the standard OpenTelemetry environment asks for
// traces: $OTEL_EXPORTER_OTLP_ENDPOINT or $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// set, $OTEL_TRACES_EXPORTER not "none", $OTEL_SDK_DISABLED not "true".
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") ||
		strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// ExporterFromEnv returns an OTLP/HTTP (protobuf) exporter configured by
// the standard variables (endpoint, headers, timeout, compression,
// certificates). A protocol other than http/protobuf is refused.
func ExporterFromEnv(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto != "" && proto != "http/protobuf" {
		return nil, fmt.Errorf("OTLP protocol %q: tasker exports traces over http/protobuf only", proto)
	}
	return otlptracehttp.New(ctx)
}
