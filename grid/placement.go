package grid

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// Placement is weighted rendezvous (highest random weight) hashing with
// anti-affinity. Every node computes the same owners from the view alone: no
// ring, no tokens, no placement state to replicate or repair. When a member
// joins, the only keys that change owners are those the newcomer now wins;
// when one leaves, only the keys it owned. That is what keeps a join or a
// death from reshuffling the whole cluster's data.

// NumBuckets is the fixed number of hash buckets. It never changes with the
// cluster's size, so a key's bucket is stable forever; only the bucket's
// owners move.
const NumBuckets = 1024

// DefaultReplicas is R, the number of owners of a bucket: the primary and two
// backups, so a majority survives one lost owner.
const DefaultReplicas = 3

// BucketOf maps a key (a job ID, an item ID) to its bucket, 0..NumBuckets-1:
// the first 8 bytes of SHA-256(key), big-endian, mod NumBuckets. SHA-256
// because keys may be chosen by clients and must still spread evenly, and its
// output is the same on every machine.
func BucketOf(key []byte) int {
	sum := sha256.Sum256(key)
	return int(binary.BigEndian.Uint64(sum[:8]) % NumBuckets)
}

// bucketKeyLen is the length of a bucket's rendezvous key.
const bucketKeyLen = len("bucket:") + 2

// bucketKey writes the rendezvous key of bucket b into buf: "bucket:"
// followed by b as 2 bytes big-endian. The encoding is part of the placement
// contract: changing it moves every bucket.
func bucketKey(buf *[bucketKeyLen]byte, b int) []byte {
	copy(buf[:], "bucket:")
	binary.BigEndian.PutUint16(buf[len("bucket:"):], uint16(b))
	return buf[:]
}

func checkBucket(b int) {
	if b < 0 || b >= NumBuckets {
		panic(fmt.Sprintf("grid: bucket %d out of range [0, %d)", b, NumBuckets))
	}
}

// Rank returns up to k of candidates in rendezvous (highest random weight)
// order for key, weighted by capacity (Member.Slots; a member with Slots<=0
// counts as weight 1), never two on the same Host(), spreading over zones:
// first walk the ranking taking members whose host AND zone are both still
// unused; if fewer than k were found, walk again taking members whose host is
// unused (any zone). Members without a zone label share the zone "". The
// result is in order of selection (first pass picks first). Fewer than k are
// returned when there are fewer distinct hosts.
//
// Candidates are used as given (the caller filters live ones); the slice is
// not modified, and the members returned are copies (sharing Labels maps).
// Node IDs must be unique among candidates, as they are in a view: the
// ranking is then independent of the candidates' order.
//
// Each candidate's score is weight / -ln(u), u a hash of (node ID, key) in
// (0,1): the top score goes to a candidate with probability weight/Σweights,
// and adding or removing one candidate never reorders the others, so the
// only results that change are those that gain the newcomer or lose the
// leaver.
func Rank(candidates []Member, key []byte, k int) []Member {
	if k <= 0 || len(candidates) == 0 {
		return nil
	}
	k = min(k, len(candidates))
	r := newRanker(candidates, k)
	picked := r.rank(key, k)
	out := make([]Member, len(picked))
	for j, p := range picked {
		out[j] = candidates[p.i]
	}
	return out
}

// Owners returns the owners of bucket b under v: Rank over v.Live() with the
// bucket's own key, r of them (r <= 0 means DefaultReplicas); the first is
// the primary. It panics if b is not a bucket.
func (v View) Owners(b int, r int) []Member {
	checkBucket(b)
	if r <= 0 {
		r = DefaultReplicas
	}
	var buf [bucketKeyLen]byte
	return Rank(v.Live(), bucketKey(&buf, b), r)
}

// Ownership is the owner table of a view: for each bucket its owners' node
// IDs, primary first. Two nodes holding the same view hold the same table.
type Ownership [NumBuckets][]string

