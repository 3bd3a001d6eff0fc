package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// serve runs s on ln in the background and wires its "refuse" down mode: close the listener
// and every open connection, as a crashed upstream would, then listen again on the same
// address after the window. Returns the http.Server (Close stops it).
func serve(s *Server, ln net.Listener) *http.Server {
	addr := ln.Addr().String()
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	current := ln
	srv := &http.Server{
		Handler:     s,
		IdleTimeout: 120 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if st == http.StateNew {
				conns[c] = struct{}{}
			} else if st == http.StateClosed || st == http.StateHijacked {
				delete(conns, c)
			}
		},
	}
	s.refuse = func(d time.Duration) {
		mu.Lock()
		current.Close()
		mu.Unlock()
		go func() {
			time.Sleep(10 * time.Millisecond) // let the admin response leave first
			mu.Lock()
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
			time.Sleep(d)
			for {
				nl, err := net.Listen("tcp", addr)
				if err == nil {
					mu.Lock()
					current = nl
					mu.Unlock()
					go srv.Serve(nl)
					return
				}
				fmt.Fprintln(os.Stderr, "w5-upstream: listening again:", err)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	go srv.Serve(ln)
	return srv
}
