// The Go anchors of `make bench` (standard library only). Each mode prints one JSON line.
//
//	anchors pool N             W1: N no-op jobs through 2 worker goroutines on buffered
//	                           channels (capacity 1024), results back on another channel
//	anchors pool-req N BYTES   W1, request-shaped: the same pool, but each job is what a portway
//	                           request carries: its own copy of a BYTES-long payload, a
//	                           context.WithTimeout made at submit (cancelled when its result is
//	                           collected), and a result struct with status, code, data slice
//	                           and queued/run timings
//	anchors sleep N MS         W2: N goroutines doing time.Sleep(MS ms), joined by a WaitGroup
//	anchors sleep-held N MS    W2, all N goroutines started (blocked on a barrier) before any sleeps
//	anchors server             W3: a keep-alive net/http server on 127.0.0.1:0; prints
//	                           "LISTENING http://127.0.0.1:PORT", stops when stdin closes
//	anchors client URL N CONC [CA_PEM]
//	                           W3: N GETs of URL with net/http, CONC goroutines in flight; with
//	                           CA_PEM (W3-TLS), https trusting that CA, HTTP/2 through ALPN
//	anchors sha N WORKERS      W4: N SHA-256 digests of 1 KiB payloads on a pool of WORKERS
//	                           goroutines (buffered channels, capacity 1024), plus the
//	                           one-goroutine rate of the same hashing
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const chanCap = 1024

type job struct {
	id      uint64
	payload []byte
}

type result struct {
	id   uint64
	data []byte
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "anchors: not a number:", s)
		os.Exit(2)
	}
	return v
}

// cpuSecs is the CPU time (user + system) of the whole process so far.
func cpuSecs() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

// runPool sends n jobs through `workers` goroutines running work, and drains n results.
func runPool(n, workers int, payload []byte, work func([]byte) []byte) {
	jobs := make(chan job, chanCap)
	results := make(chan result, chanCap)
	for w := 0; w < workers; w++ {
		go func() {
			for j := range jobs {
				results <- result{j.id, work(j.payload)}
			}
		}()
	}
	go func() {
		for i := 0; i < n; i++ {
			jobs <- job{uint64(i), payload}
		}
		close(jobs)
	}()
	for i := 0; i < n; i++ {
		<-results
	}
}

func pool(n int) {
	noop := func([]byte) []byte { return nil }
	runPool(10000, 2, nil, noop) // warm-up
	t0 := time.Now()
	runPool(n, 2, nil, noop)
	secs := time.Since(t0).Seconds()
	emit(map[string]any{"n": n, "secs": secs, "rate": float64(n) / secs, "workers": 2, "chan_cap": chanCap})
}

// reqJob is one request-shaped W1 job: what portway's engine holds for a submitted request.
type reqJob struct {
	id        uint64
	userData  uint64
	payload   []byte // the job's own copy: portway copies the payload at submit
	ctx       context.Context
	cancel    context.CancelFunc
	submitted time.Time
}

// reqResult mirrors portway_completion: status, handler code, response bytes and timings. It
// carries the job's cancel func so the collector can release the context's timer.
type reqResult struct {
	id       uint64
	userData uint64
	status   uint32
	code     uint32
	data     []byte
	queuedNs int64
	runNs    int64
	cancel   context.CancelFunc
}

// Statuses of reqResult, as portway_status spells them.
const (
	statusOK      = 0
	statusTimeout = 7
)

// reqTimeout is every job's deadline: far beyond the run, so that it never fires, but each
// job still pays for arming and stopping its timer, as a request with a timeout does.
const reqTimeout = 30 * time.Second

// noopHandler is W1's handler: it responds with nothing (as pw_bench's native no-op does).
func noopHandler(context.Context, []byte) (uint32, []byte) { return 0, nil }

