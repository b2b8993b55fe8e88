package grid

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentation = "github.com/gridnode/gridnode/grid"

// metrics counts what the membership protocol does, both as plain atomics
// (Status and simulations read them) and as OpenTelemetry instruments.
type metrics struct {
	hbSent, hbReceived, suspicions, deaths, undeadCount atomic.Int64
	epochNow                                            atomic.Uint64

	sentC, receivedC, suspicionsC, deathsC, undeadC metric.Int64Counter
	reg                                             metric.Registration
}

func newMetrics(c *Cluster) *metrics {
	m := otel.Meter(instrumentation)
	var ms metrics
	// Instrument constructors only fail on invalid names; ours are constants.
	ms.sentC, _ = m.Int64Counter("gridnode.heartbeats.sent", metric.WithDescription("Heartbeats sent."))
	ms.receivedC, _ = m.Int64Counter("gridnode.heartbeats.received", metric.WithDescription("Heartbeats received from members."))
	ms.suspicionsC, _ = m.Int64Counter("gridnode.suspicions", metric.WithDescription("Times a watched peer became suspect."))
	ms.deathsC, _ = m.Int64Counter("gridnode.deaths.declared", metric.WithDescription("Deaths this node declared as the monitors' leader."))
	ms.undeadC, _ = m.Int64Counter("gridnode.undead", metric.WithDescription("Times this node learnt it had been declared dead and rejoined."))
	epoch, _ := m.Int64ObservableGauge("gridnode.epoch", metric.WithDescription("The epoch of this node's view."))
	quorum, _ := m.Int64ObservableGauge("gridnode.quorum", metric.WithDescription("1 while this node holds a fresh view from the monitors' majority."))
	timeout, _ := m.Float64ObservableGauge("gridnode.detector.timeout", metric.WithUnit("s"), metric.WithDescription("The failure detector's current timeout per watched peer."))
	ms.reg, _ = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		o.ObserveInt64(epoch, int64(ms.epochNow.Load()))
		q := int64(0)
		if c.Quorum() == nil {
			q = 1
		}
		o.ObserveInt64(quorum, q)
		for _, p := range c.Status().Members {
			if p.Watched {
				o.ObserveFloat64(timeout, p.Timeout.Seconds(), metric.WithAttributes(attribute.String("peer", p.NodeID)))
			}
		}
		return nil
	}, epoch, quorum, timeout)
	return &ms
}

func (m *metrics) close() {
	if m.reg != nil {
		m.reg.Unregister()
	}
}

func (m *metrics) sent()          { m.hbSent.Add(1); m.sentC.Add(context.Background(), 1) }
func (m *metrics) received()      { m.hbReceived.Add(1); m.receivedC.Add(context.Background(), 1) }
func (m *metrics) suspected()     { m.suspicions.Add(1); m.suspicionsC.Add(context.Background(), 1) }
func (m *metrics) death()         { m.deaths.Add(1); m.deathsC.Add(context.Background(), 1) }
func (m *metrics) undead()        { m.undeadCount.Add(1); m.undeadC.Add(context.Background(), 1) }
func (m *metrics) epoch(e uint64) { m.epochNow.Store(e) }
