package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// userHZ is the unit of /proc/stat and /proc/PID/stat times, fixed at 100
// on Linux whatever the kernel's HZ.
const userHZ = 100

// systemTimes is the machine's CPU time in seconds, summed over all cores.
type systemTimes struct {
	busy  float64 // user, nice, system, irq, softirq (guest is inside user)
	steal float64 // taken by the hypervisor for other guests
}

func readSystem() (systemTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return systemTimes{}, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return systemTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
			return systemTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	const user, nice, system, irq, softirq, steal = 0, 1, 2, 5, 6, 7
	return systemTimes{
		busy:  (v[user] + v[nice] + v[system] + v[irq] + v[softirq]) / userHZ,
		steal: v[steal] / userHZ,
	}, nil
}

// procCPU is a process's utime+stime in seconds, all threads included,
// and whether it has exited (a zombie still shows its final times).
func procCPU(pid int) (cpu float64, exited bool, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, true, err
	}
	// The command name may hold spaces and parentheses; fields follow the
	// last ')'. utime and stime are fields 14 and 15, so 12 and 13 here.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, false, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false, fmt.Errorf("/proc/%d/stat: bad times %q %q", pid, f[11], f[12])
	}
	return (utime + stime) / userHZ, f[0] == "Z" || f[0] == "X", nil
}

// procHWM is a process's peak resident set (VmHWM) in bytes.
func procHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// selfCPU is this process's own CPU in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return rusageSeconds(&ru)
}

func rusageSeconds(ru *syscall.Rusage) float64 {
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