// Ownership computes the owner table of v with r owners per bucket (r <= 0
// means DefaultReplicas). It equals calling Owners for every bucket, but
// prepares the members once and reuses its scratch space across buckets, since
// it runs on every view change.
func (v View) Ownership(r int) *Ownership {
	if r <= 0 {
		r = DefaultReplicas
	}
	o := new(Ownership)
	live := v.Live()
	if len(live) == 0 {
		return o
	}
	k := min(r, len(live))
	rk := newRanker(live, k)
	// One backing array for the whole table; each bucket's slice is capped so
	// that an append by a caller cannot spill into the next bucket.
	ids := make([]string, 0, NumBuckets*k)
	var buf [bucketKeyLen]byte
	for b := range NumBuckets {
		start := len(ids)
		for _, p := range rk.rank(bucketKey(&buf, b), k) {
			ids = append(ids, live[p.i].NodeID)
		}
		o[b] = ids[start:len(ids):len(ids)]
	}
	return o
}

func (o *Ownership) owners(b int) []string {
	if o == nil {
		return nil
	}
	return o[b]
}

// Primary returns the primary of bucket b ("" if none). A nil table has no
// owners.
func (o *Ownership) Primary(b int) string {
	if ids := o.owners(b); len(ids) > 0 {
		return ids[0]
	}
	return ""
}

// BucketsOf returns the buckets node id owns (as any replica), ascending.
func (o *Ownership) BucketsOf(id string) []int {
	var out []int
	for b := range NumBuckets {
		for _, x := range o.owners(b) {
			if x == id {
				out = append(out, b)
				break
			}
		}
	}
	return out
}

// Moved returns the buckets whose owner set differs between o and p,
// ascending. A change of primary among the same owners is not a move: no
// bucket data has to travel for it. A nil table counts as empty.
func (o *Ownership) Moved(p *Ownership) []int {
	var out []int
	for b := range NumBuckets {
		if !sameOwners(o.owners(b), p.owners(b)) {
			out = append(out, b)
		}
	}
	return out
}

// sameOwners compares two short lists of distinct IDs as sets.
func sameOwners(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
outer:
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue outer
			}
		}
		return false
	}
	return true
}

// ranker ranks one set of members for many keys. The per-member work that
// does not depend on the key (hashing the node ID, the weight, counting
// zones) is done once; scratch space is reused from key to key.
//
// A walk rarely looks past the first few members of a ranking, so rank
// first ranks exactly only the top prefixLen members, in one pass that skips
// the logarithm for every member whose score provably falls short of them.
// If the walk runs past that prefix (top members share hosts, or a small zone
// ranks low), it retries with a prefix twice as long, and past a quarter of
// the members it ranks them all, with a heap popped lazily.
type ranker struct {
	members   []Member
	cands     []rankCand
	zones     int // distinct zones among members, counted up to the k asked for
	prefixLen int
	order     []int32    // members not yet walked: a sorted prefix of the ranking, or a max-heap of all
	full      bool       // order is the heap of all members
	next      int        // with a prefix: the position of the next member to walk
	truncated bool       // the walk ran past the prefix
	seen      []rankPick // members walked for this key, in rank order
	picked    []rankPick
	longer    int // walks that ran past their prefix (tests look at these two)
	fullRuns  int // keys that needed the full ranking
}

type rankCand struct {
	prefix uint64  // FNV-1a state after the node ID and the 0 separator
	weight float64 // Slots, at least 1
	u      float64 // hash of (node ID, key) in (0,1), for the key being ranked
	score  float64 // weight / -ln(u), computed only when it is needed
}

// below reports that the candidate's score is certainly below theta,
// without computing it: since -ln(u) >= 1-u, the score is at most
// weight/(1-u). That bound already exceeds the score by a factor of about
// 1+(1-u)/2; the relative margin of 1e-9 also covers the few ulps by which
// the computed score can exceed the exact one when u is within 2^-50 of 1, so
// a candidate found below never has a computed score >= theta.
func (c *rankCand) below(theta float64) bool {
	return c.weight*(1+1e-9) < theta*(1-c.u)
}

type rankPick struct {
	i          int32
	host, zone string
}

func newRanker(members []Member, k int) *ranker {
	n := len(members)
	r := &ranker{
		members:   members,
		cands:     make([]rankCand, n),
		zones:     distinctZones(members, k),
		prefixLen: min(n, 8+4*k),
		order:     make([]int32, 0, n),
		seen:      make([]rankPick, 0, 2*k+4),
		picked:    make([]rankPick, 0, k),
	}
	for i := range members {
		m := &members[i]
		h := fnvString(fnvOffset, m.NodeID)
		h *= fnvPrime // FNV-1a of the 0 separator (h ^= 0 is a no-op), so "ab"+"c" and "a"+"bc" differ
		w := 1.0
		if m.Slots > 0 {
			w = float64(m.Slots)
		}
		r.cands[i] = rankCand{prefix: h, weight: w}
	}
	return r
}

