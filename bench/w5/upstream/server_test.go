package main

// Tests of the model and the server against the server's own counts and headers, never against
// the machine's clock: the knee test holds every request at a gate until all are in progress,
// the tail test runs with service times not slept, the down test uses a fake clock.

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestModelKneeIsFlatThenLinear(t *testing.T) {
	m := Model{Knee: 8, Base: 10 * time.Millisecond, PerExtra: 2 * time.Millisecond}
	for n := 1; n <= 8; n++ {
		if d, _ := m.Service(n, 0); d != 10*time.Millisecond {
			t.Fatalf("%d in progress (at or below the knee): %v, want the base 10ms", n, d)
		}
	}
	for x := 1; x <= 100; x++ {
		want := 10*time.Millisecond + time.Duration(x)*2*time.Millisecond
		if d, _ := m.Service(8+x, 0); d != want {
			t.Fatalf("knee+%d in progress: %v, want %v", x, d, want)
		}
	}
	if d, _ := (Model{Base: time.Millisecond, PerExtra: time.Second}).Service(10000, 0); d != time.Millisecond {
		t.Fatalf("knee 0 means no knee, got %v", d)
	}
}

func TestModelThroughputPeaksAtTheKneeWhenSteeperThanQueueing(t *testing.T) {
	// The benchmark's defaults: throughput n/service(n) is highest at the knee and falls past it.
	m := Model{Knee: 64, Base: 10 * time.Millisecond, PerExtra: time.Millisecond}
	rate := func(n int) float64 { d, _ := m.Service(n, 0); return float64(n) / d.Seconds() }
	for n := 65; n <= 512; n++ {
		if rate(n) >= rate(64) || rate(n) >= rate(n-1) {
			t.Fatalf("throughput at %d in progress (%.0f/s) does not fall past the knee (%.0f/s at 64)", n, rate(n), rate(64))
		}
	}
}

func TestTailIsSeededAndAboutOnePercent(t *testing.T) {
	m := Model{Base: time.Millisecond, TailFrac: 0.01, TailMult: 50, Seed: 7}
	const n = 100000
	tails := 0
	for seq := uint64(0); seq < n; seq++ {
		d, tail := m.Service(1, seq)
		if tail {
			tails++
			if d != 50*time.Millisecond {
				t.Fatalf("a tail request takes %v, want 50 x 1ms", d)
			}
		} else if d != time.Millisecond {
			t.Fatalf("a normal request takes %v, want 1ms", d)
		}
		if again, _ := m.Service(1, seq); again != d {
			t.Fatalf("arrival %d is not reproducible", seq)
		}
	}
	// Binomial(100000, 0.01): sd ~31, so 900..1100 is over 3 sd either side.
	if tails < 900 || tails > 1100 {
		t.Fatalf("%d tail requests in %d, want about 1%%", tails, n)
	}
	other := Model{Base: time.Millisecond, TailFrac: 0.01, TailMult: 50, Seed: 8}
	same := 0
	for seq := uint64(0); seq < n; seq++ {
		if m.IsTail(seq) && other.IsTail(seq) {
			same++
		}
	}
	if same > tails/5 {
		t.Fatalf("seeds 7 and 8 share %d of %d tail arrivals: the seed does not pick them", same, tails)
	}
}

