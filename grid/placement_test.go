package grid

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"
)

var placementSeed = flag.Uint64("placement.seed", 0, "seed of the randomised placement tests (0: a new one, logged)")

// placementRand returns the generator of a randomised test and logs its seed,
// so a failure can be replayed with -placement.seed.
func placementRand(t testing.TB) *rand.Rand {
	seed := *placementSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -placement.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

// naiveOrder is the full ranking, written the obvious way: the textbook
// FNV-1a from the standard library, math.Log and a full sort. It shares no
// code with Rank.
func naiveOrder(cands []Member, key []byte) []Member {
	type scored struct {
		m     Member
		score float64
	}
	all := make([]scored, len(cands))
	for i, m := range cands {
		h := fnv.New64a()
		h.Write([]byte(m.NodeID))
		h.Write([]byte{0})
		h.Write(key)
		x := h.Sum64()
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		u := (float64(x>>12) + 0.5) / math.Exp2(52)
		w := 1.0
		if m.Slots > 0 {
			w = float64(m.Slots)
		}
		all[i] = scored{m, w / -math.Log(u)}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].score != all[j].score {
			return all[i].score > all[j].score
		}
		return all[i].m.NodeID < all[j].m.NodeID
	})
	out := make([]Member, len(all))
	for i, c := range all {
		out[i] = c.m
	}
	return out
}

// naiveRank is Rank's deliberately naive twin: the naive full ranking, then
// two greedy passes with maps.
func naiveRank(cands []Member, key []byte, k int) []Member {
	all := naiveOrder(cands, key)
	var out []Member
	hosts, zones := map[string]bool{}, map[string]bool{}
	for _, m := range all {
		if len(out) < k && !hosts[m.Host()] && !zones[m.Zone()] {
			out = append(out, m)
			hosts[m.Host()], zones[m.Zone()] = true, true
		}
	}
	for _, m := range all {
		if len(out) < k && !hosts[m.Host()] {
			out = append(out, m)
			hosts[m.Host()] = true
		}
	}
	return out
}

func rankedIDs(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.NodeID
	}
	return out
}

func cloneCandidates(ms []Member) []Member {
	return View{Members: ms}.Clone().Members
}

// randomCandidates makes 1..maxN members with unique IDs, host labels that
// collide (some nodes unlabelled, i.e. their own host), zero to four zones
// (some nodes unlabelled), zones either fixed per host or drawn per node, and
// slots 0..16.
func randomCandidates(rng *rand.Rand, maxN int) []Member {
	n := 1 + rng.IntN(maxN)
	hosts := 1 + rng.IntN(n)
	zones := rng.IntN(5)
	perHost := rng.IntN(2) == 0
	hostZone := map[string]string{}
	ms := make([]Member, n)
	for i, id := range rng.Perm(1000)[:n] {
		m := Member{NodeID: fmt.Sprintf("n%03d", id), Slots: rng.IntN(17), State: Alive, Labels: map[string]string{}}
		if rng.IntN(5) > 0 {
			m.Labels["host"] = fmt.Sprintf("h%d", rng.IntN(hosts))
		}
		zone := ""
		if zones > 0 && rng.IntN(10) > 0 {
			zone = fmt.Sprintf("z%d", rng.IntN(zones))
		}
		if perHost {
			if z, ok := hostZone[m.Host()]; ok {
				zone = z
			}
			hostZone[m.Host()] = zone
		}
		if zone != "" {
			m.Labels["zone"] = zone
		}
		ms[i] = m
	}
	return ms
}

func randomRankKey(rng *rand.Rand) []byte {
	key := make([]byte, rng.IntN(41))
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	return key
}

func countDistinct(ms []Member, f func(Member) string) int {
	set := map[string]bool{}
	for _, m := range ms {
		set[f(m)] = true
	}
	return len(set)
}

// hostsEachInOneZone reports whether every host lies in a single zone, the
// normal case, where zone spreading can always be achieved.
func hostsEachInOneZone(ms []Member) bool {
	zoneOf := map[string]string{}
	for _, m := range ms {
		if z, ok := zoneOf[m.Host()]; ok && z != m.Zone() {
			return false
		}
		zoneOf[m.Host()] = m.Zone()
	}
	return true
}

