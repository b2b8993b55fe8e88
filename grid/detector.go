package grid

import (
	"math"
	"strconv"
	"time"
)

// The failure detector's arithmetic: per-peer adaptive timeouts, the node's
// view of its own health, and the crisis rule. Values in, values out; the
// heartbeat loop owns the clock and the state.
//
// How the loop is meant to drive it, every Interval:
//
//	health = health.Tick(cfg, prevTick.Add(cfg.Interval), now) // first, before draining arrivals
//	stretch := health.Multiplier()
//	suspects := count of peers whose Verdict(cfg, now, stretch) != VerdictAlive
//	if Crisis(cfg, suspects, peers) { stretch *= CrisisStretch(cfg) }
//	if !health.Starved() { report peers whose Verdict(cfg, now, stretch) == VerdictDead }
//
// and on each heartbeat datagram, peer = peer.Observe(cfg, arrival), also
// while starved. Heartbeats queued behind the observer's own stall arrive
// late and count as false suspicions of their senders; that costs a margin
// bounded by one timeout that decays, and avoids a second health signal.

// DetectorConfig tunes the failure detector. Its zero value means the
// defaults; out-of-range fields fall back to them (see withDefaults).
type DetectorConfig struct {
	Interval       time.Duration // heartbeat period, default 100ms
	MinTimeout     time.Duration // floor of the suspicion timeout, default 3*Interval
	MaxTimeout     time.Duration // ceiling of the suspicion timeout, default 10s
	DeadAfter      float64       // dead when silence exceeds DeadAfter × timeout; default 2, at least 1
	CrisisFraction float64       // more than this fraction of peers suspect at once = crisis; default 0.34, 1 disables
}

const (
	defaultInterval       = 100 * time.Millisecond
	defaultMaxTimeout     = 10 * time.Second
	defaultDeadAfter      = 2
	defaultCrisisFraction = 0.34
)

// withDefaults returns a copy with every unset or invalid field replaced by
// its default. It never writes into the caller's struct.
func (c DetectorConfig) withDefaults() DetectorConfig {
	if c.Interval <= 0 {
		c.Interval = defaultInterval
	}
	if c.MinTimeout <= 0 {
		c.MinTimeout = 3 * c.Interval
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = defaultMaxTimeout
	}
	if c.MaxTimeout < c.MinTimeout {
		c.MaxTimeout = c.MinTimeout
	}
	switch {
	case math.IsNaN(c.DeadAfter) || c.DeadAfter <= 0:
		c.DeadAfter = defaultDeadAfter
	case c.DeadAfter < 1: // dead before suspect makes no sense
		c.DeadAfter = 1
	}
	switch {
	case math.IsNaN(c.CrisisFraction) || c.CrisisFraction <= 0:
		c.CrisisFraction = defaultCrisisFraction
	case c.CrisisFraction > 1:
		c.CrisisFraction = 1
	}
	return c
}

// Verdict is one observer's local opinion of a peer. It is only a report:
// the monitors' consensus declares death.
type Verdict uint8

// Verdicts, in increasing order of alarm.
const (
	VerdictAlive   Verdict = iota // heard from recently enough
	VerdictSuspect                // silent past the timeout (tempFail)
	VerdictDead                   // silent past DeadAfter × timeout (permFail): report it
)

