package sched

import (
	"context"
	"sync/atomic"

	"github.com/gridnode/gridnode/plugins"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentation = "github.com/gridnode/gridnode/sched"

// metrics are the scheduler's OpenTelemetry instruments. They go to whatever
// providers the process installed (cmd/gridnode exports them on /metrics).
type metrics struct {
	tracer        trace.Tracer
	executions    metric.Int64Counter
	duration      metric.Float64Histogram
	jobsSubmitted metric.Int64Counter
	jobsDone      metric.Int64Counter
	items         metric.Int64Counter
	storageErrors metric.Int64Counter
	quarantines   metric.Int64Counter
	decisions     metric.Int64Counter
	lost          metric.Int64Counter
	movedItems    metric.Int64Counter
	// What Node.Stats reports, counted beside the instruments.
	nMoved, nLost, nResumed, nTakeovers, nCopies atomic.Uint64
}

func newMetrics() *metrics {
	m := otel.Meter(instrumentation)
	var ms metrics
	ms.tracer = otel.Tracer(instrumentation)
	// Instrument constructors only fail on invalid names; ours are constants.
	ms.movedItems, _ = m.Int64Counter("gridnode.items.moved", metric.WithDescription("Items of jobs this node is home to that moved to a new coordinator (the old one died, left or restarted)."))
	ms.executions, _ = m.Int64Counter("gridnode.executions", metric.WithDescription("Executions finished, by outcome status."))
	ms.duration, _ = m.Float64Histogram("gridnode.execution.duration", metric.WithUnit("s"), metric.WithDescription("Wall time of executions."))
	ms.jobsSubmitted, _ = m.Int64Counter("gridnode.jobs.submitted", metric.WithDescription("Jobs accepted by this node."))
	ms.jobsDone, _ = m.Int64Counter("gridnode.jobs.finished", metric.WithDescription("Jobs finished, by final state."))
	ms.items, _ = m.Int64Counter("gridnode.items.submitted", metric.WithDescription("Work items accepted by this node."))
	ms.storageErrors, _ = m.Int64Counter("gridnode.storage.errors", metric.WithDescription("Writes the node's disk refused."))
	ms.quarantines, _ = m.Int64Counter("gridnode.quarantines", metric.WithDescription("Times a node was quarantined for a module: its results kept disagreeing with the canonical ones."))
	ms.decisions, _ = m.Int64Counter("gridnode.items.decided", metric.WithDescription("Items this node coordinated to a decision, by how: agreed (at the first executions), more (disagreement or losses added executions), or the failure reason."))
	ms.lost, _ = m.Int64Counter("gridnode.executions.lost", metric.WithDescription("Executions this node coordinated that produced no usable outcome (their node died or restarted, a deadline passed, the worker crashed)."))
	return &ms
}

func (m *metrics) decided(how string) {
	m.decisions.Add(context.Background(), 1, metric.WithAttributes(attribute.String("how", how)))
}

func (m *metrics) startExecute(ctx context.Context, jobID, itemID string) (context.Context, trace.Span) {
	return m.tracer.Start(ctx, "item.execute", trace.WithAttributes(
		attribute.String("gridnode.job", jobID), attribute.String("gridnode.item", itemID)))
}

func (m *metrics) endExecute(ctx context.Context, span trace.Span, out plugins.Outcome) {
	status := attribute.String("status", string(out.Status))
	m.executions.Add(ctx, 1, metric.WithAttributes(status))
	m.duration.Record(ctx, out.Duration.Seconds(), metric.WithAttributes(status))
	span.SetAttributes(status)
	if out.Status != plugins.StatusOK {
		span.SetStatus(codes.Error, out.Message)
	}
	span.End()
}

func (m *metrics) jobsFinished(state string) {
	m.jobsDone.Add(context.Background(), 1, metric.WithAttributes(attribute.String("state", state)))
}

// observeRunning registers gauges of the scheduler's running executions and
// slots. Close the registration when the node stops: the meter outlives the
// node in a process that starts several (tests, the benchmark).
func (m *metrics) observeRunning(e *executor) (metric.Registration, error) {
	meter := otel.Meter(instrumentation)
	running, err := meter.Int64ObservableGauge("gridnode.executions.running", metric.WithDescription("Executions running now."))
	if err != nil {
		return nil, err
	}
	slots, err := meter.Int64ObservableGauge("gridnode.slots", metric.WithDescription("Execution slots of this node."))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r, _ := e.load()
		o.ObserveInt64(running, int64(r))
		o.ObserveInt64(slots, int64(e.slots))
		return nil
	}, running, slots)
}