// checkRankProperties checks the properties every result of Rank must have,
// independently of the twin.
func checkRankProperties(cands []Member, k int, out []Member) error {
	byID := map[string]Member{}
	for _, m := range cands {
		byID[m.NodeID] = m
	}
	hosts := map[string]bool{}
	for _, m := range out {
		if c, ok := byID[m.NodeID]; !ok || !reflect.DeepEqual(c, m) {
			return fmt.Errorf("%s is not one of the candidates as given", m.NodeID)
		}
		if hosts[m.Host()] {
			return fmt.Errorf("two picks on host %q: %v", m.Host(), rankedIDs(out))
		}
		hosts[m.Host()] = true
	}
	if want := min(k, countDistinct(cands, Member.Host)); len(out) != want {
		return fmt.Errorf("got %d members, want %d (k=%d): %v", len(out), want, k, rankedIDs(out))
	}
	if hostsEachInOneZone(cands) {
		// Every zone has a member on an unused host while the zone is unused,
		// so the first pass reaches min(k, zones) zones, and does so first.
		want := min(k, countDistinct(cands, Member.Zone))
		if got := countDistinct(out[:want], Member.Zone); got != want {
			return fmt.Errorf("first %d picks span %d zones: %v", want, got, rankedIDs(out))
		}
	}
	return nil
}

func TestRankMatchesNaiveTwin(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	var longer, full int
	for trial := range 1000 {
		cands := randomCandidates(rng, 60)
		key := randomRankKey(rng)
		k := 1 + rng.IntN(5)
		if trial%10 == 0 {
			k = len(cands) + rng.IntN(3) // everything, and more than there is
		}
		got := rankedIDs(Rank(cands, key, k))
		want := rankedIDs(naiveRank(cands, key, k))
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d, k=%d, key %x, candidates %v:\nRank  %v\ntwin  %v", trial, k, key, cands, got, want)
		}
		kk := min(k, len(cands))
		rk := newRanker(cands, kk)
		rk.rank(key, kk)
		longer += rk.longer
		full += rk.fullRuns
	}
	// Both ways past the exactly ranked prefix must have been compared.
	t.Logf("walks past the prefix: %d, full rankings: %d", longer, full)
	if longer == 0 || full == 0 {
		t.Fatalf("walks past the prefix: %d, full rankings: %d: the slow paths went unchecked", longer, full)
	}
}

// TestRankLargeMatchesNaiveTwin compares large views, where most members are
// never scored exactly, and small zones or crowded hosts push walks past the
// ranked prefix.
func TestRankLargeMatchesNaiveTwin(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	var longer, full int
	for trial := range 20 {
		n := 100 + rng.IntN(900)
		hosts := 1 + rng.IntN(n)
		small := rng.IntN(n) // the first members form a zone of their own
		cands := make([]Member, n)
		for i := range cands {
			zone := fmt.Sprintf("z%d", rng.IntN(2))
			if i < small/10 {
				zone = "small"
			}
			cands[i] = Member{
				NodeID: fmt.Sprintf("node-%04d", i), Slots: rng.IntN(33), State: Alive,
				Labels: map[string]string{"host": fmt.Sprintf("h%d", rng.IntN(hosts)), "zone": zone},
			}
		}
		for range 10 {
			key, k := randomRankKey(rng), 1+rng.IntN(5)
			rk := newRanker(cands, k)
			var got []string
			for _, p := range rk.rank(key, k) {
				got = append(got, cands[p.i].NodeID)
			}
			if want := rankedIDs(naiveRank(cands, key, k)); !slices.Equal(got, want) {
				t.Fatalf("trial %d (n=%d, hosts %d), k=%d, key %x: Rank %v, twin %v", trial, n, hosts, k, key, got, want)
			}
			longer += rk.longer
			full += rk.fullRuns
		}
	}
	t.Logf("walks past the prefix: %d, full rankings: %d", longer, full)
	if longer <= full {
		t.Fatalf("walks past the prefix: %d, full rankings: %d: no walk was checked on a longer prefix", longer, full)
	}
}