func getStats(t *testing.T, url string) Stats {
	t.Helper()
	resp, err := http.Get(url + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond (no time limit but go test's own): the knee test must not depend on how
// fast this machine is.
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestServerKneeSeenByRequestsInProgress(t *testing.T) {
	const knee, total = 4, 12
	s := NewServer(Model{Knee: knee, Base: 100 * time.Millisecond, PerExtra: 30 * time.Millisecond}, 16)
	gate := make(chan struct{})
	s.sleep = func(time.Duration) { <-gate } // every request stays in progress until released
	ts := httptest.NewServer(s)
	defer ts.Close()

	type answer struct {
		n, serviceUs int
		err          error
	}
	answers := make([]answer, total)
	var wg sync.WaitGroup
	for i := 0; i < total; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tr := &http.Transport{} // its own connection: the requests overlap on the server
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(ts.URL + "/work")
			if err != nil {
				answers[i].err = err
				return
			}
			resp.Body.Close()
			answers[i].n, _ = strconv.Atoi(resp.Header.Get("X-W5-In-Progress"))
			answers[i].serviceUs, _ = strconv.Atoi(resp.Header.Get("X-W5-Service-Us"))
		}(i)
		// Start the next one only once this one is in progress: arrival i sees i+1 in progress.
		waitFor(func() bool { return s.Snapshot().InProgress == i+1 })
	}
	st := s.Snapshot()
	close(gate)
	wg.Wait()

	if st.MaxInProgress != total || st.OverKnee != total-knee || st.Started != total {
		t.Fatalf("stats while held: %+v, want max_in_progress %d, over_knee %d", st, total, total-knee)
	}
	seen := map[int]int{}
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("request %d: %v", i, a.err)
		}
		want := 100_000
		if a.n > knee {
			want += (a.n - knee) * 30_000
		}
		if a.serviceUs != want {
			t.Fatalf("the request admitted with %d in progress got %d us, want %d", a.n, a.serviceUs, want)
		}
		seen[a.n]++
	}
	for n := 1; n <= total; n++ {
		if seen[n] != 1 {
			t.Fatalf("in-progress counts seen at admission: %v, want each of 1..%d once", seen, total)
		}
	}
	if after := getStats(t, ts.URL); after.Served != total || after.InProgress != 0 {
		t.Fatalf("stats after: %+v", after)
	}
}

func TestServerTailCountMatchesTheModel(t *testing.T) {
	m := Model{Knee: 64, Base: 2 * time.Millisecond, PerExtra: time.Millisecond, TailFrac: 0.01, TailMult: 50, Seed: 42}
	s := NewServer(m, 8)
	var slept []time.Duration
	s.sleep = func(d time.Duration) { slept = append(slept, d) } // not slept: no clock involved
	const n = 20000
	want := 0
	for seq := uint64(0); seq < n; seq++ {
		if m.IsTail(seq) {
			want++
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		if tail := rec.Header().Get("X-W5-Tail") == "1"; tail != m.IsTail(seq) {
			t.Fatalf("arrival %d: tail header %v, model says %v", seq, tail, m.IsTail(seq))
		}
	}
	st := s.Snapshot()
	if st.Tails != uint64(want) || st.Served != n || st.Arrivals != n {
		t.Fatalf("stats %+v, want %d tails of %d", st, want, n)
	}
	if frac := float64(st.Tails) / n; frac < 0.008 || frac > 0.012 {
		t.Fatalf("tail fraction %.4f, want about 1%%", frac)
	}
	long := 0
	for _, d := range slept {
		if d == 100*time.Millisecond {
			long++
		} else if d != 2*time.Millisecond {
			t.Fatalf("service time %v is neither base nor 50 x base", d)
		}
	}
	if long != want {
		t.Fatalf("%d requests slept 50 x base, want %d", long, want)
	}
}

func TestServerDown500ForItsWindowThenUp(t *testing.T) {
	s := NewServer(Model{Base: 0}, 8)
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }
	do := func(method, path string) int {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code
	}
	for _, bad := range []string{"/admin/down", "/admin/down?ms=0", "/admin/down?ms=x", "/admin/down?ms=5&mode=crash"} {
		if c := do("POST", bad); c != http.StatusBadRequest {
			t.Fatalf("POST %s: %d, want 400", bad, c)
		}
	}
	if c := do("GET", "/admin/down?ms=5"); c != http.StatusMethodNotAllowed {
		t.Fatalf("GET /admin/down: %d, want 405", c)
	}
	if c := do("POST", "/admin/down?ms=1000&mode=500"); c != http.StatusNoContent {
		t.Fatalf("down: %d", c)
	}
	for i := 0; i < 3; i++ {
		if c := do("GET", "/work"); c != 500 {
			t.Fatalf("while down: %d, want 500", c)
		}
	}
	clock = clock.Add(999 * time.Millisecond)
	if c := do("GET", "/work"); c != 500 {
		t.Fatalf("1 ms before the end of the window: %d, want 500", c)
	}
	clock = clock.Add(time.Millisecond)
	if c := do("GET", "/work"); c != 200 {
		t.Fatalf("after the window: %d, want 200", c)
	}
	st := s.Snapshot()
	if st.DownRejected != 4 || st.Served != 1 || st.Down {
		t.Fatalf("stats %+v, want 4 rejected, 1 served", st)
	}
	// Mode hang: the request waits out the rest of the window (on the fake clock), then 500.
	var slept []time.Duration
	s.sleep = func(d time.Duration) { slept = append(slept, d) }
	if c := do("POST", "/admin/down?ms=2000&mode=hang"); c != http.StatusNoContent {
		t.Fatalf("down hang: %d", c)
	}
	clock = clock.Add(500 * time.Millisecond)
	if c := do("GET", "/work"); c != 500 || len(slept) != 1 || slept[0] != 1500*time.Millisecond {
		t.Fatalf("while hanging: %d after sleeping %v, want 500 after 1.5s", c, slept)
	}
	clock = clock.Add(1500 * time.Millisecond)
	if c := do("GET", "/work"); c != 200 || len(slept) != 2 || slept[1] != 0 {
		t.Fatalf("after the hang window: %d, slept %v", c, slept)
	}
	if st := s.Snapshot(); st.DownRejected != 5 || st.Served != 2 {
		t.Fatalf("stats %+v, want 5 rejected, 2 served", st)
	}
	if c := do("POST", "/admin/down?ms=10&mode=refuse"); c != http.StatusNotImplemented {
		t.Fatalf("refuse without a listener: %d, want 501", c)
	}
}