// runReqPool is runPool with request-shaped jobs: the submitter copies the payload and makes a
// context with a timeout per job; a worker checks the context before and after running the
// no-op handler and fills a result struct; the collector cancels each job's context and checks
// every result. It returns how many results were not OK.
func runReqPool(n, workers int, payload []byte) int {
	jobs := make(chan reqJob, chanCap)
	results := make(chan reqResult, chanCap)
	for w := 0; w < workers; w++ {
		go func() {
			for j := range jobs {
				start := time.Now()
				r := reqResult{id: j.id, userData: j.userData, cancel: j.cancel,
					queuedNs: start.Sub(j.submitted).Nanoseconds()}
				if j.ctx.Err() != nil { // expired while queued: the handler is not run
					r.status, r.data = statusTimeout, []byte("timed out before it started")
				} else {
					r.code, r.data = noopHandler(j.ctx, j.payload)
				}
				r.runNs = time.Since(start).Nanoseconds()
				results <- r
			}
		}()
	}
	go func() {
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), reqTimeout)
			p := make([]byte, len(payload))
			copy(p, payload)
			jobs <- reqJob{id: uint64(i) + 1, userData: uint64(i), payload: p, ctx: ctx, cancel: cancel,
				submitted: time.Now()}
		}
		close(jobs)
	}()
	failed := 0
	var sink int64
	for i := 0; i < n; i++ {
		r := <-results
		r.cancel()
		if r.status != statusOK || r.id != r.userData+1 {
			failed++
		}
		sink += r.queuedNs + r.runNs + int64(len(r.data))
	}
	_ = sink
	return failed
}

func poolReq(n, size int) {
	if size < 0 {
		fmt.Fprintln(os.Stderr, "anchors pool-req: BYTES must be >= 0")
		os.Exit(2)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*31 + 7)
	}
	runReqPool(10000, 2, payload) // warm-up
	t0 := time.Now()
	failed := runReqPool(n, 2, payload)
	secs := time.Since(t0).Seconds()
	emit(map[string]any{"n": n, "secs": secs, "rate": float64(n) / secs, "workers": 2, "chan_cap": chanCap,
		"payload_bytes": size, "timeout_s": reqTimeout.Seconds(), "failed": failed})
	if failed > 0 {
		os.Exit(1)
	}
}

func sleeps(n, ms int) {
	var wg sync.WaitGroup
	d := time.Duration(ms) * time.Millisecond
	for i := 0; i < 100; i++ { // warm-up
		wg.Add(1)
		go func() { time.Sleep(d); wg.Done() }()
	}
	wg.Wait()
	base := rssKiB()
	var finished int64
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { time.Sleep(d); atomic.AddInt64(&finished, 1); wg.Done() }()
	}
	// Goroutines that finished while later ones were still being started were not in flight
	// together with them: the most in flight at once is (about) this.
	peak := int64(n) - atomic.LoadInt64(&finished)
	wg.Wait()
	secs := time.Since(t0).Seconds()
	emit(map[string]any{"n": n, "secs": secs, "rss_base_kib": base, "peak_in_flight": peak, "failed": 0})
}

// sleepsHeld is W2 with every goroutine in flight at once: all n start and block on a barrier,
// and only then sleep, so that the peak RSS is that of n sleeping goroutines (with 10 ms sleeps,
// plain `sleep` finishes most goroutines before the last one starts).
func sleepsHeld(n, ms int) {
	var wg sync.WaitGroup
	d := time.Duration(ms) * time.Millisecond
	base := rssKiB()
	start := make(chan struct{})
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { <-start; time.Sleep(d); wg.Done() }()
	}
	close(start)
	wg.Wait()
	secs := time.Since(t0).Seconds()
	emit(map[string]any{"n": n, "secs": secs, "rss_base_kib": base, "peak_in_flight": n, "failed": 0})
}

func server() {
	body := []byte(strings.Repeat("x", 64))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "anchors server:", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}),
		IdleTimeout: 120 * time.Second,
	}
	fmt.Printf("LISTENING http://%s/\n", ln.Addr().String())
	os.Stdout.Sync()
	go func() { // the harness holds our stdin: when it closes (or dies), stop
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		os.Exit(0)
	}()
	srv.Serve(ln)
}