// TestRankPrefixIsExact checks the fast path's invariant directly: the
// prefix it ranks is exactly the top of the full ranking, though it skips the
// logarithm of most members.
func TestRankPrefixIsExact(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	for trial := range 200 {
		cands := randomCandidates(rng, 300)
		key := randomRankKey(rng)
		rk := newRanker(cands, 3)
		for i := range rk.cands {
			rk.cands[i].u = unitOpen(mix64(fnvBytes(rk.cands[i].prefix, key)))
		}
		n := 1 + rng.IntN(min(len(cands), 40))
		rk.rankPrefix(n)
		var got []string
		for _, i := range rk.order {
			got = append(got, cands[i].NodeID)
		}
		if want := rankedIDs(naiveOrder(cands, key)[:n]); !slices.Equal(got, want) {
			t.Fatalf("trial %d (%d members), key %x: top %d ranked %v, want %v", trial, len(cands), key, n, got, want)
		}
	}
}

// TestRankSkipIsSafe checks the premise of the fast path: a member is never
// found below a score it reaches, least of all near u = 1 where the bound
// weight/(1-u) is tightest; and the bound is not vacuous.
func TestRankSkipIsSafe(t *testing.T) {
	rng := placementRand(t)
	for i := range 200000 {
		u := unitOpen(rng.Uint64())
		if i%2 == 0 {
			u = 1 - float64(1+rng.IntN(1<<20))*0x1p-53 // within 2^-33 of 1
		}
		c := rankCand{weight: float64(1 + rng.IntN(64)), u: u}
		score := c.weight / -portableLog(u)
		if c.below(score) {
			t.Fatalf("weight %v, u %v: found below its own score %v", c.weight, u, score)
		}
		// For u > 1/2, -ln(u) < 2(1-u): twice the score is beyond the bound.
		if u > 0.5 && !c.below(2*score) {
			t.Fatalf("weight %v, u %v: not found below twice its score %v", c.weight, u, score)
		}
	}
	// The largest u of all, where bound and score differ least.
	for j := 1; j <= 4096; j += 2 {
		for _, w := range []float64{1, 3, 7, 16, 1000, 1 << 30} {
			c := rankCand{weight: w, u: 1 - float64(j)*0x1p-53}
			if score := w / -portableLog(c.u); c.below(score) {
				t.Fatalf("weight %v, u = 1-%d*2^-53: found below its own score %v", w, j, score)
			}
		}
	}
}

// Equal scores are as good as impossible with 52-bit hashes, so the tie-break
// is checked on the comparison itself.
func TestRankTiesByNodeID(t *testing.T) {
	rk := newRanker([]Member{{NodeID: "b"}, {NodeID: "a"}, {NodeID: "c"}}, 3)
	for i := range rk.cands {
		rk.cands[i].score = 1.5
	}
	if !rk.before(1, 0) || rk.before(0, 1) || !rk.before(0, 2) || rk.before(2, 1) {
		t.Fatalf("equal scores are not ordered by node ID")
	}
	rk.cands[2].score = 2
	if !rk.before(2, 1) {
		t.Fatalf("a higher score does not rank first")
	}
}

func TestRankAntiAffinity(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	spread := 0
	for trial := range 1000 {
		cands := randomCandidates(rng, 60)
		before := cloneCandidates(cands)
		k := 1 + rng.IntN(5)
		out := Rank(cands, randomRankKey(rng), k)
		if err := checkRankProperties(cands, k, out); err != nil {
			t.Fatalf("trial %d: %v\ncandidates %v", trial, err, cands)
		}
		if !reflect.DeepEqual(before, cands) {
			t.Fatalf("trial %d: Rank modified its candidates", trial)
		}
		if hostsEachInOneZone(cands) && countDistinct(cands, Member.Zone) >= k {
			spread++
		}
	}
	t.Logf("%d trials could spread over k zones", spread)
	if spread < 100 {
		t.Fatalf("only %d trials could spread over k zones: the generator no longer exercises zones", spread)
	}
}

func TestRankExhaustiveSmall(t *testing.T) {
	t.Parallel()
	hosts := []string{"h0", "h1", "h2"}
	zones := []string{"", "z0", "z1"}
	views := 0
	for n := 1; n <= 4; n++ {
		total := 1
		for range n {
			total *= len(hosts) * len(zones)
		}
		for code := range total {
			cands := make([]Member, n)
			c := code
			for i := range cands {
				d := c % (len(hosts) * len(zones))
				c /= len(hosts) * len(zones)
				labels := map[string]string{"host": hosts[d%len(hosts)]}
				if z := zones[d/len(hosts)]; z != "" {
					labels["zone"] = z
				}
				cands[i] = Member{NodeID: string(rune('a' + i)), Labels: labels, Slots: (code + i) % 3, State: Alive}
			}
			views++
			for k := 1; k <= 4; k++ {
				key := fmt.Appendf(nil, "item-%d", code%7)
				out := Rank(cands, key, k)
				if err := checkRankProperties(cands, k, out); err != nil {
					t.Fatalf("%v, k=%d, key %q: %v", cands, k, key, err)
				}
				if got, want := rankedIDs(out), rankedIDs(naiveRank(cands, key, k)); !slices.Equal(got, want) {
					t.Fatalf("%v, k=%d, key %q: Rank %v, twin %v", cands, k, key, got, want)
				}
			}
		}
	}
	if views != 9+81+729+6561 {
		t.Fatalf("enumerated %d views", views)
	}
}

