// lacuna-bench parked's Go counterpart: n goroutines alive at once, each blocked on its own
// unbuffered channel, then all woken and waited for. Prints the phases' times and, while all are
// parked, RSS and page tables (VmRSS, VmPTE from /proc/self/status) after runtime.GC(). That
// collection is there for the reading only (lacuna-bench has nothing like it), so it is not
// timed: it took 1.4-2.7 s of a 5-10 s "spawn and park" here when it was.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

func status(field string) string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), field) {
			return strings.TrimSpace(strings.TrimPrefix(s.Text(), field))
		}
	}
	return "?"
}

func main() {
	n := flag.Int("n", 1000000, "goroutines parked at once")
	flag.Parse()
	chans := make([]chan int64, *n)
	for i := range chans {
		chans[i] = make(chan int64)
	}
	var wg sync.WaitGroup
	wg.Add(*n)
	start := time.Now()
	var parked sync.WaitGroup
	parked.Add(*n)
	for i := 0; i < *n; i++ {
		go func(c chan int64) {
			parked.Done()
			<-c
			wg.Done()
		}(chans[i])
	}
	parked.Wait()
	t1 := time.Now()
	runtime.GC()
	gc := time.Since(t1)
	rss, pte := status("VmRSS:"), status("VmPTE:")
	t2 := time.Now()
	for _, c := range chans {
		c <- 1
	}
	wg.Wait()
	spawn, wake := t1.Sub(start), time.Since(t2)
	after := status("VmRSS:")
	fmt.Printf("go parked: %d goroutines: spawn and park %d ms; wake and join %d ms; total %d ms\n",
		*n, spawn.Milliseconds(), wake.Milliseconds(), (spawn + wake).Milliseconds())
	fmt.Printf("while parked: RSS %s, page tables (VmPTE) %s; peak RSS (VmHWM) %s\n", rss, pte, status("VmHWM:"))
	fmt.Printf("all joined: RSS %s (the goroutines' stacks stay with the runtime)\n", after)
	fmt.Printf("not timed: runtime.GC() before reading RSS, %d ms\n", gc.Milliseconds())
}