func TestStatsResetKeepsArrivalsAndInProgress(t *testing.T) {
	s := NewServer(Model{}, 8)
	s.sleep = func(time.Duration) {}
	for i := 0; i < 5; i++ {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/stats/reset", nil))
	st := s.Snapshot()
	if rec.Code != http.StatusNoContent || st.Served != 0 || st.Started != 0 || st.Arrivals != 5 {
		t.Fatalf("after reset: %d %+v", rec.Code, st)
	}
}

// The refuse mode through main's own wiring (serve), on a real listener.
func TestRefuseClosesTheListenerThenListensAgain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewServer(Model{}, 8)
	s.sleep = func(time.Duration) {}
	srv := serve(s, ln)
	defer srv.Close()
	url := "http://" + addr
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	held, err := net.Dial("tcp", addr) // an open connection: refuse mode must drop it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	resp, err := client.Post(url+"/admin/down?ms=3000&mode=refuse", "", nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("down: %v %v", resp, err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	// The listener is closed before the response is sent: a new connection is refused (the
	// 3 s window is only there so that a slow machine still checks inside it).
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("connected while down in refuse mode: %v -> %v", c.LocalAddr(), c.RemoteAddr())
	}
	// A guard, not a measurement: the drop happens 10 ms after the response.
	_ = held.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("an open connection survived refuse mode (%v)", err)
	}
	// Listening again after the window: poll without a time limit of our own.
	var r2 *http.Response
	waitFor(func() bool {
		r2, err = client.Get(url + "/work")
		return err == nil
	})
	if r2.StatusCode != 200 {
		t.Fatalf("after the window: %d", r2.StatusCode)
	}
	r2.Body.Close()
	if st := s.Snapshot(); st.Served != 1 {
		t.Fatalf("stats %+v, want 1 served", st)
	}
}