func TestRankIgnoresCandidateOrder(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	for trial := range 500 {
		cands := randomCandidates(rng, 60)
		key := randomRankKey(rng)
		k := 1 + rng.IntN(5)
		want := rankedIDs(Rank(cands, key, k))
		shuffled := slices.Clone(cands)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := rankedIDs(Rank(shuffled, key, k)); !slices.Equal(got, want) {
			t.Fatalf("trial %d: %v in one order, %v in another", trial, want, got)
		}
		if trial%100 == 0 {
			v := View{Members: cands}
			w := View{Members: shuffled}
			if got, want := w.Ownership(3), v.Ownership(3); !sameOwnership(got, want) {
				t.Fatalf("trial %d: ownership depends on member order: moved %v", trial, got.Moved(want))
			}
		}
	}
}

func TestRankEdgeCases(t *testing.T) {
	ms := []Member{{NodeID: "a"}, {NodeID: "b"}}
	for _, k := range []int{0, -1} {
		if out := Rank(ms, []byte("x"), k); out != nil {
			t.Errorf("k=%d: got %v, want nil", k, out)
		}
	}
	if out := Rank(nil, []byte("x"), 3); out != nil {
		t.Errorf("no candidates: got %v", out)
	}
	if out := Rank(ms, nil, 5); len(out) != 2 {
		t.Errorf("k above the candidates: got %v", rankedIDs(out))
	}
	// Slots <= 0 weigh 1: the same ranking as explicit ones, for every key.
	zero := []Member{{NodeID: "a", Slots: 0}, {NodeID: "b", Slots: -3}, {NodeID: "c", Slots: 1}}
	ones := []Member{{NodeID: "a", Slots: 1}, {NodeID: "b", Slots: 1}, {NodeID: "c", Slots: 1}}
	for i := range 1000 {
		key := binary.BigEndian.AppendUint32(nil, uint32(i))
		if a, b := rankedIDs(Rank(zero, key, 3)), rankedIDs(Rank(ones, key, 3)); !slices.Equal(a, b) {
			t.Fatalf("key %x: slots<=0 rank %v, slots 1 rank %v", key, a, b)
		}
	}
}

// TestPlacementGolden pins placement to fixed values. Every node of a
// cluster, whatever its CPU or Go version, must compute these; a change here
// is a change of the placement contract, which moves data.
func TestPlacementGolden(t *testing.T) {
	for key, want := range map[string]int{"": 20, "job-1": 170, "item-42": 167} {
		if got := BucketOf([]byte(key)); got != want {
			t.Errorf("BucketOf(%q) = %d, want %d", key, got, want)
		}
	}
	v := placementGoldenView()
	for key, want := range map[string][]string{
		"job-1":   {"g08", "g03", "g10"},
		"item-42": {"g00", "g10", "g05"},
	} {
		if got := rankedIDs(Rank(v.Live(), []byte(key), 3)); !slices.Equal(got, want) {
			t.Errorf("Rank(%q) = %q, want %q", key, got, want)
		}
	}
	if got, want := ownershipDigest(v.Ownership(3)), "bc81ac8f6f21aef1"; got != want {
		t.Errorf("ownership digest %s, want %s", got, want)
	}
}

func placementGoldenView() View {
	v := View{Epoch: 7}
	for i := range 12 {
		v.Members = append(v.Members, Member{
			NodeID: fmt.Sprintf("g%02d", i),
			Slots:  1 + i%4,
			State:  Alive,
			Labels: map[string]string{"host": fmt.Sprintf("h%d", i/2), "zone": fmt.Sprintf("z%d", i%3)},
		})
	}
	return v
}

