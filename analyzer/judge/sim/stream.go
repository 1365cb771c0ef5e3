package sim

import (
	"math"
	"math/rand/v2"

	"github.com/sluice-mesh/sluice/analyzer/judge"
)

// Stream describes a realistic pair of request streams: a service's traffic split between
// a stable and a canary cluster, with the disturbances real traffic has and Poisson
// traffic has not. Every disturbance is simulated from how it arises (a dependency that
// fails for both clusters, a pod that stalls, a scraper that samples each cluster at its
// own phase), never from how the judge models counts. Zero fields take the defaults
// documented on them; zero disturbances are off.
//
// Time advances in steps of one second. Within a step, requests arrive as a Poisson
// process whose rate is the step's traffic; an edge (an outage starting, a pod pausing)
// inside a step affects only the requests after it.
type Stream struct {
	// RPS is the service's request rate, both clusters together (before Traffic).
	RPS float64
	// CanaryShare is the fraction of requests routed to the canary (default 0.1).
	CanaryShare float64
	// BaseErrorRate is each cluster's own error rate (default 0.005).
	BaseErrorRate float64
	// ErrorMult multiplies the canary's own error rate (default 1: healthy). Errors a
	// shared dependency causes (Outages) are not multiplied.
	ErrorMult float64
	// LatencyMult multiplies every canary latency before delays (default 1).
	LatencyMult float64
	// LatencyMedian (default 0.050 s) and LatencySigma (default 0.5) shape each request's
	// log-normal service time.
	LatencyMedian, LatencySigma float64

	// ErrorNoise multiplies each cluster's own error rate, every second, by an independent
	// log-normal factor of mean 1 (per-cluster overdispersion).
	ErrorNoise Noise
	// LatencyNoise multiplies each cluster's latency, every second, by an independent
	// log-normal factor of mean 1.
	LatencyNoise Noise
	// Outages are failures of a dependency both clusters share.
	Outages Outages
	// Pods: requests are spread evenly over a cluster's pods; a paused pod holds its
	// requests until it resumes.
	Pods Pods
	// Traffic varies the request rate over time (both clusters alike).
	Traffic Traffic
	// ScrapeInterval > 0: counters are seen as a Prometheus scraping each cluster every
	// ScrapeInterval seconds, at a phase of its own, would show them (the last scraped
	// value); 0: exact counters every second.
	ScrapeInterval int
	// Seed makes the run reproducible.
	Seed uint64
}

// Noise is a log-normal multiplier of mean 1: exp(u - Sigma²/2) with u a stationary
// Gaussian process of standard deviation Sigma, independent per cluster unless Shared.
// Corr is its correlation time in seconds (an Ornstein-Uhlenbeck process); 0 draws it
// afresh every second.
type Noise struct {
	Sigma float64
	Corr  float64
	// Shared gives both clusters the same multiplier (something both depend on wanders).
	Shared bool
}

// Outages of a shared dependency: they start at random (on average Every seconds apart),
// last MinDur to MaxDur seconds, make a fraction MinLevel to MaxLevel of every request fail
// and add MinDelay to MaxDelay seconds to every request's latency, for both clusters. The
// canary sees each edge (start and end) offset from the stable's by its own uniform draw
// in ±EdgeJitter seconds (clients notice the dependency at different moments). Every == 0:
// none.
type Outages struct {
	Every              float64
	MinDur, MaxDur     float64
	MinLevel, MaxLevel float64
	MinDelay, MaxDelay float64
	EdgeJitter         float64
}

// Pods: the canary runs Canary pods and the stable Stable pods (default 1 and 9). Each pod
// pauses on its own (garbage collection, CPU throttling, a noisy neighbour) on average
// every PauseEvery seconds for MinPause to MaxPause seconds; a request arriving at a
// paused pod waits until it resumes. PauseEvery == 0: no pauses.
type Pods struct {
	Canary, Stable     int
	PauseEvery         float64
	MinPause, MaxPause float64
}