// distinctZones counts the distinct zones among ms, stopping at limit: the
// first pass can never pick more members than there are zones, so knowing
// that it is done spares walking the whole ranking (with no zone labels at
// all, there is one zone and the first pass ends after one pick).
func distinctZones(ms []Member, limit int) int {
	if limit <= 0 {
		return 0
	}
	if limit <= 8 {
		var seen [8]string
		n := 0
	next:
		for i := range ms {
			z := ms[i].Zone()
			for _, s := range seen[:n] {
				if s == z {
					continue next
				}
			}
			seen[n] = z
			n++
			if n == limit {
				break
			}
		}
		return n
	}
	set := make(map[string]struct{})
	for i := range ms {
		set[ms[i].Zone()] = struct{}{}
		if len(set) == limit {
			break
		}
	}
	return len(set)
}

// rank returns the indexes (with hosts and zones) of up to k members for key,
// in selection order. The result is scratch space, valid until the next call.
func (r *ranker) rank(key []byte, k int) []rankPick {
	for i := range r.cands {
		c := &r.cands[i]
		c.u = unitOpen(mix64(fnvBytes(c.prefix, key)))
	}
	for n := r.prefixLen; ; n *= 2 {
		r.rankPrefix(n)
		if r.walk(k) {
			return r.picked
		}
		r.longer++
		if 4*n >= len(r.cands) {
			break // a prefix of half of them is no cheaper than the lazy heap
		}
	}
	r.fullRuns++
	r.rankAll()
	r.walk(k)
	return r.picked
}

// rankPrefix puts the n top-ranked members, in rank order, in r.order. It
// keeps the best members seen so far in a heap whose root is the worst of
// them; a member whose score is certainly below that one's cannot enter, and
// its logarithm is never computed.
func (r *ranker) rankPrefix(n int) {
	top := r.order[:n]
	for i := range n {
		r.cands[i].score = r.cands[i].weight / -portableLog(r.cands[i].u)
		top[i] = int32(i)
	}
	for j := n/2 - 1; j >= 0; j-- {
		r.sift(top, j, false)
	}
	for i := n; i < len(r.cands); i++ {
		c := &r.cands[i]
		if c.below(r.cands[top[0]].score) {
			continue
		}
		c.score = c.weight / -portableLog(c.u)
		if r.before(int32(i), top[0]) {
			top[0] = int32(i)
			r.sift(top, 0, false)
		}
	}
	// Heapsort: move the worst to the back until the best is at the front.
	for end := n - 1; end > 0; end-- {
		top[0], top[end] = top[end], top[0]
		r.sift(top[:end], 0, false)
	}
	r.order, r.full, r.next = top, false, 0
}

// rankAll scores every member and heaps them all in r.order.
func (r *ranker) rankAll() {
	r.order = r.order[:0]
	for i := range r.cands {
		c := &r.cands[i]
		c.score = c.weight / -portableLog(c.u)
		r.order = append(r.order, int32(i))
	}
	for j := len(r.order)/2 - 1; j >= 0; j-- {
		r.sift(r.order, j, true)
	}
	r.full = true
}

// walk makes the two passes over the ranking. It reports false if it ran
// past the exactly ranked prefix, whose picks are then not to be trusted.
func (r *ranker) walk(k int) bool {
	r.seen = r.seen[:0]
	r.picked = r.picked[:0]
	r.truncated = false
	// First pass: a new host in a new zone. Once every zone is used no
	// further member can qualify, so stop there.
	for want := min(k, r.zones); len(r.picked) < want && r.pop(); {
		p := r.seen[len(r.seen)-1]
		if !r.hostUsed(p.host) && !r.zoneUsed(p.zone) {
			r.picked = append(r.picked, p)
		}
	}
	// Second pass: from the top again, any new host.
	for j := 0; len(r.picked) < k; j++ {
		if j == len(r.seen) && !r.pop() {
			break
		}
		if p := r.seen[j]; !r.hostUsed(p.host) {
			r.picked = append(r.picked, p)
		}
	}
	return !r.truncated
}

func (r *ranker) hostUsed(h string) bool {
	for _, p := range r.picked {
		if p.host == h {
			return true
		}
	}
	return false
}

