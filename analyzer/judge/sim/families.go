package sim

// Family is a named kind of realistic traffic: a Stream template whose rate, canary
// share, regression and seed are filled in per run.
type Family struct {
	Name string
	// Doc says in one line what the family simulates.
	Doc    string
	Stream Stream
}

// outages is the shared-dependency failure used by the families: one every 90 s on
// average, 5–20 s long, 20–50% of requests failing and 0.1–0.5 s added to every request.
func outages(jitter float64) Outages {
	return Outages{Every: 90, MinDur: 5, MaxDur: 20, MinLevel: 0.2, MaxLevel: 0.5,
		MinDelay: 0.1, MaxDelay: 0.5, EdgeJitter: jitter}
}

// Families are the realistic stream families of bench/judge and the judge's tests. Each
// disturbance hits a healthy canary and its stable alike on average; what differs from
// second to second is what breaks a test that assumes Poisson counts.
var Families = []Family{
	{Name: "clean", Doc: "Poisson arrivals, independent errors, log-normal latency; traffic ×1, ×0.5, ×2 each minute",
		Stream: Stream{Traffic: Traffic{Pattern: true}}},
	{Name: "overdispersed", Doc: "each cluster's error rate ×log-normal (σ 1.0) and latency ×log-normal (σ 0.2), drawn every second, independently per cluster",
		Stream: Stream{ErrorNoise: Noise{Sigma: 1}, LatencyNoise: Noise{Sigma: 0.2}}},
	{Name: "correlated", Doc: "the same with σ 0.5 (latency 0.1) correlated over ~30 s (Ornstein-Uhlenbeck)",
		Stream: Stream{ErrorNoise: Noise{Sigma: 0.5, Corr: 30}, LatencyNoise: Noise{Sigma: 0.1, Corr: 30}}},
	{Name: "outages1", Doc: "a shared dependency fails every ~90 s for 5–20 s (20–50% errors, +0.1–0.5 s); the canary sees each edge up to ±1 s off the stable",
		Stream: Stream{Outages: outages(1)}},
	{Name: "outages3", Doc: "the same, edges up to ±3 s apart",
		Stream: Stream{Outages: outages(3)}},
	{Name: "pauses", Doc: "1 canary pod vs 9 stable pods, each pausing 1–3 s about once a minute; requests wait for it",
		Stream: Stream{Pods: Pods{Canary: 1, Stable: 9, PauseEvery: 60, MinPause: 1, MaxPause: 3}}},
	{Name: "bursts", Doc: "traffic drifting (log σ 0.3 over ~2 min) and bursting ×3 for 5–20 s about once a minute",
		Stream: Stream{Traffic: Traffic{Drift: 0.3, BurstEvery: 60, BurstMult: 3}}},
	{Name: "scrape15", Doc: "outages ±1 s and bursts, counters read from a Prometheus scraping each cluster every 15 s at its own phase",
		Stream: Stream{Outages: outages(1), Traffic: Traffic{Drift: 0.3, BurstEvery: 60, BurstMult: 3}, ScrapeInterval: 15}},
	{Name: "scrape30", Doc: "the same, scraped every 30 s",
		Stream: Stream{Outages: outages(1), Traffic: Traffic{Drift: 0.3, BurstEvery: 60, BurstMult: 3}, ScrapeInterval: 30}},
	{Name: "highbase", Doc: "baseline error rate 5%, σ 0.5 per-second error noise",
		Stream: Stream{BaseErrorRate: 0.05, ErrorNoise: Noise{Sigma: 0.5}}},
	{Name: "realistic", Doc: "all at once: correlated noise, outages ±2 s, pod pauses, drift and bursts",
		Stream: Stream{ErrorNoise: Noise{Sigma: 0.5, Corr: 30}, LatencyNoise: Noise{Sigma: 0.1, Corr: 30},
			Outages: outages(2), Pods: Pods{Canary: 1, Stable: 9, PauseEvery: 60, MinPause: 1, MaxPause: 3},
			Traffic: Traffic{Drift: 0.3, BurstEvery: 60, BurstMult: 3}}},
	{Name: "corr-weak", Doc: "as correlated, σ 0.3 (latency 0.06)",
		Stream: Stream{ErrorNoise: Noise{Sigma: 0.3, Corr: 30}, LatencyNoise: Noise{Sigma: 0.06, Corr: 30}}},
	{Name: "corr-strong", Doc: "as correlated, σ 1.0 (latency 0.2)",
		Stream: Stream{ErrorNoise: Noise{Sigma: 1, Corr: 30}, LatencyNoise: Noise{Sigma: 0.2, Corr: 30}}},
	{Name: "corr-slow", Doc: "as correlated, correlated over ~120 s",
		Stream: Stream{ErrorNoise: Noise{Sigma: 0.5, Corr: 120}, LatencyNoise: Noise{Sigma: 0.1, Corr: 120}}},
	{Name: "corr-shared", Doc: "as correlated, the same multiplier on both clusters (something both depend on wanders)",
		Stream: Stream{ErrorNoise: Noise{Sigma: 0.5, Corr: 30, Shared: true}, LatencyNoise: Noise{Sigma: 0.1, Corr: 30, Shared: true}}},
}

// FamilyByName returns the family with that name.
func FamilyByName(name string) (Family, bool) {
	for _, f := range Families {
		if f.Name == name {
			return f, true
		}
	}
	return Family{}, false
}