// Traffic: the request rate drifts (a log-normal factor with standard deviation Drift in
// log space and a correlation time of DriftCorr seconds, default 120) and bursts (on
// average every BurstEvery seconds, ×BurstMult for 5 to 20 s). Pattern adds the ×1, ×0.5,
// ×2 minute cycle of Scenario.VaryTraffic.
type Traffic struct {
	Drift, DriftCorr float64
	BurstEvery       float64
	BurstMult        float64
	Pattern          bool
}

func (st Stream) withDefaults() Stream {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&st.CanaryShare, 0.1)
	def(&st.BaseErrorRate, 0.005)
	def(&st.ErrorMult, 1)
	def(&st.LatencyMult, 1)
	def(&st.LatencyMedian, 0.050)
	def(&st.LatencySigma, 0.5)
	def(&st.Traffic.DriftCorr, 120)
	def(&st.Traffic.BurstMult, 3)
	if st.Pods.Canary <= 0 {
		st.Pods.Canary = 1
	}
	if st.Pods.Stable <= 0 {
		st.Pods.Stable = 9
	}
	return st
}

// span is a half-open interval of time [from, to) in seconds.
type span struct{ from, to float64 }

// overlap returns how long [a, b) and s overlap.
func (s span) overlap(a, b float64) float64 {
	return math.Max(0, math.Min(b, s.to)-math.Max(a, s.from))
}

// outage is one dependency failure as one cluster sees it.
type outage struct {
	span
	level, delay float64
}

// pause is one pod's pause.
type pause struct {
	span
	pod int
}

// clusterStream is one cluster's state.
type clusterStream struct {
	share, errMult, latMult float64
	pods                    int
	errU, latU              float64 // noise processes
	outages                 []outage
	pauses                  []pause
	truth                   []judge.ClusterStats // true cumulative counters at each second
	phase                   int
}

// StreamSim generates a Stream second by second.
type StreamSim struct {
	st         Stream
	rng        *rand.Rand
	t          int
	drift      float64
	bursts     []span
	base, can  *clusterStream
	probs      []float64 // scratch: bucket probabilities
	cdf        []float64 // scratch
	quadrature int
}

// Horizon is how far ahead StreamSim plans outages, pauses and bursts (seconds); Step
// keeps working after it with none of them.
const Horizon = 900

// NewStream starts a simulation at t = 0 with zero counters.
func NewStream(st Stream) *StreamSim {
	st = st.withDefaults()
	s := &StreamSim{st: st, rng: rand.New(rand.NewPCG(st.Seed, 0x57_4ea3_5eed)), quadrature: 8}
	s.probs = make([]float64, len(Buckets)+1)
	s.cdf = make([]float64, len(Buckets))
	s.base = &clusterStream{share: 1 - st.CanaryShare, errMult: 1, latMult: 1, pods: st.Pods.Stable}
	s.can = &clusterStream{share: st.CanaryShare, errMult: st.ErrorMult, latMult: st.LatencyMult, pods: st.Pods.Canary}
	s.drift = s.rng.NormFloat64() * st.Traffic.Drift
	for _, c := range []*clusterStream{s.base, s.can} {
		c.errU = s.rng.NormFloat64() * st.ErrorNoise.Sigma
		c.latU = s.rng.NormFloat64() * st.LatencyNoise.Sigma
		c.truth = make([]judge.ClusterStats, 1, 601)
		c.truth[0] = zeroStats()
		if st.ScrapeInterval > 0 {
			c.phase = s.rng.IntN(st.ScrapeInterval)
		}
	}
	s.planOutages()
	s.planPauses(s.base)
	s.planPauses(s.can)
	s.planBursts()
	return s
}

// exp draws an exponential variate of the given mean.
func (s *StreamSim) exp(mean float64) float64 { return -mean * math.Log(1-s.rng.Float64()) }

func (s *StreamSim) uniform(lo, hi float64) float64 { return lo + (hi-lo)*s.rng.Float64() }

