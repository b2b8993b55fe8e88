package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// telemetry installs the process's OpenTelemetry providers: metrics go to a
// Prometheus registry served on /metrics; spans are sampled by the standard
// OTEL_TRACES_SAMPLER variables and kept in-process (no exporter is built in).
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
	t.tracer = sdktrace.NewTracerProvider()
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
