// A channel round trip between two goroutines, for lacuna-bench pingpong's comparison
// (tools/bench.d/fibers.sh runs it with GOMAXPROCS=2). Go does not pin goroutines: its scheduler
// may run both on one thread (runnext hand-off), which is what it does when it can.
package main

import (
	"flag"
	"fmt"
	"sort"
	"time"
)

func main() {
	n := flag.Int("n", 200000, "round trips")
	runs := flag.Int("runs", 5, "runs; the median is reported")
	flag.Parse()
	var ns []float64
	for r := 0; r < *runs; r++ {
		ping, pong := make(chan int64), make(chan int64)
		go func() {
			for v := range ping {
				pong <- v + 1
			}
		}()
		t0 := time.Now()
		var v int64
		for i := 0; i < *n; i++ {
			ping <- v
			v = <-pong
		}
		ns = append(ns, float64(time.Since(t0).Nanoseconds())/float64(*n))
		close(ping)
	}
	sort.Float64s(ns)
	fmt.Printf("pingpong (Go, unbuffered channel round trip): %.1f ns (min %.1f, max %.1f), median of %d x %d\n",
		ns[len(ns)/2], ns[0], ns[len(ns)-1], *runs, *n)
}