func (s *StreamSim) planOutages() {
	o := s.st.Outages
	if o.Every <= 0 {
		return
	}
	for t := s.exp(o.Every); t < Horizon; t += s.exp(o.Every) {
		end := t + s.uniform(o.MinDur, o.MaxDur)
		level, delay := s.uniform(o.MinLevel, o.MaxLevel), s.uniform(o.MinDelay, o.MaxDelay)
		s.base.outages = append(s.base.outages, outage{span{t, end}, level, delay})
		from := t + s.uniform(-o.EdgeJitter, o.EdgeJitter)
		to := end + s.uniform(-o.EdgeJitter, o.EdgeJitter)
		if to > from {
			s.can.outages = append(s.can.outages, outage{span{from, to}, level, delay})
		}
		t = end
	}
}

func (s *StreamSim) planPauses(c *clusterStream) {
	p := s.st.Pods
	if p.PauseEvery <= 0 {
		return
	}
	for pod := 0; pod < c.pods; pod++ {
		for t := s.exp(p.PauseEvery); t < Horizon; t += s.exp(p.PauseEvery) {
			d := s.uniform(p.MinPause, p.MaxPause)
			c.pauses = append(c.pauses, pause{span{t, t + d}, pod})
			t += d
		}
	}
}

func (s *StreamSim) planBursts() {
	tr := s.st.Traffic
	if tr.BurstEvery <= 0 {
		return
	}
	for t := s.exp(tr.BurstEvery); t < Horizon; t += s.exp(tr.BurstEvery) {
		d := s.uniform(5, 20)
		s.bursts = append(s.bursts, span{t, t + d})
		t += d
	}
}

// ou advances an Ornstein-Uhlenbeck process of stationary deviation sigma and correlation
// time corr by one second (corr 0: a fresh draw).
func (s *StreamSim) ou(u, sigma, corr float64) float64 {
	if sigma <= 0 {
		return 0
	}
	if corr <= 0 {
		return s.rng.NormFloat64() * sigma
	}
	a := math.Exp(-1 / corr)
	return a*u + sigma*math.Sqrt(1-a*a)*s.rng.NormFloat64()
}

// multiplier is a Noise's factor for the process value u: exp(u − σ²/2), of mean 1.
func multiplier(u, sigma float64) float64 { return math.Exp(u - sigma*sigma/2) }

// Now returns the simulated seconds elapsed.
func (s *StreamSim) Now() int { return s.t }

// trafficMult returns the traffic factor for the second starting at t.
func (s *StreamSim) trafficMult(t float64) float64 {
	tr := s.st.Traffic
	m := 1.0
	if tr.Drift > 0 {
		m *= math.Exp(s.drift - tr.Drift*tr.Drift/2)
	}
	for _, b := range s.bursts {
		m *= 1 + (tr.BurstMult-1)*b.overlap(t, t+1)
	}
	if tr.Pattern {
		switch int(t/60) % 3 {
		case 1:
			m *= 0.5
		case 2:
			m *= 2
		}
	}
	return m
}

// Step advances one second and returns both clusters' cumulative counters as the judge
// would read them (scraped, with ScrapeInterval). The values are copies the caller may
// keep.
func (s *StreamSim) Step() (baseline, canary judge.ClusterStats) {
	t := float64(s.t)
	lam := s.st.RPS * s.trafficMult(t)
	s.drift = s.ou(s.drift, s.st.Traffic.Drift, s.st.Traffic.DriftCorr)
	eu, lu := s.base.errU, s.base.latU
	s.stepCluster(s.base, t, lam*s.base.share)
	if s.st.ErrorNoise.Shared {
		s.can.errU = eu
	}
	if s.st.LatencyNoise.Shared {
		s.can.latU = lu
	}
	s.stepCluster(s.can, t, lam*s.can.share)
	s.t++
	return s.observed(s.base), s.observed(s.can)
}

