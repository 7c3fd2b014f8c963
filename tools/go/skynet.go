// skynet by its standard rules, in Go, for lacuna-bench's comparison (tools/bench.d/go.sh):
// every node a goroutine, each parent an unbuffered channel, 10 children per node, 1,111,111
// goroutines at depth 6. Prints the same "Result: N in X ms." line as lacuna-bench skynet.
package main

import (
	"flag"
	"fmt"
	"time"
)

func skynet(up chan<- int64, num, size int64) {
	if size == 1 {
		up <- num
		return
	}
	c := make(chan int64) // unbuffered, by the rules
	child := size / 10
	for i := int64(0); i < 10; i++ {
		go skynet(c, num+i*child, child)
	}
	var sum int64
	for i := 0; i < 10; i++ {
		sum += <-c
	}
	up <- sum
}

func main() {
	depth := flag.Int("depth", 6, "levels below the root: 10^depth leaves")
	runs := flag.Int("runs", 1, "runs")
	flag.Parse()
	size := int64(1)
	for i := 0; i < *depth; i++ {
		size *= 10
	}
	for r := 0; r < *runs; r++ {
		start := time.Now()
		c := make(chan int64)
		go skynet(c, 0, size)
		result := <-c
		ms := float64(time.Since(start).Microseconds()) / 1000
		fmt.Printf("Result: %d in %.1f ms.\n", result, ms)
	}
}
