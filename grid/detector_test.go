package grid

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The simulations below run in pure virtual time: arrivals and ticks are
// time.Time values computed from a seeded schedule. GRID_SEED replays one.

// simSeed returns the seed for a test: GRID_SEED if set, else a fixed
// default, mixed with the test's name so that tests do not share schedules.
func simSeed(t *testing.T) uint64 {
	t.Helper()
	base := uint64(1)
	if s := os.Getenv("GRID_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GRID_SEED=%q: %v", s, err)
		}
		base = v
	}
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	t.Logf("seed: GRID_SEED=%d (mixed with the test name)", base)
	return base ^ h.Sum64()
}

// newRand returns the random source of one run of a test: stream i of seed.
func newRand(seed, i uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, i)) }

var simEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// window is a span of time during which a process is stopped.
type window struct{ from, to time.Time }

// stops describes when a process does not run: a throttling cycle (run, then
// stop, repeating from phase) and/or explicit pauses.
type stops struct {
	run, stop time.Duration // stop == 0: no throttling
	phase     time.Time
	pauses    []window
}

// resume returns the first instant at or after t when the process runs.
func (s stops) resume(t time.Time) time.Time {
	for changed := true; changed; {
		changed = false
		if s.stop > 0 {
			cycle := s.run + s.stop
			pos := t.Sub(s.phase) % cycle
			if pos < 0 {
				pos += cycle
			}
			if pos >= s.run {
				t = t.Add(cycle - pos)
				changed = true
			}
		}
		for _, w := range s.pauses {
			if !t.Before(w.from) && t.Before(w.to) {
				t = w.to
				changed = true
			}
		}
	}
	return t
}

// peerModel is one peer's heartbeat sender as its observer sees it.
type peerModel struct {
	interval time.Duration
	jitter   time.Duration // each beat is due at k·interval ± jitter
	drift    float64       // the sender's clock runs this much fast
	loss     float64       // independent datagram loss
	stops    stops         // when the sender is stopped, due beats go out at resume
	kill     time.Time     // zero: never killed
}