// True returns both clusters' exact cumulative counters now (whatever ScrapeInterval).
func (s *StreamSim) True() (baseline, canary judge.ClusterStats) {
	return clone(s.base.truth[s.t]), clone(s.can.truth[s.t])
}

func (s *StreamSim) observed(c *clusterStream) judge.ClusterStats {
	iv := s.st.ScrapeInterval
	if iv <= 0 {
		return clone(c.truth[s.t])
	}
	// The last scrape at or before now: times phase, phase+iv, ...
	if s.t < c.phase {
		return clone(c.truth[0])
	}
	last := c.phase + (s.t-c.phase)/iv*iv
	return clone(c.truth[last])
}

// stepCluster adds the second [t, t+1) at request rate lam to c.
func (s *StreamSim) stepCluster(c *clusterStream, t, lam float64) {
	st := s.st
	errM, latM := multiplier(c.errU, st.ErrorNoise.Sigma), multiplier(c.latU, st.LatencyNoise.Sigma)
	c.errU = s.ou(c.errU, st.ErrorNoise.Sigma, st.ErrorNoise.Corr)
	c.latU = s.ou(c.latU, st.LatencyNoise.Sigma, st.LatencyNoise.Corr)

	own := math.Min(st.BaseErrorRate*c.errMult*errM, 0.95)
	// Error rate averaged over the second: own errors, plus the dependency's failures
	// while it is down.
	p := own
	for _, o := range c.outages {
		if f := o.overlap(t, t+1); f > 0 {
			p += f * (1 - own) * o.level
		}
	}
	cur := clone(c.truth[len(c.truth)-1])
	e := Poisson(s.rng, lam*p)
	cur.Requests += e + Poisson(s.rng, lam*(1-p))
	cur.Errors += e

	// Latency: a mixture of the service time alone and the service time plus a delay
	// (uniform between d1 and d2) for the requests an outage or a paused pod holds.
	mu := math.Log(st.LatencyMedian * c.latMult * latM)
	for i := range s.probs {
		s.probs[i] = 0
	}
	rest := 1.0
	for _, o := range c.outages {
		if f := o.overlap(t, t+1); f > 0 && o.delay > 0 {
			s.addDelayed(f, o.delay, o.delay, mu)
			rest -= f
		}
	}
	for _, pz := range c.pauses {
		f := pz.overlap(t, t+1)
		if f <= 0 {
			continue
		}
		// Requests arriving at a in [max(from,t), min(to,t+1)) wait to-a.
		a0, a1 := math.Max(pz.from, t), math.Min(pz.to, t+1)
		w := f / float64(c.pods)
		s.addDelayed(w, pz.to-a1, pz.to-a0, mu)
		rest -= w
	}
	s.addDelayed(math.Max(rest, 0), 0, 0, mu)
	cum := 0.0
	for i := range Buckets {
		cum += Poisson(s.rng, lam*s.probs[i])
		cur.Latency.Counts[i] += cum
	}
	cur.Latency.Count += cum + Poisson(s.rng, lam*s.probs[len(Buckets)])
	c.truth = append(c.truth, cur)
}

// addDelayed adds weight w of requests whose latency is log-normal(mu, LatencySigma)
// plus a delay uniform in [d1, d2] to s.probs (bucket by bucket, the last entry +Inf).
func (s *StreamSim) addDelayed(w, d1, d2, mu float64) {
	if w <= 0 {
		return
	}
	n := 1
	if d2 > d1 {
		n = s.quadrature
	}
	sig := s.st.LatencySigma * math.Sqrt2
	for k := 0; k < n; k++ {
		d := d1 + (d2-d1)*(float64(k)+0.5)/float64(n)
		prev := 0.0
		for i, b := range Buckets {
			cdf := 0.0
			if b > d {
				cdf = 0.5 * math.Erfc(-(math.Log(b-d)-mu)/sig)
			}
			s.probs[i] += w / float64(n) * (cdf - prev)
			prev = cdf
		}
		s.probs[len(Buckets)] += w / float64(n) * (1 - prev)
	}
}
