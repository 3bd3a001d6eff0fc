// The W5 upstream of `make bench-w5` (issue 16): an HTTP/1.1 server on 127.0.0.1 whose latency
// has a capacity knee and an optional long tail (model.go), a down mode for circuit breaking,
// and a stats endpoint so that a run can check what the upstream saw (server.go). Standard
// library only, built offline. It prints "LISTENING http://127.0.0.1:PORT/" and stops when its
// stdin closes (the harness holds it), so it never outlives the run.
//
//	w5-upstream [-knee 64] [-base-ms 10] [-per-extra-ms 1] [-tail-frac 0] [-tail-mult 50]
//	            [-seed 1] [-body 64] [-addr 127.0.0.1:0]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	knee := flag.Int("knee", 64, "requests in progress served at the base latency (0 = no knee)")
	base := flag.Float64("base-ms", 10, "service time below the knee, ms")
	extra := flag.Float64("per-extra-ms", 1, "ms added per request in progress above the knee")
	tailFrac := flag.Float64("tail-frac", 0, "share of requests in the long tail (0.01 = 1%)")
	tailMult := flag.Float64("tail-mult", 50, "how many times longer a tail request takes")
	seed := flag.Uint64("seed", 1, "picks which requests are in the tail")
	body := flag.Int("body", 64, "response body bytes")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	switch {
	case *knee < 0, *base < 0, *extra < 0, *tailMult < 1, *body < 0:
		fail("knee, base-ms, per-extra-ms and body must be >= 0, tail-mult >= 1")
	case !(*tailFrac >= 0 && *tailFrac <= 1):
		fail("tail-frac must be in [0, 1]")
	case flag.NArg() != 0:
		fail(fmt.Sprintf("unexpected arguments %q", flag.Args()))
	}
	m := Model{Knee: *knee, Base: ms(*base), PerExtra: ms(*extra), TailFrac: *tailFrac,
		TailMult: *tailMult, Seed: *seed}
	s := NewServer(m, *body)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err.Error())
	}
	serve(s, ln)
	fmt.Printf("LISTENING http://%s/\n", ln.Addr().String())
	os.Stdout.Sync()
	go func() { // the harness holds our stdin: when it closes (or dies), stop
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		os.Exit(0)
	}()
	select {}
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "w5-upstream:", msg)
	os.Exit(2)
}
