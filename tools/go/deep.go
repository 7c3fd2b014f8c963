// lacuna-bench deep's Go counterpart (run by it through `go run`): n goroutines each recurse
// about -depth bytes once (1 KiB frames, as tools/deep.c), return to a shallow frame and block on
// their own unbuffered channel. Go grows a deep goroutine's stack by copying it to one twice the
// size, and shrinks it by half at a GC when it uses under a quarter of it; freed stack memory goes
// back to the OS when the scavenger (or debug.FreeOSMemory) returns it. So RSS is printed:
//   - all parked, no GC since they went deep;
//   - after one runtime.GC() (stacks halved once; the scavenger may not have run yet);
//   - after one debug.FreeOSMemory() more (a GC, then every free page returned at once);
//   - after debug.FreeOSMemory() until RSS falls by less than 1 % (stacks halve once per GC;
//     at most 12 GCs in all);
//
// then every goroutine resumed (it checks a canary and blocks again) and sent deep again, each
// per goroutine in µs and minor faults (getrusage), as lacuna-bench deep prints them. RSS from
// /proc/self/statm, like lacuna-bench. -depth 0: the same program that never goes deep.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

const frame = 1024

//go:noinline
func dive(level int, seed byte) int {
	var buf [frame]byte
	for i := 0; i < frame; i += 64 {
		buf[i] = seed + byte(level) + byte(i/64)
	}
	bad := 0
	if level > 1 {
		bad = dive(level-1, seed)
	}
	for i := 0; i < frame; i += 64 {
		if buf[i] != seed+byte(level)+byte(i/64) {
			bad++
		}
	}
	return bad
}

func rssKiB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, rss float64
	fmt.Sscan(string(b), &size, &rss)
	return rss * float64(os.Getpagesize()) / 1024
}

func minflt() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

