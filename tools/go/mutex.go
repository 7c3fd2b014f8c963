// mutex.go: Go's sync.Mutex under the same contended loop as `lacuna-bench sync`: 2 Ps
// (GOMAXPROCS=2), 2 goroutines per P, each taking the mutex n times around a short critical
// section. Prints "go_mutex_contended_ns <ns per lock+unlock>" (total time / total locks).
package main

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// cpuNs: the CPU time this process has used so far (every thread), in ns.
func cpuNs() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	n := flag.Int("n", 2000000, "locks per goroutine")
	flag.Parse()
	runtime.GOMAXPROCS(2)
	var mu sync.Mutex
	var counter int64
	var wg sync.WaitGroup
	const goroutines = 4
	cpu0 := cpuNs()
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < *n; i++ {
				mu.Lock()
				counter++ // the short critical section
				counter ^= int64(i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	cpu := cpuNs() - cpu0
	if counter == 42 {
		fmt.Println("") // keep the counter alive
	}
	fmt.Printf("go_mutex_contended_ns %.2f\n", float64(el.Nanoseconds())/float64(goroutines**n))
	fmt.Printf("go_mutex_cpu_per_wall %.2f\n", float64(cpu)/float64(el.Nanoseconds()))
}
