package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; Linux has used 100
// on every architecture Go supports.
const clockTicks = 100

// cpuSeconds sums the user and system CPU time of running processes, read from /proc: those
// named in byPID, and those whose executable has one of the base names in byExe ("self" is
// this process). It is how the bench splits the cost of a phase between the apiserver, etcd,
// the webhook and the load generator.
func cpuSeconds(byPID map[int]string, byExe ...string) map[string]float64 {
	out := make(map[string]float64, len(byExe)+len(byPID))
	want := make(map[string]bool, len(byExe))
	for _, n := range byExe {
		want[n] = true
		out[n] = 0
	}
	self := os.Getpid()
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		name, ok := byPID[pid]
		switch {
		case ok:
		case pid == self:
			name = "self"
		default:
			exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe"))
			if err != nil {
				continue
			}
			name = filepath.Base(exe)
		}
		if !ok && !want[name] {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command may contain spaces; the fields after its closing parenthesis are fixed:
		// utime and stime are the 12th and 13th of them.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		out[name] += (u + s) / clockTicks
	}
	return out
}
