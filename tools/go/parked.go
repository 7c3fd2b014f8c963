// lacuna-bench parked's Go counterpart: n goroutines alive at once, each blocked on its own
// unbuffered channel, then all woken and waited for. Prints the phases' times and, while all are
// parked, RSS and page tables (VmRSS, VmPTE from /proc/self/status) after runtime.GC().
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
	runtime.GC()
	t1 := time.Now()
	rss, pte := status("VmRSS:"), status("VmPTE:")
	for _, c := range chans {
		c <- 1
	}
	wg.Wait()
	fmt.Printf("go parked: %d goroutines: spawn and park %d ms; wake and join %d ms; total %d ms\n",
		*n, t1.Sub(start).Milliseconds(), time.Since(t1).Milliseconds(), time.Since(start).Milliseconds())
	fmt.Printf("while parked: RSS %s, page tables (VmPTE) %s; peak RSS (VmHWM) %s\n", rss, pte, status("VmHWM:"))
}
