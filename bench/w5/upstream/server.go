package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Stats is what the upstream saw since the last reset (GET /stats). A request counts from the
// moment it is admitted (its service time is fixed then) until its service time has elapsed.
type Stats struct {
	Arrivals      uint64  `json:"arrivals"`        // requests admitted since start (the tail hash's input)
	Started       uint64  `json:"started"`         // requests admitted since the reset
	Served        uint64  `json:"served"`          // requests whose service time elapsed
	Abandoned     uint64  `json:"abandoned"`       // ...of which the client had gone (wasted work)
	InProgress    int     `json:"in_progress"`     // admitted and not yet served, now
	MaxInProgress int     `json:"max_in_progress"` // the most at once since the reset
	OverKnee      uint64  `json:"over_knee"`       // admitted with more than Knee in progress
	Tails         uint64  `json:"tails"`           // admitted into the long tail
	DownRejected  uint64  `json:"down_rejected"`   // answered 500 while down
	ServiceSumMs  float64 `json:"service_sum_ms"`  // total modelled service time admitted
	Down          bool    `json:"down"`            // a down window is in force now
	Knee          int     `json:"knee"`
	BaseMs        float64 `json:"base_ms"`
	PerExtraMs    float64 `json:"per_extra_ms"`
	TailFrac      float64 `json:"tail_frac"`
	TailMult      float64 `json:"tail_mult"`
	Seed          uint64  `json:"seed"`
}

// Server is the W5 upstream: every path except the control ones below is "work" that takes
// the model's service time and answers 200 with a fixed body. Control paths (not counted):
//
//	GET  /stats                       Stats as JSON
//	POST /stats/reset                 zero the counters (max_in_progress restarts from now)
//	POST /admin/down?ms=N&mode=M      down for N ms: mode "500" answers every work request
//	                                  500 at once; mode "hang" holds it until the window ends,
//	                                  then answers 500 (a stuck upstream: callers time out);
//	                                  mode "refuse" closes the listener and every open
//	                                  connection, and listens again after N ms
//
// The service time is slept in full even when the client has gone: an overloaded upstream
// does not learn that a caller gave up, which is what makes overload waste capacity.
type Server struct {
	model Model
	body  []byte
	sleep func(time.Duration) // time.Sleep; tests substitute a gate
	now   func() time.Time    // time.Now; tests substitute a fake clock
	// refuse closes the listener and connections for the given time (set by main; nil = mode
	// "refuse" unsupported, e.g. under httptest).
	refuse func(time.Duration)

	mu        sync.Mutex
	st        Stats
	downUntil time.Time
	downHang  bool // the down window is mode "hang"
}

// NewServer returns a server for model m answering bodyBytes bytes.
func NewServer(m Model, bodyBytes int) *Server {
	body := make([]byte, bodyBytes)
	for i := range body {
		body[i] = 'x'
	}
	return &Server{model: m, body: body, sleep: time.Sleep, now: time.Now}
}

// Snapshot returns the current stats.
func (s *Server) Snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Down = s.now().Before(s.downUntil)
	st.Knee = s.model.Knee
	st.BaseMs = float64(s.model.Base) / 1e6
	st.PerExtraMs = float64(s.model.PerExtra) / 1e6
	st.TailFrac = s.model.TailFrac
	st.TailMult = s.model.TailMult
	st.Seed = s.model.Seed
	return st
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/stats":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Snapshot())
		return
	case "/stats/reset":
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		s.mu.Lock()
		s.st = Stats{Arrivals: s.st.Arrivals, InProgress: s.st.InProgress, MaxInProgress: s.st.InProgress}
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case "/admin/down":
		s.down(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)

	s.mu.Lock()
	if now := s.now(); now.Before(s.downUntil) {
		s.st.DownRejected++
		hang, until := s.downHang, s.downUntil
		s.mu.Unlock()
		if hang { // a stuck upstream: nothing until the window ends (callers time out first)
			s.sleep(until.Sub(now))
		}
		http.Error(w, "upstream down", http.StatusInternalServerError)
		return
	}
	s.st.InProgress++
	n := s.st.InProgress
	if n > s.st.MaxInProgress {
		s.st.MaxInProgress = n
	}
	seq := s.st.Arrivals
	s.st.Arrivals++
	s.st.Started++
	d, tail := s.model.Service(n, seq)
	if tail {
		s.st.Tails++
	}
	if s.model.Knee > 0 && n > s.model.Knee {
		s.st.OverKnee++
	}
	s.st.ServiceSumMs += float64(d) / 1e6
	s.mu.Unlock()

	s.sleep(d)

	s.mu.Lock()
	s.st.InProgress--
	s.st.Served++
	if r.Context().Err() != nil {
		s.st.Abandoned++
	}
	s.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(s.body)))
	h.Set("X-W5-Seq", strconv.FormatUint(seq, 10))
	h.Set("X-W5-In-Progress", strconv.Itoa(n))
	h.Set("X-W5-Service-Us", strconv.FormatInt(d.Microseconds(), 10))
	if tail {
		h.Set("X-W5-Tail", "1")
	}
	_, _ = w.Write(s.body)
}

func (s *Server) down(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	ms, err := strconv.ParseUint(r.URL.Query().Get("ms"), 10, 32)
	if err != nil || ms == 0 {
		http.Error(w, "ms must be a whole number of milliseconds, 1 to 4294967295", http.StatusBadRequest)
		return
	}
	d := time.Duration(ms) * time.Millisecond
	switch mode := r.URL.Query().Get("mode"); mode {
	case "", "500", "hang":
		s.mu.Lock()
		s.downUntil = s.now().Add(d)
		s.downHang = mode == "hang"
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case "refuse":
		if s.refuse == nil {
			http.Error(w, "mode refuse needs the listener of main (not available here)", http.StatusNotImplemented)
			return
		}
		s.mu.Lock()
		s.downUntil = s.now().Add(d) // requests already read on open connections fail too
		s.downHang = false
		s.mu.Unlock()
		// The listener closes before the answer leaves: a client that connects once it has
		// the answer is refused (open connections, this one included, close 10 ms later).
		s.refuse(d)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusNoContent)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	default:
		http.Error(w, fmt.Sprintf("mode must be 500, hang or refuse, not %q", mode), http.StatusBadRequest)
	}
}