func client(url string, n, conc int, caPath string) {
	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	if caPath != "" {
		pem, err := os.ReadFile(caPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "anchors client:", err)
			os.Exit(2)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "anchors client: no certificate in", caPath)
			os.Exit(2)
		}
		// A Transport with its own TLS config speaks HTTP/2 only when asked to: this is what
		// http.DefaultTransport sets, so the anchor is Go's default client with one more root.
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		tr.ForceAttemptHTTP2 = true
	}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var failed, h2 int64
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			if atomic.AddInt64(&failed, 1) == 1 {
				fmt.Fprintln(os.Stderr, "anchors client:", err)
			}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor == 2 {
			atomic.AddInt64(&h2, 1)
		}
		if resp.StatusCode != 200 {
			atomic.AddInt64(&failed, 1)
		}
	}
	run := func(total int) {
		var next int64
		var wg sync.WaitGroup
		wg.Add(conc)
		for w := 0; w < conc; w++ {
			go func() {
				defer wg.Done()
				for atomic.AddInt64(&next, 1) <= int64(total) {
					get()
				}
			}()
		}
		wg.Wait()
	}
	run(conc) // warm-up: opens the connections
	failed, h2 = 0, 0
	c0, t0 := cpuSecs(), time.Now()
	run(n)
	secs, cpu := time.Since(t0).Seconds(), cpuSecs()-c0
	emit(map[string]any{"n": n, "secs": secs, "rate": float64(n) / secs, "cpu_s": cpu, "failed": failed,
		"concurrency": conc, "h2_responses": h2})
	if failed > 0 {
		os.Exit(1)
	}
}

func shaBench(n, workers int) {
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(i*31 + 7)
	}
	hash := func(p []byte) []byte { d := sha256.Sum256(p); return d[:] }
	// The one-thread rate, measured right before and right after the pool run; the mean of
	// the two is used (as in pw_bench.c), so a drift in the machine's speed falls on both sides.
	var sink byte
	singleRate := func() float64 {
		singleN := n / 8
		t0 := time.Now()
		for i := 0; i < singleN; i++ {
			sink ^= hash(payload)[0]
		}
		return float64(singleN) / time.Since(t0).Seconds()
	}
	singleBefore := singleRate()
	runPool(10000, workers, payload, hash) // warm-up
	t0 := time.Now()
	runPool(n, workers, payload, hash)
	secs := time.Since(t0).Seconds()
	single := (singleBefore + singleRate()) / 2
	rate := float64(n) / secs
	emit(map[string]any{"n": n, "secs": secs, "rate": rate, "single_thread_rate": single,
		"efficiency": rate / (single * float64(workers)), "workers": workers, "sink": sink & 0})
}

func main() {
	a := os.Args
	switch {
	case len(a) >= 3 && a[1] == "pool":
		pool(atoi(a[2]))
	case len(a) >= 4 && a[1] == "pool-req":
		poolReq(atoi(a[2]), atoi(a[3]))
	case len(a) >= 4 && a[1] == "sleep":
		sleeps(atoi(a[2]), atoi(a[3]))
	case len(a) >= 4 && a[1] == "sleep-held":
		sleepsHeld(atoi(a[2]), atoi(a[3]))
	case len(a) >= 2 && a[1] == "server":
		server()
	case len(a) >= 5 && a[1] == "client":
		ca := ""
		if len(a) >= 6 {
			ca = a[5]
		}
		client(a[2], atoi(a[3]), atoi(a[4]), ca)
	case len(a) >= 4 && a[1] == "sha":
		shaBench(atoi(a[2]), atoi(a[3]))
	default:
		fmt.Fprintln(os.Stderr, "usage: anchors pool N | pool-req N BYTES | sleep N MS | sleep-held N MS | server | client URL N CONC [CA_PEM] | sha N WORKERS")
		os.Exit(2)
	}
}
