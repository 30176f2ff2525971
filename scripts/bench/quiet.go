package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// busyElsewhere measures, over one window, the cores used by everything but
// the given processes and this one.
func busyElsewhere(ours []int, window time.Duration) float64 {
	oursCPU := func() float64 {
		var sum float64
		for _, pid := range ours {
			if cpu, _, err := procCPU(pid); err == nil {
				sum += cpu
			}
		}
		return sum + selfCPU()
	}
	sys0, err := readSystem()
	if err != nil {
		return 0
	}
	own0 := oursCPU()
	time.Sleep(window)
	sys1, err := readSystem()
	if err != nil {
		return 0
	}
	own := oursCPU() - own0
	return max(0, (sys1.busy-sys0.busy)+(sys1.steal-sys0.steal)-own) / window.Seconds()
}

// waitQuiet waits, up to wait, until other processes use less than
// maxCores. It returns how long it waited and the last measurement; with
// no wait it measures nothing.
func waitQuiet(ours []int, maxCores float64, wait time.Duration) (time.Duration, float64) {
	if wait <= 0 {
		return 0, 0
	}
	start := time.Now()
	for {
		busy := busyElsewhere(ours, 500*time.Millisecond)
		if busy < maxCores || time.Since(start) >= wait {
			return time.Since(start), busy
		}
	}
}

// quietMain reports how busy the machine is, after waiting for it to calm
// down if asked: bench.sh prints it in the header of every run.
func quietMain(args []string) error {
	fs := flag.NewFlagSet("quiet", flag.ContinueOnError)
	maxCores := fs.Float64("max", 0.15, "cores other processes may use on a quiet machine")
	wait := fs.Duration("wait", 0, "wait up to this long for a quiet machine")
	sample := fs.Duration("sample", 5*time.Second, "measurement window for the report")
	if err := fs.Parse(args); err != nil {
		return usageErr(err.Error())
	}
	waited, _ := waitQuiet(nil, *maxCores, *wait)
	busy := busyElsewhere(nil, *sample)
	verdict := "quiet"
	if busy >= *maxCores {
		verdict = "BUSY"
	}
	load, _ := os.ReadFile("/proc/loadavg")
	avg := strings.Fields(string(load))
	fmt.Printf("%s: other processes used %.2f cores over %s (waited %s; load average %s)\n",
		verdict, busy, *sample, waited.Round(time.Second), strings.Join(avg[:min(3, len(avg))], " "))
	return nil
}