func (v Verdict) String() string {
	switch v {
	case VerdictAlive:
		return "alive"
	case VerdictSuspect:
		return "suspect"
	case VerdictDead:
		return "dead"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Tuning of the estimator. Gains are powers of two, as in TCP's RTO.
const (
	// meanGain: the mean of inter-arrival gaps follows samples with gain 1/8
	// (Jacobson's SRTT).
	meanGain = 8
	// devUpGain, devDownGain: the deviation rises with gain 1/4 (Karels'
	// RTTVAR) but falls with gain only 1/256 (a time constant of ~25 s at
	// 100 ms): an envelope of recent deviations rather than their mean. A
	// symmetric EWMA of |err| forgets a lossy link's occasional 200 ms gap
	// within a few beats and sits far below the gaps loss really produces
	// (their tail is geometric): with 10% loss it gives a timeout of ~280 ms
	// and false Dead verdicts within minutes; the envelope gives ~400 ms,
	// while a clean link (±5 ms jitter) stays at the MinTimeout floor.
	devUpGain   = 4
	devDownGain = 256
	// devK: timeout = mean + devK·dev + margin, as in TCP's RTO.
	devK = 4
	// marginDecay: each on-time heartbeat shrinks the margin by 1/1024: a
	// time constant of ~100 s at 100 ms, so a lesson learned from a false
	// suspicion lasts through the next minute or so, and is gone (×1/20)
	// after five minutes of normal flow.
	marginDecay = 1024
	// burstDivisor: arrivals closer than Interval/16 to the previous one are
	// one burst (heartbeats queued behind a pause, here or at the peer). A
	// burst says "alive now" but nothing about the peer's pacing, so it
	// refreshes the last arrival without feeding the estimator.
	burstDivisor = 16
)

// PeerDetector is the estimate one node keeps of one peer: when it was last
// heard from, the mean and deviation of the gaps between its heartbeats, and
// a safety margin learned from false suspicions. It is a value: a copy is a
// snapshot, and every method returns a new value instead of changing d.
//
//	timeout = clamp(mean + 4·dev + margin, MinTimeout, MaxTimeout)
//	Suspect when silence > timeout·stretch, Dead when silence > DeadAfter·timeout·stretch
//
// A gap longer than the timeout (the peer was suspect, then spoke: a false
// suspicion) does not enter the mean and the deviation at all: it grows the
// margin by the overshoot, at least one Interval and at most the timeout
// itself. So one huge gap (a 2 s pause) at most doubles the timeout, repeated
// ones escalate geometrically, and every on-time heartbeat then shrinks the
// margin by 1/1024: back to the floor within minutes, never slow forever.
type PeerDetector struct {
	last            time.Time     // last arrival
	mean            time.Duration // EWMA of inter-arrival gaps
	dev             time.Duration // asymmetric EWMA of |gap - mean|
	margin          time.Duration // learned from false suspicions, decays
	falseSuspicions int
}

// NewPeerDetector starts a detector as if a heartbeat arrived at now, with a
// mean of one Interval and a deviation of 3/4 of it: a timeout of 4 Intervals
// (Dead after 800 ms at the defaults) that falls to the link's own within
// ~10 s. A fresh detector knows nothing of the link yet (TCP too starts with
// a long RTO); starting at the floor instead gave a false Dead about once in
// 2000 ten-minute runs at 10% loss, from 5 losses in a row before the
// deviation had learned the loss. A loop that adds a peer before its first
// heartbeat can be expected should create the detector when that heartbeat
// is due, not earlier.
func NewPeerDetector(cfg DetectorConfig, now time.Time) PeerDetector {
	cfg = cfg.withDefaults()
	return PeerDetector{last: now, mean: cfg.Interval, dev: cfg.Interval * 3 / 4}
}

// Observe returns the detector after a heartbeat arrived at now. An arrival
// older than the last one (a clock that went backwards, a reordered call)
// teaches nothing and is ignored.
func (d PeerDetector) Observe(cfg DetectorConfig, now time.Time) PeerDetector {
	cfg = cfg.withDefaults()
	gap := now.Sub(d.last)
	if gap < 0 {
		return d
	}
	d.last = now
	if gap < cfg.Interval/burstDivisor {
		return d
	}
	timeout := d.Timeout(cfg)
	if gap > timeout {
		// A false suspicion (as judged without any stretch). Learn it in the
		// margin, bounded so one event at most doubles the timeout.
		d.falseSuspicions++
		grow := min(max(gap-timeout, cfg.Interval), timeout)
		d.margin = min(d.margin+grow, cfg.MaxTimeout)
		return d
	}
	d.margin -= d.margin / marginDecay
	err := gap - d.mean // Karels: deviation against the mean before this sample
	if err < 0 {
		err = -err
	}
	d.mean += (gap - d.mean) / meanGain
	if err > d.dev {
		d.dev += (err - d.dev) / devUpGain
	} else {
		d.dev -= (d.dev - err) / devDownGain
	}
	return d
}

// Timeout is the suspicion timeout before any stretch:
// clamp(mean + 4·dev + margin, MinTimeout, MaxTimeout).
func (d PeerDetector) Timeout(cfg DetectorConfig) time.Duration {
	cfg = cfg.withDefaults()
	t := d.mean + devK*d.dev + d.margin
	return min(max(t, cfg.MinTimeout), cfg.MaxTimeout)
}

// Silence is how long the peer has been silent at now (never negative).
func (d PeerDetector) Silence(now time.Time) time.Duration {
	return max(now.Sub(d.last), 0)
}

// maxStretch keeps a runaway multiplier from overflowing the arithmetic; it
// is far beyond anything Health and Crisis produce together (5 × 3).
const maxStretch = 1000

// Verdict judges the peer at now. stretch (at least 1; less, or NaN, counts
// as 1) multiplies the timeout after the clamp, so a crisis or the
// observer's own ill health can hold verdicts back beyond MaxTimeout.
func (d PeerDetector) Verdict(cfg DetectorConfig, now time.Time, stretch float64) Verdict {
	cfg = cfg.withDefaults()
	if !(stretch >= 1) {
		stretch = 1
	}
	stretch = min(stretch, maxStretch)
	silence := float64(d.Silence(now))
	limit := float64(d.Timeout(cfg)) * stretch
	switch {
	case silence > limit*cfg.DeadAfter:
		return VerdictDead
	case silence > limit:
		return VerdictSuspect
	}
	return VerdictAlive
}

// Estimate returns the current mean and deviation of the inter-arrival gaps
// and the learned safety margin.
func (d PeerDetector) Estimate() (mean, dev, margin time.Duration) {
	return d.mean, d.dev, d.margin
}

// FalseSuspicions counts the heartbeats that arrived after a silence longer
// than the (unstretched) timeout: times this peer was suspect and was not dead.
func (d PeerDetector) FalseSuspicions() int { return d.falseSuspicions }

// Health is the node's view of its own health, after Lifeguard's local
// health awareness: a node whose own ticks fire late is being starved (CPU
// throttling, a stall, swapping), so the silence it sees in others is likely
// its own fault. The score rises quickly with lateness and decays slowly.
// It is a value: Tick returns a new one.
//
// Only tick lateness feeds it. Lifeguard also counts unanswered probes; here
// a node that hears from nobody is handled by Crisis instead, because an
// "unanswered" signal would keep the only observer of a dead peer in a
// two-node cluster from ever reporting it.
type Health struct {
	score int // 0 (healthy) .. healthMax
	calm  int // on-time ticks since the score last changed
}

const (
	// healthMax bounds the score, so that recovery takes a bounded time:
	// healthMax × healthCalmTicks on-time ticks (3.2 s at 100 ms).
	healthMax = 8
	// healthStarved: from this score on, the node accuses nobody. A tick
	// 200 ms late (4 points) is enough; a silence that could make a healthy
	// peer look dead (2 × MinTimeout = 600 ms) needs a longer stall.
	healthStarved = 4
	// healthCalmTicks on-time ticks in a row lower the score by one.
	healthCalmTicks = 4
)

// Tick returns the health after one of the node's own ticks, due at expected,
// ran at actual. expected must be computed by the loop (the previous tick's
// actual time plus Interval), not taken from a time.Ticker: a process that
// was stopped receives the ticker's value stamped at its resumption.
//
// Each full half Interval of lateness adds a point (so 20 ms of scheduling
// noise adds none, 300 ms adds 6); healthCalmTicks on-time ticks remove one.
func (h Health) Tick(cfg DetectorConfig, expected, actual time.Time) Health {
	cfg = cfg.withDefaults()
	step := max(cfg.Interval/2, 1)
	if late := actual.Sub(expected); late >= step {
		pts := min(late/step, healthMax)
		h.score = min(h.score+int(pts), healthMax)
		h.calm = 0
		return h
	}
	if h.score > 0 {
		h.calm++
		if h.calm >= healthCalmTicks {
			h.score--
			h.calm = 0
		}
	}
	return h
}

// Multiplier is the factor (>= 1) by which to stretch every timeout:
// 1 + score/2, up to 5 at the worst, like Lifeguard's (1 + LHM) on a scale
// of 8 halved: a mildly late node waits somewhat longer, a starved one does
// not accuse at all (see Starved).
func (h Health) Multiplier() float64 { return 1 + float64(h.score)/2 }

// Starved reports that the node is too unhealthy to accuse anyone now.
func (h Health) Starved() bool { return h.score >= healthStarved }

// Score is the current score, 0 (healthy) to 8.
func (h Health) Score() int { return h.score }

// crisisMinSuspects is how many peers must be suspect at once before a
// crisis is possible.
const crisisMinSuspects = 3

// Crisis reports whether so many peers look dead at once that the likely
// fault is a partition or the observer itself, so verdicts should wait
// (stretch by CrisisStretch). The rule:
//
//	suspects > CrisisFraction × peers, and suspects >= min(3, peers), and peers >= 2
//
// Three suspects keep one or two real crashes (the common case, even in a
// 5-node cluster where two of four peers is 50%) from slowing their own
// detection; with 2 or 3 peers, "all of them at once" is the crisis, and a
// single peer's silence tells nothing about the observer. From 9 peers on,
// the fraction decides (4 of 9, 341 of 1000). The majority side of a 2|3
// partition of five nodes sees 2 of 4 suspects: no crisis, and it may
// rightly declare the minority dead; the minority sees 3 of 4: a crisis.
// suspects above peers counts as peers.
func Crisis(cfg DetectorConfig, suspects, peers int) bool {
	cfg = cfg.withDefaults()
	if peers < 2 || suspects <= 0 {
		return false
	}
	suspects = min(suspects, peers)
	if suspects < min(crisisMinSuspects, peers) {
		return false
	}
	return float64(suspects) > cfg.CrisisFraction*float64(peers)
}

// CrisisStretch is the timeout multiplier during a crisis: 3, which moves a
// Dead verdict from 600 ms to 1.8 s at the defaults: long enough for a
// partition to heal or a stalled observer to notice itself, short enough
// that real deaths are still declared within seconds.
func CrisisStretch(cfg DetectorConfig) float64 { return 3 }