func main() {
	n := flag.Int("fibers", 10000, "goroutines, each deep once and then blocked")
	depth := flag.Int("depth", 48*1024, "bytes each recurses once, in 1 KiB frames")
	csv := flag.Bool("csv", false, "CSV rows measure,value,unit")
	flag.Parse()
	levels := *depth / frame
	wake := make([]chan int, *n)
	for i := range wake {
		wake[i] = make(chan int)
	}
	done := make(chan int, *n)
	var stat runtime.MemStats
	stackKiB := func() float64 { runtime.ReadMemStats(&stat); return float64(stat.StackInuse) / 1024 }

	debug.SetGCPercent(-1) // no GC but the ones asked for below, so "no GC yet" means that
	flt, t := minflt(), time.Now()
	for i := 0; i < *n; i++ {
		go func(i int, c chan int) {
			var canary [64]byte
			for k := range canary {
				canary[k] = byte(i*31 + k)
			}
			bad := 0
			if levels > 0 {
				bad = dive(levels, byte(i))
			}
			done <- bad
			for round := 0; round < 3; round++ {
				<-c
				for k := range canary {
					if canary[k] != byte(i*31+k) {
						bad++
					}
				}
				if round == 1 && levels > 0 {
					bad += dive(levels, byte(i+7))
				}
				if round < 2 {
					done <- bad
				}
			}
		}(i, wake[i])
	}
	bad := 0
	for i := 0; i < *n; i++ {
		bad += <-done
	}
	firstUs := float64(time.Since(t).Microseconds()) / float64(*n)
	firstFlt := float64(minflt()-flt) / float64(*n)
	time.Sleep(10 * time.Millisecond) // every goroutine is blocked on its channel by now
	type row struct {
		name, csv  string
		rss, stack float64
	}
	rows := []row{{"RSS, all parked, no GC yet", "parked", rssKiB(), stackKiB()}}
	runtime.GC()
	rows = append(rows, row{"RSS after runtime.GC() x1", "after_gc", rssKiB(), stackKiB()})
	debug.FreeOSMemory()
	rows = append(rows, row{"RSS after one debug.FreeOSMemory() more", "after_freeosmemory",
		rssKiB(), stackKiB()})
	gcs, last := 2, rows[len(rows)-1].rss // GCs so far: runtime.GC and one FreeOSMemory
	for gcs < 12 {
		debug.FreeOSMemory()
		gcs++
		r := rssKiB()
		if r >= last*0.99 {
			break
		}
		last = r
	}
	rows = append(rows, row{fmt.Sprintf("RSS after FreeOSMemory until flat (%d GCs)", gcs),
		"after_gc_until_flat", rssKiB(), stackKiB()})

	wakeAll := func() (float64, float64) {
		flt, t := minflt(), time.Now()
		for i := range wake {
			wake[i] <- 1
		}
		for i := 0; i < *n; i++ {
			bad += <-done
		}
		return float64(time.Since(t).Nanoseconds()) / 1e3 / float64(*n),
			float64(minflt()-flt) / float64(*n)
	}
	resUs, resFlt := wakeAll()
	resumed := rssKiB()
	agUs, agFlt := wakeAll()
	again := rssKiB()
	for i := range wake {
		wake[i] <- 1
	}

	ver := runtime.Version()
	if *csv {
		fmt.Printf("# go deep: %s, GOMAXPROCS=%d, -fibers %d -depth %d\n", ver,
			runtime.GOMAXPROCS(0), *n, *depth)
		for _, r := range rows {
			fmt.Printf("go_d%d_rss_%s,%.0f,KiB\ngo_d%d_stackinuse_%s,%.0f,KiB\n", *depth, r.csv,
				r.rss, *depth, r.csv, r.stack)
		}
		fmt.Printf("go_d%d_first_deep,%.2f,us_per_fiber\ngo_d%d_first_deep_faults,%.2f,per_fiber\n",
			*depth, firstUs, *depth, firstFlt)
		fmt.Printf("go_d%d_resume,%.3f,us_per_fiber\ngo_d%d_resume_faults,%.3f,per_fiber\n",
			*depth, resUs, *depth, resFlt)
		fmt.Printf("go_d%d_rss_resumed,%.0f,KiB\ngo_d%d_deep_again,%.2f,us_per_fiber\n",
			*depth, resumed, *depth, agUs)
		fmt.Printf("go_d%d_deep_again_faults,%.2f,per_fiber\ngo_d%d_rss_deep_again,%.0f,KiB\n",
			*depth, agFlt, *depth, again)
		fmt.Printf("go_d%d_frames_changed,%d,bytes\n", *depth, bad)
	} else {
		fmt.Printf("go deep: %d goroutines each %d KiB deep once (%d frames of 1 KiB), then "+
			"blocked on a channel; %s, GOMAXPROCS=%d, automatic GC off (debug.SetGCPercent(-1))\n",
			*n, *depth/1024, levels, ver, runtime.GOMAXPROCS(0))
		fmt.Printf("%-44s %10s %s\n", "", "MiB", "(of which stacks: MemStats.StackInuse)")
		for _, r := range rows {
			fmt.Printf("%-44s %10.1f (%.1f MiB)\n", r.name, r.rss/1024, r.stack/1024)
		}
		fmt.Printf("per goroutine:                                us  minor faults\n")
		fmt.Printf("  spawn, go deep, block (first time) %13.2f %13.2f\n", firstUs, firstFlt)
		fmt.Printf("  resume after the GCs, block        %13.3f %13.3f   (RSS then %.1f MiB)\n",
			resUs, resFlt, resumed/1024)
		fmt.Printf("  go deep again, block               %13.2f %13.2f   (RSS then %.1f MiB)\n",
			agUs, agFlt, again/1024)
		state := "unchanged"
		if bad != 0 {
			state = "CHANGED"
		}
		fmt.Printf("every frame and canary checked: %s\n", state)
	}
	if bad != 0 {
		os.Exit(1)
	}
}
