package main

import (
	"math"
	"time"
)

// Model is the upstream's latency model: the service time a request gets when it arrives,
// from how many requests are in progress then (itself included) and its arrival number.
//
// Up to Knee requests in progress the service time is Base: the upstream has spare capacity.
// Beyond it every extra request in progress adds PerExtra, which is steeper than pure queueing
// (Base/Knee per extra request would keep throughput flat) whenever PerExtra > Base/Knee, so
// throughput peaks at Knee and falls past it: the congestion collapse an adaptive limit must
// find. Independently, a TailFrac share of arrivals (chosen by a seeded hash of the arrival
// number, so a run is reproducible whatever the interleaving) takes TailMult times longer.
type Model struct {
	Knee     int           // requests in progress served at Base; 0 = no knee (always Base)
	Base     time.Duration // service time below the knee
	PerExtra time.Duration // added per request in progress above the knee
	TailFrac float64       // share of arrivals in the long tail, 0..1
	TailMult float64       // how many times longer a tail request takes
	Seed     uint64        // picks which arrivals are in the tail
}

// Service returns the service time of the request that arrives as number seq (from 0) when
// inProgress requests (itself included) are in progress, and whether it is a tail request.
func (m Model) Service(inProgress int, seq uint64) (time.Duration, bool) {
	d := m.Base
	if m.Knee > 0 && inProgress > m.Knee {
		d += time.Duration(inProgress-m.Knee) * m.PerExtra
	}
	tail := m.IsTail(seq)
	if tail {
		d = time.Duration(math.Round(float64(d) * m.TailMult))
	}
	return d, tail
}

// IsTail says whether arrival seq is in the long tail: splitmix64 of (seed, seq) mapped to
// [0, 1) below TailFrac. A hash rather than a shared random stream, so that the tail set
// does not depend on which of two concurrent arrivals took the next number first.
func (m Model) IsTail(seq uint64) bool {
	if m.TailFrac <= 0 {
		return false
	}
	return float64(splitmix64(m.Seed^(seq*0x9e3779b97f4a7c15))>>11)/float64(1<<53) < m.TailFrac
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