// arrivals returns the arrival times at the observer of the beats due in
// (start, end], sorted.
func (m peerModel) arrivals(r *rand.Rand, start, end time.Time) []time.Time {
	var out []time.Time
	for k := 1; ; k++ {
		due := start.Add(time.Duration(float64(k) * float64(m.interval) / (1 + m.drift)))
		if m.jitter > 0 {
			due = due.Add(time.Duration(r.Int64N(int64(2*m.jitter+1))) - m.jitter)
		}
		if due.After(end) {
			break
		}
		send := m.stops.resume(due)
		if !m.kill.IsZero() && !send.Before(m.kill) {
			if due.Sub(start) > m.kill.Sub(start)+time.Minute {
				break
			}
			continue
		}
		if r.Float64() < m.loss {
			continue
		}
		out = append(out, send.Add(20*time.Microsecond+time.Duration(r.Int64N(int64(time.Millisecond)))))
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// gapStats is what a healthy observer saw of one peer: for every gap, the
// worst verdict it reached (the verdict just before the arrival that ended
// it, the maximum since a verdict only grows with silence).
type gapStats struct {
	suspects, deads int
	closest         float64 // the largest silence seen, as a fraction of the Dead threshold
	firstDead       string
}

func observeAll(cfg DetectorConfig, d PeerDetector, arrivals []time.Time) (PeerDetector, gapStats) {
	var st gapStats
	for _, a := range arrivals {
		st.closest = max(st.closest, float64(d.Silence(a))/(float64(d.Timeout(cfg))*cfg.withDefaults().DeadAfter))
		switch v := d.Verdict(cfg, a, 1); v {
		case VerdictSuspect:
			st.suspects++
		case VerdictDead:
			st.deads++
			if st.firstDead == "" {
				mean, dev, margin := d.Estimate()
				st.firstDead = fmt.Sprintf("at +%v: silence %v, timeout %v (mean %v dev %v margin %v)",
					a.Sub(simEpoch), d.Silence(a), d.Timeout(cfg), mean, dev, margin)
			}
		}
		d = d.Observe(cfg, a)
	}
	return d, st
}

// detectKill ticks the observer every Interval (phase tickPhase) from the
// kill on, and returns how long after the kill the first Dead verdict came,
// and whether a Suspect verdict was seen at a tick before it.
func detectKill(cfg DetectorConfig, d PeerDetector, kill time.Time, tickPhase time.Duration) (time.Duration, bool) {
	cfg = cfg.withDefaults()
	// Ticks fall at simEpoch + tickPhase + k·Interval; start at the first one from the kill on.
	k := (kill.Sub(simEpoch) - tickPhase + cfg.Interval - 1) / cfg.Interval
	suspect := false
	for t := simEpoch.Add(tickPhase + k*cfg.Interval); t.Sub(kill) < time.Minute; t = t.Add(cfg.Interval) {
		switch d.Verdict(cfg, t, 1) {
		case VerdictSuspect:
			suspect = true
		case VerdictDead:
			return t.Sub(kill), suspect
		}
	}
	return time.Minute, suspect
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func lan() peerModel {
	return peerModel{interval: 100 * time.Millisecond, jitter: 5 * time.Millisecond}
}

func TestDetectorKillDetectionTime(t *testing.T) {
	seed := simSeed(t)
	r := newRand(seed, 0)
	cfg := DetectorConfig{}
	// Warm a few detectors for a minute (a fresh one is cautious for ~10 s);
	// each trial continues a copy of one for 1..6 s, then kills the peer.
	var warm []PeerDetector
	for range 8 {
		d, st := observeAll(cfg, NewPeerDetector(cfg, simEpoch), lan().arrivals(r, simEpoch, simEpoch.Add(time.Minute)))
		if st.deads > 0 || st.suspects > 0 {
			t.Fatalf("seed %d: %d suspect, %d dead verdicts while warming up", seed, st.suspects, st.deads)
		}
		warm = append(warm, d)
	}
	const trials = 1000
	var times []time.Duration
	for i := range trials {
		m := lan()
		m.drift = (r.Float64() - 0.5) * 2e-3
		d := warm[r.IntN(len(warm))]
		kill := d.last.Add(time.Second + time.Duration(r.Int64N(int64(5*time.Second))))
		m.kill = kill
		d, st := observeAll(cfg, d, m.arrivals(r, d.last, kill.Add(time.Second)))
		if st.deads > 0 || st.suspects > 0 {
			t.Fatalf("seed %d trial %d: %d suspect, %d dead verdicts before the kill; first dead %s", seed, i, st.suspects, st.deads, st.firstDead)
		}
		took, suspect := detectKill(cfg, d, kill, time.Duration(r.Int64N(int64(100*time.Millisecond))))
		if !suspect {
			t.Fatalf("seed %d trial %d: Dead after %v without a Suspect verdict first", seed, i, took)
		}
		times = append(times, took)
	}
	p50, p99, worst := percentile(times, 0.50), percentile(times, 0.99), percentile(times, 1)
	t.Logf("kill → Dead verdict over %d trials: p50 %v, p99 %v, max %v", trials, p50, p99, worst)
	if p99 > time.Second {
		t.Errorf("seed %d: p99 time to Dead = %v, want <= 1s (p50 %v)", seed, p99, p50)
	}
}

func TestDetectorLossNoFalseDead(t *testing.T) {
	seed := simSeed(t)
	cfg := DetectorConfig{}
	const seeds = 20
	totalSuspects, maxFalse, closest := 0, 0, 0.0
	var detect []time.Duration
	for i := range uint64(seeds) {
		r := newRand(seed, i)
		m := lan()
		m.loss = 0.10
		m.drift = (r.Float64() - 0.5) * 2e-3
		end := simEpoch.Add(10 * time.Minute)
		m.kill = end
		d, st := observeAll(cfg, NewPeerDetector(cfg, simEpoch), m.arrivals(r, simEpoch, end.Add(time.Second)))
		if st.deads > 0 {
			t.Errorf("seed %d run %d: %d false Dead verdicts under 10%% loss; first %s", seed, i, st.deads, st.firstDead)
		}
		totalSuspects += st.suspects
		closest = max(closest, st.closest)
		maxFalse = max(maxFalse, d.FalseSuspicions())
		took, _ := detectKill(cfg, d, end, time.Duration(r.Int64N(int64(100*time.Millisecond))))
		detect = append(detect, took)
		if took > 3*time.Second {
			mean, dev, margin := d.Estimate()
			t.Errorf("seed %d run %d: kill after 10 min of 10%% loss detected after %v, want <= 3s (mean %v dev %v margin %v)",
				seed, i, took, mean, dev, margin)
		}
	}
	t.Logf("10%% loss, %d × 10 min: 0 dead, %d suspect gaps (max %d false suspicions per run), longest silence %.0f%% of the Dead threshold; kill then detected in p50 %v, max %v",
		seeds, totalSuspects, maxFalse, 100*closest, percentile(detect, 0.5), percentile(detect, 1))
}

func TestDetectorThrottledPeer(t *testing.T) {
	seed := simSeed(t)
	cfg := DetectorConfig{}
	for _, tc := range []struct{ run, stop time.Duration }{
		{50 * time.Millisecond, 50 * time.Millisecond},
		{20 * time.Millisecond, 80 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("run%v-stop%v", tc.run, tc.stop), func(t *testing.T) {
			suspects, closest := 0, 0.0
			var detect []time.Duration
			for i := range uint64(5) {
				r := newRand(seed, i)
				m := lan()
				m.loss = 0.10
				// Drift sweeps the beats' phase across the throttling cycle.
				m.drift = 1e-3 + r.Float64()*2e-3
				m.stops = stops{run: tc.run, stop: tc.stop, phase: simEpoch.Add(time.Duration(r.Int64N(int64(tc.run + tc.stop))))}
				end := simEpoch.Add(10 * time.Minute)
				kill := end.Add(time.Duration(r.Int64N(int64(time.Second))))
				m.kill = kill
				d, st := observeAll(cfg, NewPeerDetector(cfg, simEpoch), m.arrivals(r, simEpoch, kill.Add(time.Second)))
				if st.deads > 0 {
					t.Errorf("seed %d run %d: %d false Dead verdicts for a throttled peer; first %s", seed, i, st.deads, st.firstDead)
				}
				suspects += st.suspects
				closest = max(closest, st.closest)
				took, _ := detectKill(cfg, d, kill, time.Duration(r.Int64N(int64(100*time.Millisecond))))
				detect = append(detect, took)
				if took > 3*time.Second {
					t.Errorf("seed %d run %d: throttled peer killed, detected after %v, want <= 3s", seed, i, took)
				}
			}
			t.Logf("throttled %v/%v + 10%% loss, 5 × 10 min: 0 dead, %d suspect gaps, longest silence %.0f%% of the Dead threshold; kill detected in p50 %v, max %v",
				tc.run, tc.stop, suspects, 100*closest, percentile(detect, 0.5), percentile(detect, 1))
		})
	}
}

// A peer pauses 2 s three times (a GC storm, a VM migration), then behaves:
// the detector learns to tolerate the pauses, then forgets.
func TestDetectorPauseThenRecover(t *testing.T) {
	seed := simSeed(t)
	r := newRand(seed, 0)
	cfg := DetectorConfig{}
	m := lan()
	m.loss = 0.01
	var pauses []window
	for i := range 3 {
		from := simEpoch.Add(time.Minute + time.Duration(i)*20*time.Second)
		pauses = append(pauses, window{from, from.Add(2 * time.Second)})
	}
	m.stops = stops{pauses: pauses}
	afterPauses := pauses[2].to.Add(10 * time.Second)
	later := afterPauses.Add(5 * time.Minute)
	arr := m.arrivals(r, simEpoch, later)

	var before, after []time.Time
	for _, a := range arr {
		if a.Before(afterPauses) {
			before = append(before, a)
		} else {
			after = append(after, a)
		}
	}
	d0 := NewPeerDetector(cfg, simEpoch)
	d1, st := observeAll(cfg, d0, before)
	_, _, margin1 := d1.Estimate()
	t.Logf("after three 2 s pauses: %d false suspicions, %d dead gaps, timeout %v, margin %v", d1.FalseSuspicions(), st.deads, d1.Timeout(cfg), margin1)
	if d1.FalseSuspicions() < 3 || margin1 <= 0 {
		t.Fatalf("seed %d: after three 2 s pauses FalseSuspicions=%d margin=%v, want >= 3 and > 0", seed, d1.FalseSuspicions(), margin1)
	}
	// A kill right now is detected slowly: the peer has shown it pauses.
	// (Without that, the check of the decay below could not fail.)
	slow, _ := detectKill(cfg, d1, afterPauses, 0)
	if slow <= 1500*time.Millisecond {
		t.Errorf("seed %d: right after the pauses a kill is detected in %v; the margin should still hold it past 1.5s", seed, slow)
	}

	d2, st := observeAll(cfg, d1, after)
	if st.deads > 0 || st.suspects > 0 {
		t.Errorf("seed %d: %d suspect, %d dead gaps during normal flow after the pauses", seed, st.suspects, st.deads)
	}
	_, _, margin2 := d2.Estimate()
	fast, _ := detectKill(cfg, d2, later, 50*time.Millisecond)
	t.Logf("kill right after the pauses: detected in %v; after 5 min of normal flow: margin %v, timeout %v, detected in %v",
		slow, margin2, d2.Timeout(cfg), fast)
	if fast > 1500*time.Millisecond {
		t.Errorf("seed %d: after 5 min of normal flow a kill is detected in %v, want <= 1.5s (margin %v)", seed, fast, margin2)
	}
	if margin2 > margin1/4 {
		t.Errorf("seed %d: margin went from %v to only %v in 5 min", seed, margin1, margin2)
	}
}

func TestDetectorObserveEdges(t *testing.T) {
	cfg := DetectorConfig{}
	d := NewPeerDetector(cfg, simEpoch)
	mean0, dev0, margin0 := d.Estimate()
	if mean0 != 100*time.Millisecond || dev0 != 75*time.Millisecond || margin0 != 0 || d.Timeout(cfg) != 400*time.Millisecond {
		t.Fatalf("fresh detector: mean %v dev %v margin %v timeout %v", mean0, dev0, margin0, d.Timeout(cfg))
	}
	if got := d.Observe(cfg, simEpoch.Add(-time.Second)); got != d {
		t.Errorf("an arrival from the past changed the detector: %+v", got)
	}
	// A burst refreshes the last arrival but not the estimate.
	b := d.Observe(cfg, simEpoch.Add(time.Millisecond))
	if m, dv, _ := b.Estimate(); m != mean0 || dv != dev0 || b.Silence(simEpoch.Add(time.Millisecond)) != 0 {
		t.Errorf("burst arrival: mean %v dev %v silence %v", m, dv, b.Silence(simEpoch.Add(time.Millisecond)))
	}
	// One huge gap: a false suspicion. The margin grows by at least one
	// Interval and at most the timeout; mean and dev do not move.
	for _, tc := range []struct{ gap, margin time.Duration }{
		{401 * time.Millisecond, 100 * time.Millisecond},
		{650 * time.Millisecond, 250 * time.Millisecond},
		{2 * time.Second, 400 * time.Millisecond},
		{time.Hour, 400 * time.Millisecond},
	} {
		h := d.Observe(cfg, simEpoch.Add(tc.gap))
		m, dv, mg := h.Estimate()
		if h.FalseSuspicions() != 1 || mg != tc.margin || m != mean0 || dv != dev0 || h.Timeout(cfg) != 400*time.Millisecond+tc.margin {
			t.Errorf("gap %v: false %d, mean %v dev %v margin %v (want %v), timeout %v", tc.gap, h.FalseSuspicions(), m, dv, mg, tc.margin, h.Timeout(cfg))
		}
	}
	// A gap within the timeout is no false suspicion.
	if h := d.Observe(cfg, simEpoch.Add(400*time.Millisecond)); h.FalseSuspicions() != 0 {
		t.Errorf("a gap equal to the timeout counted as a false suspicion")
	}
	// Gaps within the timeout are no false suspicion and decay the margin.
	h := d.Observe(cfg, simEpoch.Add(time.Hour))
	_, _, mg := h.Estimate()
	h2 := h.Observe(cfg, simEpoch.Add(time.Hour+100*time.Millisecond))
	if _, _, mg2 := h2.Estimate(); h2.FalseSuspicions() != 1 || mg2 >= mg {
		t.Errorf("on-time beat after a false suspicion: false %d, margin %v -> %v", h2.FalseSuspicions(), mg, mg2)
	}
	// Margin and timeout stay within MaxTimeout whatever happens.
	c := DetectorConfig{MaxTimeout: 2 * time.Second}
	x, now := NewPeerDetector(c, simEpoch), simEpoch
	for range 100 {
		now = now.Add(time.Hour)
		x = x.Observe(c, now)
		if _, _, mg := x.Estimate(); mg > 2*time.Second || x.Timeout(c) > 2*time.Second {
			t.Fatalf("margin %v timeout %v beyond MaxTimeout", mg, x.Timeout(c))
		}
	}
	if x.FalseSuspicions() != 100 {
		t.Errorf("FalseSuspicions = %d, want 100", x.FalseSuspicions())
	}
}

func TestDetectorConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		in, want DetectorConfig
	}{
		{DetectorConfig{}, DetectorConfig{100 * time.Millisecond, 300 * time.Millisecond, 10 * time.Second, 2, 0.34}},
		{DetectorConfig{Interval: time.Second}, DetectorConfig{time.Second, 3 * time.Second, 10 * time.Second, 2, 0.34}},
		{DetectorConfig{Interval: 5 * time.Second}, DetectorConfig{5 * time.Second, 15 * time.Second, 15 * time.Second, 2, 0.34}},
		{DetectorConfig{-1, -1, -1, -1, -1}, DetectorConfig{100 * time.Millisecond, 300 * time.Millisecond, 10 * time.Second, 2, 0.34}},
		{DetectorConfig{DeadAfter: 0.5, CrisisFraction: 7}, DetectorConfig{100 * time.Millisecond, 300 * time.Millisecond, 10 * time.Second, 1, 1}},
		{DetectorConfig{DeadAfter: math.NaN(), CrisisFraction: math.NaN()}, DetectorConfig{100 * time.Millisecond, 300 * time.Millisecond, 10 * time.Second, 2, 0.34}},
		{DetectorConfig{10, 20, 30, 4, 0.5}, DetectorConfig{10, 20, 30, 4, 0.5}},
	} {
		if got := tc.in.withDefaults(); got != tc.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// naiveVerdict is the verdict arithmetic written out plainly, in exact
// integers: stretch and DeadAfter must be multiples of 1/4 (so the twin
// counts in quarters), which the table below respects.
func naiveVerdict(cfg DetectorConfig, mean, dev, margin, silence time.Duration, stretch float64) Verdict {
	interval := cfg.Interval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	lo := cfg.MinTimeout
	if lo <= 0 {
		lo = 3 * interval
	}
	hi := cfg.MaxTimeout
	if hi <= 0 {
		hi = 10 * time.Second
	}
	if hi < lo {
		hi = lo
	}
	deadAfter := cfg.DeadAfter
	if math.IsNaN(deadAfter) || deadAfter <= 0 {
		deadAfter = 2
	} else if deadAfter < 1 {
		deadAfter = 1
	}
	timeout := mean + 4*dev + margin
	if timeout < lo {
		timeout = lo
	}
	if timeout > hi {
		timeout = hi
	}
	if math.IsNaN(stretch) || stretch < 1 {
		stretch = 1
	}
	if stretch > 1000 {
		stretch = 1000
	}
	if silence < 0 {
		silence = 0
	}
	s4, d4 := int64(stretch*4), int64(deadAfter*4)
	if float64(s4) != stretch*4 || float64(d4) != deadAfter*4 {
		panic("naiveVerdict: stretch and DeadAfter must be multiples of 1/4")
	}
	// silence > timeout·stretch·deadAfter, times 16 on both sides.
	if int64(silence)*16 > int64(timeout)*s4*d4 {
		return VerdictDead
	}
	if int64(silence)*4 > int64(timeout)*s4 {
		return VerdictSuspect
	}
	return VerdictAlive
}

func TestDetectorVerdictNaiveTwin(t *testing.T) {
	ms := time.Millisecond
	cfgs := []DetectorConfig{{}, {Interval: 50 * ms, MinTimeout: 120 * ms, MaxTimeout: 900 * ms, DeadAfter: 3}, {DeadAfter: 1}, {DeadAfter: 2.5, MaxTimeout: 200 * ms}}
	// Means, devs and margins that hit both clamps exactly (100+4·50 = 300 ms
	// = MinTimeout), miss them by a nanosecond, and overshoot MaxTimeout.
	means := []time.Duration{0, 100 * ms, 3 * time.Second}
	devs := []time.Duration{0, 1, 50 * ms, 3 * time.Second}
	margins := []time.Duration{0, 1, 250 * ms, 20 * time.Second}
	stretches := []float64{math.NaN(), math.Inf(-1), -1, 0, 0.5, 1, 1.25, 1.5, 2.5, 3, 15, 1000, 1e6, math.Inf(1)}
	n := 0
	for _, cfg := range cfgs {
		for _, mean := range means {
			for _, dev := range devs {
				for _, margin := range margins {
					d := PeerDetector{last: simEpoch, mean: mean, dev: dev, margin: margin}
					T := d.Timeout(cfg)
					for _, stretch := range stretches {
						// Silences on and around both thresholds, and far off.
						s := stretch
						if !(s >= 1) {
							s = 1
						}
						s = min(s, 1000)
						da := cfg.withDefaults().DeadAfter
						sus := time.Duration(float64(T) * s)
						dead := time.Duration(float64(T) * s * da)
						for _, sil := range []time.Duration{-time.Second, 0, sus - 1, sus, sus + 1, dead - 1, dead, dead + 1, 2 * dead, 1000 * time.Hour} {
							now := simEpoch.Add(sil)
							got := d.Verdict(cfg, now, stretch)
							want := naiveVerdict(cfg, mean, dev, margin, sil, stretch)
							n++
							if got != want {
								t.Fatalf("cfg %+v mean %v dev %v margin %v silence %v stretch %v: Verdict = %v, naive = %v (timeout %v)",
									cfg, mean, dev, margin, sil, stretch, got, want, T)
							}
						}
					}
				}
			}
		}
	}
	// No overflow at the extremes of time and stretch.
	d := PeerDetector{last: simEpoch, mean: math.MaxInt64 / 8, dev: math.MaxInt64 / 8, margin: math.MaxInt64 / 8}
	if v := d.Verdict(DetectorConfig{MaxTimeout: math.MaxInt64 / 4}, simEpoch.Add(math.MaxInt64/2), math.Inf(1)); v != VerdictAlive {
		t.Errorf("extreme timeout and stretch: %v, want alive", v)
	}
	if v := d.Verdict(DetectorConfig{}, simEpoch.Add(math.MaxInt64), math.Inf(1)); v != VerdictDead {
		t.Errorf("extreme silence: %v, want dead", v)
	}
	t.Logf("%d cases agree", n)
}

// Verdicts never get better with more silence, nor worse with more stretch.
func TestDetectorVerdictMonotone(t *testing.T) {
	r := newRand(simSeed(t), 0)
	cfg := DetectorConfig{}
	for range 20000 {
		d := PeerDetector{last: simEpoch, mean: time.Duration(r.Int64N(int64(time.Second))),
			dev: time.Duration(r.Int64N(int64(time.Second))), margin: time.Duration(r.Int64N(int64(3 * time.Second)))}
		s1 := time.Duration(r.Int64N(int64(30 * time.Second)))
		s2 := s1 + time.Duration(r.Int64N(int64(time.Second)))
		x1 := 1 + r.Float64()*10
		x2 := x1 + r.Float64()
		if d.Verdict(cfg, simEpoch.Add(s2), x1) < d.Verdict(cfg, simEpoch.Add(s1), x1) ||
			d.Verdict(cfg, simEpoch.Add(s1), x2) > d.Verdict(cfg, simEpoch.Add(s1), x1) {
			t.Fatalf("not monotone: %+v silences %v %v stretches %v %v", d, s1, s2, x1, x2)
		}
	}
}

func TestHealth(t *testing.T) {
	cfg := DetectorConfig{}
	ms := time.Millisecond
	tick := func(h Health, late time.Duration) Health {
		return h.Tick(cfg, simEpoch, simEpoch.Add(late))
	}
	var h Health
	if h.Score() != 0 || h.Multiplier() != 1 || h.Starved() {
		t.Fatalf("zero Health: score %d multiplier %v starved %v", h.Score(), h.Multiplier(), h.Starved())
	}
	for i := range 1000 {
		late := 20 * ms
		if i%2 == 1 {
			late = -5 * ms // a tick that ran early is on time
		}
		if h = tick(h, late); h.Score() != 0 || h.Multiplier() != 1 || h.Starved() {
			t.Fatalf("after %d ticks 20 ms late: score %d multiplier %v starved %v", i+1, h.Score(), h.Multiplier(), h.Starved())
		}
	}
	// A single mildly late tick stretches but does not starve.
	if m := tick(Health{}, 60*ms); m.Starved() || m.Multiplier() <= 1 {
		t.Errorf("one tick 60 ms late: starved %v multiplier %v", m.Starved(), m.Multiplier())
	}
	h = tick(h, 300*ms)
	if !h.Starved() || h.Multiplier() <= 1 {
		t.Fatalf("a tick 300 ms late: starved %v multiplier %v score %d", h.Starved(), h.Multiplier(), h.Score())
	}
	// On-time ticks bring it back, slowly but within a bound.
	for range 20 {
		h = tick(h, 300*ms)
	}
	if h.Score() != healthMax || h.Multiplier() != 5 {
		t.Errorf("score %d multiplier %v after many late ticks, want the cap %d and 5", h.Score(), h.Multiplier(), healthMax)
	}
	unstarved, healthy := -1, -1
	for i := 1; i <= 100 && healthy < 0; i++ {
		h = tick(h, 10*ms)
		if !h.Starved() && unstarved < 0 {
			unstarved = i
		}
		if h.Score() == 0 && h.Multiplier() == 1 {
			healthy = i
		}
	}
	t.Logf("from the worst score: accuses again after %d on-time ticks, fully healthy after %d", unstarved, healthy)
	if unstarved < 5 || unstarved > 30 || healthy < 0 || healthy > 40 {
		t.Errorf("recovery from the worst score: accuses after %d ticks, healthy after %d; want 5..30 and <= 40", unstarved, healthy)
	}
	// A late tick resets the calm streak.
	h = Health{score: 1}
	for range healthCalmTicks - 1 {
		h = tick(h, 0)
	}
	if h = tick(h, 100*ms); h.Score() != 3 {
		t.Errorf("score 1 + a tick 100 ms late = %d, want 3", h.Score())
	}
}

// The observer itself is starved (throttled, or stalled for up to 3 s at
// random), all its peers are healthy but lossy: it must hold back, not
// accuse. The loop is modelled as documented in detector.go: a tick runs
// Health.Tick first; arrivals queued behind a stall are processed at the
// resumption, before or after the tick at random (like a select).
func TestHealthStarvedObserverAccusesNobody(t *testing.T) {
	seed := simSeed(t)
	cfg := DetectorConfig{}.withDefaults()
	type variant struct {
		name  string
		stops func(r *rand.Rand, end time.Time) stops
	}
	throttle := func(run, stop time.Duration) func(*rand.Rand, time.Time) stops {
		return func(r *rand.Rand, _ time.Time) stops {
			return stops{run: run, stop: stop, phase: simEpoch.Add(time.Duration(r.Int64N(int64(run + stop))))}
		}
	}
	for _, v := range []variant{
		{"throttled-50-50", throttle(50*time.Millisecond, 50*time.Millisecond)},
		{"throttled-20-80", throttle(20*time.Millisecond, 80*time.Millisecond)},
		{"stalls", func(r *rand.Rand, end time.Time) stops {
			var s stops
			for t := simEpoch.Add(time.Second); t.Before(end); {
				l := 50*time.Millisecond + time.Duration(r.Int64N(int64(3*time.Second)))
				s.pauses = append(s.pauses, window{t, t.Add(l)})
				t = t.Add(l + 2*time.Second + time.Duration(r.Int64N(int64(8*time.Second))))
			}
			return s
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			r := newRand(seed, 0)
			const peers = 4
			end := simEpoch.Add(10 * time.Minute)
			me := v.stops(r, end)
			type ev struct {
				at    time.Time
				peer  int
				first bool // at a resumption, before the tick
			}
			var evs []ev
			for p := range peers {
				m := lan()
				m.loss = 0.10
				m.drift = (r.Float64() - 0.5) * 2e-3
				for _, a := range m.arrivals(r, simEpoch, end) {
					evs = append(evs, ev{at: me.resume(a), peer: p, first: r.IntN(2) == 0})
				}
			}
			slices.SortStableFunc(evs, func(a, b ev) int { return a.at.Compare(b.at) })
			dets := make([]PeerDetector, peers)
			for p := range dets {
				dets[p] = NewPeerDetector(cfg, simEpoch)
			}
			var h Health
			heldBack, suspectReports, deadReports, crises, maxScore := 0, 0, 0, 0, 0
			prev, i := simEpoch, 0
			for {
				expected := prev.Add(cfg.Interval)
				actual := me.resume(expected)
				if actual.After(end) {
					break
				}
				for ; i < len(evs) && (evs[i].at.Before(actual) || evs[i].at.Equal(actual) && evs[i].first); i++ {
					dets[evs[i].peer] = dets[evs[i].peer].Observe(cfg, evs[i].at)
				}
				h = h.Tick(cfg, expected, actual)
				prev = actual
				maxScore = max(maxScore, h.Score())
				if h.Starved() {
					heldBack++
					continue
				}
				stretch := h.Multiplier()
				suspects := 0
				for _, d := range dets {
					if d.Verdict(cfg, actual, stretch) != VerdictAlive {
						suspects++
					}
				}
				if Crisis(cfg, suspects, peers) {
					crises++
					stretch *= CrisisStretch(cfg)
				}
				for p, d := range dets {
					switch d.Verdict(cfg, actual, stretch) {
					case VerdictSuspect:
						suspectReports++
					case VerdictDead:
						deadReports++
						if deadReports == 1 {
							t.Errorf("seed %d: false Dead report of peer %d at +%v: silence %v, timeout %v, stretch %v, health %d",
								seed, p, actual.Sub(simEpoch), d.Silence(actual), d.Timeout(cfg), stretch, h.Score())
						}
					}
				}
			}
			t.Logf("10 min, %d peers with 10%% loss: %d dead reports, %d suspect verdicts, %d ticks held back (max score %d), %d crisis ticks",
				peers, deadReports, suspectReports, heldBack, maxScore, crises)
			if v.name == "stalls" && heldBack == 0 {
				t.Errorf("seed %d: stalls of up to 3 s never made the observer hold back", seed)
			}
		})
	}
}

// crisisTwin is the documented rule with the default fraction, in integers.
func crisisTwin(suspects, peers int) bool {
	if peers < 2 || suspects <= 0 {
		return false
	}
	if suspects > peers {
		suspects = peers
	}
	need := 3
	if peers < 3 {
		need = peers
	}
	return suspects >= need && 100*suspects > 34*peers
}

func TestCrisis(t *testing.T) {
	cfg := DetectorConfig{}
	for _, tc := range []struct {
		suspects, peers int
		want            bool
	}{
		{0, 0, false}, {1, 1, false}, {5, 1, false},
		{1, 2, false}, {2, 2, true},
		{2, 3, false}, {3, 3, true},
		{1, 4, false}, {2, 4, false}, {3, 4, true}, {4, 4, true}, // 5-node cluster
		{2, 5, false}, {3, 5, true},
		{3, 8, true}, {3, 9, false}, {4, 9, true},
		{34, 100, false}, {35, 100, true},
		{17, 50, false}, {18, 50, true},
		{340, 1000, false}, {341, 1000, true}, {1000, 1000, true}, {5000, 1000, true},
		{-1, 10, false}, {3, -1, false},
	} {
		if got := Crisis(cfg, tc.suspects, tc.peers); got != tc.want {
			t.Errorf("Crisis(%d suspects of %d peers) = %v, want %v", tc.suspects, tc.peers, got, tc.want)
		}
	}
	for peers := 1; peers <= 1000; peers++ {
		first := -1
		for s := 0; s <= peers+1; s++ {
			got := Crisis(cfg, s, peers)
			if got != crisisTwin(s, peers) {
				t.Fatalf("Crisis(%d, %d) = %v, twin says %v", s, peers, got, !got)
			}
			if got && first < 0 {
				first = s
			}
			if !got && first >= 0 {
				t.Fatalf("Crisis(%d, %d) false after Crisis(%d, %d) true", s, peers, first, peers)
			}
		}
	}
	// Other fractions; 1 disables the crisis.
	if !Crisis(DetectorConfig{CrisisFraction: 0.5}, 6, 10) || Crisis(DetectorConfig{CrisisFraction: 0.5}, 5, 10) {
		t.Error("fraction 0.5: want 6 of 10 a crisis and 5 of 10 not")
	}
	if Crisis(DetectorConfig{CrisisFraction: 1}, 1000, 1000) {
		t.Error("fraction 1 should disable the crisis")
	}
	if s := CrisisStretch(cfg); s < 2 || s > 5 {
		t.Errorf("CrisisStretch = %v", s)
	}
}