func ownershipDigest(o *Ownership) string {
	h := sha256.New()
	for b := range NumBuckets {
		for _, id := range o[b] {
			h.Write([]byte(id))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func TestPlacementPortableLog(t *testing.T) {
	rng := placementRand(t)
	check := func(u float64) {
		got, want := portableLog(u), math.Log(u)
		if math.Abs(got-want) > math.Abs(want)*0x1p-51 {
			t.Fatalf("portableLog(%v) = %v, math.Log = %v", u, got, want)
		}
	}
	for _, u := range []float64{0x1p-53, 0.25, 0.5, math.Sqrt2 / 2, 0.7071067811865476, 0.999, 1 - 0x1p-53} {
		check(u)
	}
	for range 100000 {
		check(unitOpen(rng.Uint64()))
	}
	if got := portableLog(0.5); got != -math.Ln2 {
		t.Errorf("portableLog(0.5) = %v, want %v", got, -math.Ln2)
	}
	if u := unitOpen(math.MaxUint64); !(u < 1) {
		t.Errorf("unitOpen(max) = %v, want < 1", u)
	}
	if u := unitOpen(0); !(u > 0) {
		t.Errorf("unitOpen(0) = %v, want > 0", u)
	}
}

func TestBucketOfRangeAndSpread(t *testing.T) {
	t.Parallel()
	const keys = 100000
	var counts [NumBuckets]int
	for i := range keys {
		b := BucketOf(fmt.Appendf(nil, "job-%d", i))
		if b < 0 || b >= NumBuckets {
			t.Fatalf("BucketOf = %d", b)
		}
		counts[b]++
	}
	mean := float64(keys) / NumBuckets
	chi2, lo, hi := 0.0, counts[0], counts[0]
	for _, c := range counts {
		d := float64(c) - mean
		chi2 += d * d / mean
		lo, hi = min(lo, c), max(hi, c)
	}
	// 1023 degrees of freedom: mean 1023, standard deviation about 45.
	t.Logf("chi-square %.0f (df 1023), min/mean %.2f, max/mean %.2f", chi2, float64(lo)/mean, float64(hi)/mean)
	if chi2 > 1023+6*45 || chi2 < 1023-6*45 {
		t.Errorf("chi-square %.0f, far from 1023", chi2)
	}
	if float64(hi)/mean > 1.5 || float64(lo)/mean < 0.5 {
		t.Errorf("bucket sizes from %d to %d around a mean of %.1f", lo, hi, mean)
	}
}

func equalCapacityView(prefix string, n, slots int) View {
	v := View{Epoch: 1}
	for i := range n {
		v.Members = append(v.Members, Member{NodeID: fmt.Sprintf("%s%02d", prefix, i), Slots: slots, State: Alive})
	}
	return v
}

func shareSpread(counts map[string]int, n int, total int) (lo, hi float64) {
	mean := float64(total) / float64(n)
	lo = math.Inf(1)
	if len(counts) < n {
		lo = 0
	}
	for _, c := range counts {
		lo, hi = min(lo, float64(c)/mean), max(hi, float64(c)/mean)
	}
	return lo, hi
}

func TestOwnershipBalance(t *testing.T) {
	const n = 50
	for _, prefix := range []string{"node-", "n", "worker-eu-", "x"} {
		v := equalCapacityView(prefix, n, 8)
		o := v.Ownership(DefaultReplicas)
		replicas, primaries := map[string]int{}, map[string]int{}
		for b := range NumBuckets {
			if len(o[b]) != DefaultReplicas {
				t.Fatalf("bucket %d has owners %v", b, o[b])
			}
			primaries[o.Primary(b)]++
			for _, id := range o[b] {
				replicas[id]++
			}
		}
		rlo, rhi := shareSpread(replicas, n, NumBuckets*DefaultReplicas)
		plo, phi := shareSpread(primaries, n, NumBuckets)
		t.Logf("%q: replicas min/mean %.2f max/mean %.2f; primaries min/mean %.2f max/mean %.2f", prefix, rlo, rhi, plo, phi)
		// Replicas per node: mean 61.4, sd about 7.6; primaries: mean 20.5, sd about 4.4.
		if rhi > 1.5 || rlo < 0.5 {
			t.Errorf("%q: replicas per node from %.2f to %.2f of the mean", prefix, rlo, rhi)
		}
		if phi > 1.8 || plo < 0.3 {
			t.Errorf("%q: primaries per node from %.2f to %.2f of the mean", prefix, plo, phi)
		}
	}
}

func TestRankBalanceOverKeys(t *testing.T) {
	t.Parallel()
	const n, keys = 50, 100000
	live := equalCapacityView("node-", n, 8).Live()
	counts := map[string]int{}
	// The ranker behind Rank, reused from key to key as Ownership does, to
	// keep the test fast; Rank itself is held to the naive twin above.
	rk := newRanker(live, 1)
	var key [8]byte
	for i := range keys {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		counts[live[rk.rank(key[:], 1)[0].i].NodeID]++
	}
	lo, hi := shareSpread(counts, n, keys)
	t.Logf("%d keys over %d nodes: min/mean %.3f max/mean %.3f", keys, n, lo, hi)
	// 2000 keys per node, sd about 44: 1.1 is more than four sd away.
	if hi > 1.1 || lo < 0.9 {
		t.Errorf("keys per node from %.3f to %.3f of the mean", lo, hi)
	}
}

func TestRankWeighted(t *testing.T) {
	t.Parallel()
	const keys = 30000
	live := equalCapacityView("node-", 10, 4).Live()
	live = append(live, Member{NodeID: "big", Slots: 8, State: Alive})
	counts := map[string]int{}
	rk := newRanker(live, 1) // as in TestRankBalanceOverKeys
	var key [8]byte
	for i := range keys {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		counts[live[rk.rank(key[:], 1)[0].i].NodeID]++
	}
	others := float64(keys-counts["big"]) / 10
	ratio := float64(counts["big"]) / others
	// Expected exactly 2 (weighted rendezvous is proportional); the standard
	// deviation of the ratio is about 0.03.
	t.Logf("double slots: %d keys against %.0f per single node: ratio %.3f", counts["big"], others, ratio)
	if ratio < 1.7 || ratio > 2.3 {
		t.Errorf("a node with double slots gets %.2f times a single node's share, want about 2", ratio)
	}
}

func TestOwnershipMovementDistinctHosts(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	const r = DefaultReplicas
	worst := 0.0
	for trial := range 12 {
		n := 5 + rng.IntN(56)
		v := equalCapacityView(fmt.Sprintf("t%d-", trial), n, 4)
		before := v.Ownership(r)

		// Join: a newcomer takes the buckets it now wins and nothing else moves.
		joined := v.Clone()
		joined.Members = append(joined.Members, Member{NodeID: "newcomer", Slots: 4, State: Alive})
		after := joined.Ownership(r)
		moved := before.Moved(after)
		if got := after.BucketsOf("newcomer"); !slices.Equal(moved, got) {
			t.Fatalf("trial %d (n=%d): join moved %d buckets, the newcomer owns %d", trial, n, len(moved), len(got))
		}
		for _, b := range moved {
			if in, out := ownersNotIn(after[b], before[b]), ownersNotIn(before[b], after[b]); len(in) != 1 || len(out) != 1 {
				t.Fatalf("trial %d: bucket %d went from %v to %v", trial, b, before[b], after[b])
			}
		}
		expect := float64(NumBuckets*r) / float64(n+1)
		ratio := float64(len(moved)) / expect
		worst = max(worst, ratio)
		if float64(len(moved)) > 2*expect+10 || float64(len(moved)) < expect/2-10 {
			t.Fatalf("trial %d: a join into %d nodes moved %d buckets, expected about %.0f", trial, n, len(moved), expect)
		}

		// Leave (declared dead): only the leaver's buckets move, each to one
		// replacement, and the table is the one of a view without it.
		gone := v.Members[rng.IntN(n)].NodeID
		left := v.Clone()
		var without View
		for i, m := range left.Members {
			if m.NodeID == gone {
				left.Members[i].State = Dead
			} else {
				without.Members = append(without.Members, m)
			}
		}
		afterLeave := left.Ownership(r)
		if trial%3 == 0 {
			if w := without.Ownership(r); !sameOwnership(afterLeave, w) {
				t.Fatalf("trial %d: a dead member still shapes the table: moved %v", trial, afterLeave.Moved(w))
			}
		}
		moved = before.Moved(afterLeave)
		if got := before.BucketsOf(gone); !slices.Equal(moved, got) {
			t.Fatalf("trial %d (n=%d): leave moved %d buckets, the leaver owned %d", trial, n, len(moved), len(got))
		}
		for _, b := range moved {
			if in, out := ownersNotIn(afterLeave[b], before[b]), ownersNotIn(before[b], afterLeave[b]); len(out) != 1 || out[0] != gone || len(in) != min(1, n-r) {
				t.Fatalf("trial %d: bucket %d went from %v to %v", trial, b, before[b], afterLeave[b])
			}
		}
	}
	t.Logf("worst join movement: %.2f times the expected R/N", worst)
}

func sameOwnership(a, b *Ownership) bool {
	for i := range NumBuckets {
		if !slices.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// ownersNotIn returns the IDs of a that are not in b.
func ownersNotIn(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestOwnershipMovementWithLabels: with shared hosts, zones and unequal slots,
// a join still moves exactly the newcomer's buckets and a leave exactly the
// leaver's; what anti-affinity changes is how many. A newcomer that lands in
// a zone or on a host with little capacity wins that zone's place in many
// buckets, far more than R/N.
//
// Measured with this generator (3 zones of 2..7 hosts, 1..3 nodes per host,
// slots 1..16, the newcomer on an existing or a new host) over 32,000 joins:
// moved buckets average 1.01 times R/N; a join moves a median 0.107 of the
// table, 0.40 at the 99th percentile, at worst 0.82 (4.8 times R/N).
// Resampled in runs of 16 joins, the total moved is at most 1.60 times the
// R/N total at the 99.99th percentile. Asserted: no join above 8 times R/N,
// and a run's total at most 2 times the R/N total.
func TestOwnershipMovementWithLabels(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	const r = DefaultReplicas
	var moves, expected, worst float64
	for trial := range 16 {
		var v View
		hostsPerZone := 2 + rng.IntN(5)
		host := 0
		for zone := range 3 {
			for range hostsPerZone + rng.IntN(2) {
				for range 1 + rng.IntN(3) {
					v.Members = append(v.Members, Member{
						NodeID: fmt.Sprintf("m%02d", len(v.Members)), Slots: 1 + rng.IntN(16), State: Alive,
						Labels: map[string]string{"host": fmt.Sprintf("h%d", host), "zone": fmt.Sprintf("z%d", zone)},
					})
				}
				host++
			}
		}
		n := len(v.Members)
		before := v.Ownership(r)

		labels := v.Members[rng.IntN(n)].Labels // a host that has members already
		if rng.IntN(2) == 0 {
			labels = map[string]string{"host": "new-host", "zone": fmt.Sprintf("z%d", rng.IntN(3))}
		}
		joined := v.Clone()
		joined.Members = append(joined.Members, Member{NodeID: "newcomer", Slots: 1 + rng.IntN(16), State: Alive, Labels: labels})
		after := joined.Ownership(r)
		moved := before.Moved(after)
		if got := after.BucketsOf("newcomer"); !slices.Equal(moved, got) {
			t.Fatalf("trial %d: join moved %d buckets, the newcomer owns %d", trial, len(moved), len(got))
		}
		expect := float64(NumBuckets*r) / float64(n+1)
		moves += float64(len(moved))
		expected += expect
		worst = max(worst, float64(len(moved))/expect)
		if float64(len(moved)) > 8*expect {
			t.Errorf("trial %d: a join into %d nodes moved %d buckets, %.1f times R/N", trial, n, len(moved), float64(len(moved))/expect)
		}

		gone := v.Members[rng.IntN(n)].NodeID
		left := v.Clone()
		for i := range left.Members {
			if left.Members[i].NodeID == gone {
				left.Members[i].State = Left
			}
		}
		if moved, owned := before.Moved(left.Ownership(r)), before.BucketsOf(gone); !slices.Equal(moved, owned) {
			t.Fatalf("trial %d: leave moved %d buckets, the leaver owned %d", trial, len(moved), len(owned))
		}
	}
	t.Logf("joins moved %.2f times the R/N total; worst join %.2f times R/N", moves/expected, worst)
	if moves > 2*expected {
		t.Errorf("joins moved %.2f times the R/N total", moves/expected)
	}
}

func TestOwnersMatchesOwnership(t *testing.T) {
	t.Parallel()
	rng := placementRand(t)
	for trial := range 3 {
		v := View{Members: randomCandidates(rng, 40)}
		for i := range v.Members {
			switch rng.IntN(6) {
			case 0:
				v.Members[i].State = Dead
			case 1:
				v.Members[i].State = Left
			}
		}
		slices.SortFunc(v.Members, func(a, b Member) int {
			if a.NodeID < b.NodeID {
				return -1
			}
			return 1
		})
		live := map[string]bool{}
		for _, m := range v.Live() {
			live[m.NodeID] = true
		}
		for _, r := range []int{0, 1, 3, 5} {
			o := v.Ownership(r)
			for b := range NumBuckets {
				want := rankedIDs(v.Owners(b, r))
				if !slices.Equal(o[b], want) {
					t.Fatalf("trial %d, r=%d, bucket %d: table %v, Owners %v", trial, r, b, o[b], want)
				}
				for _, id := range o[b] {
					if !live[id] {
						t.Fatalf("bucket %d owned by %s, which is not alive", b, id)
					}
				}
				if p := o.Primary(b); len(want) > 0 && p != want[0] || len(want) == 0 && p != "" {
					t.Fatalf("bucket %d: primary %q of %v", b, p, want)
				}
			}
			if r == 0 && len(live) >= DefaultReplicas && countDistinct(v.Live(), Member.Host) >= DefaultReplicas && len(o[0]) != DefaultReplicas {
				t.Fatalf("r=0 gave %d owners, want DefaultReplicas", len(o[0]))
			}
			for _, m := range v.Members {
				got := o.BucketsOf(m.NodeID)
				var want []int
				for b := range NumBuckets {
					if slices.Contains(o[b], m.NodeID) {
						want = append(want, b)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("BucketsOf(%s) = %v, want %v", m.NodeID, got, want)
				}
			}
			if d := o.Moved(o); len(d) != 0 {
				t.Fatalf("a table moved against itself: %v", d)
			}
		}
	}
}

func TestOwnershipEmptyAndMoved(t *testing.T) {
	var empty View
	o := empty.Ownership(3)
	if o.Primary(0) != "" || o.BucketsOf("a") != nil || len(o.Moved(nil)) != 0 {
		t.Fatalf("an empty view owns something")
	}
	var none *Ownership
	if none.Primary(5) != "" || none.BucketsOf("a") != nil {
		t.Fatalf("a nil table owns something")
	}
	one := SingleNode(Member{NodeID: "solo", Slots: 4}).Ownership(3)
	if got := one.BucketsOf("solo"); len(got) != NumBuckets {
		t.Fatalf("a single node owns %d buckets", len(got))
	}
	if got := one.Moved(nil); len(got) != NumBuckets {
		t.Fatalf("against a nil table %d buckets moved, want all", len(got))
	}
	// A primary swap among the same owners is not a move.
	two := equalCapacityView("p", 2, 1).Ownership(2)
	swapped := *two
	swapped[9] = []string{two[9][1], two[9][0]}
	if d := two.Moved(&swapped); len(d) != 0 {
		t.Fatalf("reordered owners counted as moved: %v", d)
	}
	swapped[9] = []string{two[9][0]}
	if d := two.Moved(&swapped); !slices.Equal(d, []int{9}) {
		t.Fatalf("a dropped owner: moved %v, want [9]", d)
	}
	// The table's slices are capped: appending to one bucket leaves the next alone.
	next := slices.Clone(two[1])
	_ = append(two[0], "intruder")
	if !slices.Equal(two[1], next) {
		t.Fatalf("appending to bucket 0 changed bucket 1: %v", two[1])
	}
	for _, b := range []int{-1, NumBuckets} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Owners(%d) did not panic", b)
				}
			}()
			empty.Owners(b, 3)
		}()
	}
}

func placementBenchView(n int) View {
	v := View{Epoch: 1}
	for i := range n {
		v.Members = append(v.Members, Member{
			NodeID: fmt.Sprintf("node-%04d", i), Slots: 4 + i%13, State: Alive,
			Labels: map[string]string{"host": fmt.Sprintf("host-%03d", i/2), "zone": fmt.Sprintf("zone-%d", i/2%3)},
		})
	}
	return v
}

func BenchmarkOwnership(b *testing.B) {
	v := placementBenchView(1000)
	b.ReportAllocs()
	for b.Loop() {
		v.Ownership(DefaultReplicas)
	}
}

func BenchmarkRank(b *testing.B) {
	live := placementBenchView(1000).Live()
	key := []byte("job-1/item-12345")
	b.ReportAllocs()
	for b.Loop() {
		Rank(live, key, DefaultReplicas)
	}
}