func (r *ranker) zoneUsed(z string) bool {
	for _, p := range r.picked {
		if p.zone == z {
			return true
		}
	}
	return false
}

// pop moves the next member in rank order to r.seen. It reports false at
// the end of the ranking, or at the end of the prefix (setting r.truncated
// if members remain beyond it).
func (r *ranker) pop() bool {
	var i int32
	if r.full {
		n := len(r.order) - 1
		if n < 0 {
			return false
		}
		i = r.order[0]
		r.order[0] = r.order[n]
		r.order = r.order[:n]
		r.sift(r.order, 0, true)
	} else {
		if r.next == len(r.order) {
			r.truncated = len(r.order) < len(r.cands)
			return false
		}
		i = r.order[r.next]
		r.next++
	}
	m := &r.members[i]
	r.seen = append(r.seen, rankPick{i: i, host: m.Host(), zone: m.Zone()})
	return true
}

// before reports whether member a ranks before member b: higher score first,
// ties broken by node ID so the order never depends on the input order.
func (r *ranker) before(a, b int32) bool {
	sa, sb := r.cands[a].score, r.cands[b].score
	if sa != sb {
		return sa > sb
	}
	return r.members[a].NodeID < r.members[b].NodeID
}

// sift moves h[i] down its heap: a max-heap (best member at the root) when
// best is set, else a min-heap (worst member at the root).
func (r *ranker) sift(h []int32, i int, best bool) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && r.before(h[c+1], h[c]) == best {
			c++
		}
		if r.before(h[c], h[i]) != best {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// FNV-1a 64: simple, stable, and lets the node ID part be hashed once per
// member rather than once per (member, key).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// mix64 is the splitmix64 finalizer. FNV-1a mixes the last bytes hashed
// poorly (one multiplication each), and keys often differ only there (a
// bucket number, an item index); the finalizer spreads every input bit over
// the output.
func mix64(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// unitOpen maps a hash to u in (0,1), exclusive at both ends, so -ln(u) is
// finite and positive. It takes the top 52 bits, not 53: n + 0.5 with
// n < 2^52 fits a float64's 53-bit significand exactly, whereas with 53 bits
// the top value would round up to 2^53 and give u = 1, an infinite score.
func unitOpen(h uint64) float64 {
	return (float64(h>>12) + 0.5) * 0x1p-52 // exact: a power of two
}

// portableLog is the natural logarithm of a normal x in (0,1), bit-for-bit
// the same on every machine. math.Log is not: amd64 uses an assembly
// routine, and on arm64, ppc64 and s390x the compiler may fuse x*y+z into one
// FMA, rounding differently. Two nodes whose scores differ in the last bit
// could disagree on a bucket's owners. This is the algorithm of the pure-Go
// math.Log (from FreeBSD's e_log.c) with every product converted explicitly
// to float64, which the Go spec says prevents fusion; the only operations
// left are correctly rounded IEEE ones.
func portableLog(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01 /* 3fe62e42 fee00000 */
		ln2Lo = 1.90821492927058770002e-10 /* 3dea39ef 35793c76 */
		l1    = 6.666666666666735130e-01   /* 3FE55555 55555593 */
		l2    = 3.999999999940941908e-01   /* 3FD99999 9997FA04 */
		l3    = 2.857142874366239149e-01   /* 3FD24924 94229359 */
		l4    = 2.222219843214978396e-01   /* 3FCC71C5 1D8E78AF */
		l5    = 1.818357216161805012e-01   /* 3FC74664 96CB03DE */
		l6    = 1.531383769920937332e-01   /* 3FC39A09 D078C69F */
		l7    = 1.479819860511658591e-01   /* 3FC2F112 DF3E5244 */
	)
	// Frexp for a normal x: x = f1 * 2^ki with f1 in [0.5, 1), exactly.
	bits := math.Float64bits(x)
	ki := int(bits>>52&0x7ff) - 1022
	f1 := math.Float64frombits(bits&^(0x7ff<<52) | 1022<<52)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)

	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (l1 + float64(s4*(l3+float64(s4*(l5+float64(s4*l7)))))))
	t2 := float64(s4 * (l2 + float64(s4*(l4+float64(s4*l6)))))
	rr := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+rr)) + float64(k*ln2Lo))) - f)
}
