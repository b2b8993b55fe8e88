package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// telemetry installs the process's OpenTelemetry providers: metrics go to a
// Prometheus registry served on /metrics. Spans (job.submit, item.execute)
// are exported only when the standard OTEL_TRACES_EXPORTER variable asks:
// "console" writes them to stderr as JSON. OTLP export is not built in (it
// would bring gRPC into the binary); asking for it logs a warning.
type telemetry struct {
	meter  *sdkmetric.MeterProvider
	tracer *sdktrace.TracerProvider
	reg    *prometheus.Registry
	srv    *http.Server
	addr   string
}

func startTelemetry(httpAddr string, log *slog.Logger) (*telemetry, error) {
	t := &telemetry{reg: prometheus.NewRegistry()}
	exp, err := otelprom.New(otelprom.WithRegisterer(t.reg))
	if err != nil {
		return nil, fmt.Errorf("metrics exporter: %w", err)
	}
	t.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	var topts []sdktrace.TracerProviderOption
	switch v := os.Getenv("OTEL_TRACES_EXPORTER"); v {
	case "", "none":
	case "console":
		se, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
		if err != nil {
			return nil, fmt.Errorf("trace exporter: %w", err)
		}
		topts = append(topts, sdktrace.WithBatcher(se))
	default:
		log.Warn("OTEL_TRACES_EXPORTER names an exporter this binary does not have; spans are not exported", "exporter", v, "available", "console, none")
	}
	t.tracer = sdktrace.NewTracerProvider(topts...)
	otel.SetMeterProvider(t.meter)
	otel.SetTracerProvider(t.tracer)
	if httpAddr == "" {
		return t, nil
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w (pick another with --metrics, or --metrics '' to turn it off)", httpAddr, err)
	}
	t.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return t, nil
}

func (t *telemetry) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if t.srv != nil {
		t.srv.Shutdown(ctx)
	}
	t.meter.Shutdown(ctx)
	t.tracer.Shutdown(ctx)
}
